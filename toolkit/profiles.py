"""Target profiles: everything a later stage decides from, as validated YAML data.

A profile describes one kind of device (CPU model and ISA, cores, clock, memory), the budgets an artifact must fit
(size, latency), the student shapes it can afford, which artifacts to emit with which quantization recipe and runtime,
and the tolerances that validation gates on. Shipped profiles live in ``targets/``; users pass their own file path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from toolkit.errors import ToolkitError

TARGETS_DIR = Path(__file__).resolve().parent.parent / "targets"

Activation = Literal["gelu", "relu"]
Normalisation = Literal["layernorm", "l2norm"]  # l2norm: centre + L2_NORMALIZATION, which NNAPI runs


class Strict(BaseModel):
    """Base for every profile section: unknown keys are errors, so typos never pass silently."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class CacheLevel(Strict):
    """One data-cache level of the core, as the cycle estimate's cache simulation models it."""

    size_kb: int = Field(gt=0)
    ways: int = Field(gt=0)
    latency_cycles: float = Field(gt=0, description="Load-to-use latency of a hit at this level, in core cycles.")
    shared: bool = Field(default=False, description="Shared by all cores: split between threads in the estimate.")


class CoreModel(Strict):
    """How the cycle estimate (toolkit/cycles.py) times this core: llvm-mca's model plus a simulated cache."""

    mca_cpu: str = Field(description="llvm-mca -mcpu whose scheduling model stands in for the core.")
    line_bytes: int = Field(default=64, gt=0)
    l1d: CacheLevel
    l2: CacheLevel
    l3: CacheLevel | None = None
    dram_latency_ns: float = Field(gt=0, description="Load-to-use latency of a DRAM access, in ns.")
    prefetch_degree: int = Field(default=2, ge=0, description="Lines a trained stride prefetcher fetches ahead.")
    exposed_miss_share: float = Field(
        default=0.5, ge=0, le=1,
        description="Share of a demand miss's extra latency the out-of-order core does not hide (stated assumption).",
    )
    sources: list[str] = Field(default_factory=list, description="Where each figure comes from.")


class Device(Strict):
    """The hardware the artifact runs on, and how to emulate its CPU."""

    cpu_model: str = Field(description="Marketing name of the CPU core, e.g. 'Cortex-A72'.")
    qemu_cpu: str = Field(description="qemu -cpu name; never 'max' (it exposes features real devices lack).")
    isa: str = Field(description="Architecture level, e.g. 'armv8.0-a'.")
    features: list[str] = Field(description="/proc/cpuinfo Features flags of the device.")
    cores: int = Field(gt=0)
    clock_ghz: float = Field(gt=0)
    memory_mb_min: int = Field(gt=0)
    memory_mb_max: int = Field(gt=0)
    os: str
    instructions_per_ns: float = Field(
        gt=0,
        description="Latency-estimate factor: retired guest instructions per nanosecond on one core "
        "(clock x sustained IPC). Stated assumption, not a measurement of the device.",
    )
    threads: int = Field(default=1, gt=0, description="Threads the app runs inference on (XNNPACK's pool).")
    core: CoreModel | None = Field(
        default=None, description="Cycle-estimate model of the core; without it latency falls back to instructions_per_ns."
    )

    @field_validator("qemu_cpu")
    @classmethod
    def _not_max(cls, value: str) -> str:
        if value == "max":
            raise ValueError("'max' exposes features no real device has; never use it: name the core, e.g. cortex-a72")
        return value

    @model_validator(mode="after")
    def _check(self) -> "Device":
        if self.memory_mb_min > self.memory_mb_max:
            raise ValueError("memory_mb_min is larger than memory_mb_max")
        if self.threads > self.cores:
            raise ValueError(f"threads ({self.threads}) is more than the device's cores ({self.cores})")
        return self


class Budgets(Strict):
    """Limits an exported artifact must fit in on this device."""

    artifact_mb: float = Field(gt=0, description="Largest shipped model file, in MB (10^6 bytes).")
    latency_ms: float = Field(gt=0, description="Latency budget for one inference on one core.")
    memory_mb: float = Field(gt=0, description="Working memory the model may use at run time.")


class StudentConstraints(Strict):
    """Which student shapes and op choices the device can afford."""

    max_layers: int = Field(gt=0)
    max_d_model: int = Field(gt=0)
    min_d_model: int = Field(default=64, gt=0)
    n_head: int = Field(gt=0)
    ffn_ratio: int = Field(default=4, gt=0, description="d_inner = ffn_ratio * d_model.")
    activations: list[Activation] = Field(min_length=1, description="Allowed; the first is preferred.")
    normalisations: list[Normalisation] = Field(min_length=1, description="Allowed; the first is preferred.")
    mask_input: Literal["attention_mask", "additive_bias"] = Field(
        default="attention_mask",
        description="attention_mask: 0/1 ids-style mask, the bias is built in-graph. additive_bias: the app passes "
        "the float bias, so the graph carries no bool/int mask ops (NNAPI).",
    )
    route: Literal["fresh", "prune", "prune+lowrank", "scratch"] = Field(
        default="fresh",
        description="How the student starts (--route overrides): fresh (teacher embeddings, new layers when narrower), "
        "prune (the teacher's layers pruned to the budgets), prune+lowrank, scratch (random init). BENCHMARKS.md, "
        "'Distillation recipes and routes', compares them.",
    )
    auto_qat: bool = Field(
        default=True,
        description="When a post-training static int8 artifact fails its host check, train the student one more "
        "epoch quantization-aware and export every artifact from it (off when --qat-epochs is given).",
    )

    @model_validator(mode="after")
    def _check(self) -> "StudentConstraints":
        if self.min_d_model > self.max_d_model:
            raise ValueError("min_d_model is larger than max_d_model")
        if self.max_d_model % self.n_head:
            raise ValueError(f"max_d_model {self.max_d_model} is not divisible by n_head {self.n_head}")
        return self


class Artifact(Strict):
    """One file to emit: its format, quantization recipe and the runtime/delegate that will run it on the device.

    Formats and recipes are the registered ones (toolkit/registry.py); runtimes and delegates, and what each allows,
    are data (targets/rules/runtimes-delegates.yaml, toolkit/rules.py).
    """

    format: str
    recipe: str
    runtime: str
    delegate: str

    @model_validator(mode="after")
    def _check(self) -> "Artifact":
        from toolkit.rules import artifact_problems

        problems = artifact_problems(self.format, self.recipe, self.runtime, self.delegate)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def name(self) -> str:
        return f"{self.format}-{self.recipe}"


class Tolerances(Strict):
    """What a host or emulator check must meet for an artifact to be marked valid."""

    max_accuracy_drop_points: float = Field(ge=0, description="vs the fp32 eager student, in accuracy points.")
    min_argmax_agreement: float = Field(ge=0, le=1, description="Share of samples with the student's label.")
    fp32_max_abs_logit_diff: float = Field(gt=0, description="Float artifacts vs the eager student.")
    emulator_fp32_max_abs_diff: float = Field(gt=0, description="Emulator vs host, same runtime, float artifacts.")
    emulator_int8_max_steps: float = Field(gt=0, description="Emulator vs host, int8 artifacts, in output quant steps.")


class Validation(Strict):
    emulator_samples: int = Field(gt=0, description="Seeded subset of the dev set run under emulation.")
    seed: int = 0
    tolerances: Tolerances


class Profile(Strict):
    """A complete target profile."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    description: str
    device: Device
    budgets: Budgets
    sequence_length: int = Field(ge=8, le=512, description="The longest input, in tokens: longer texts are cut.")
    sequence_lengths: list[int] | None = Field(
        default=None,
        description="Length buckets: one artifact holds one method (.pte) / signature (.tflite) per length and the "
        "app runs the smallest that holds the text. The largest must be sequence_length. Default: just that one.",
    )
    student: StudentConstraints
    artifacts: list[Artifact] = Field(min_length=1)
    validation: Validation
    notes: str = ""

    @model_validator(mode="after")
    def _check(self) -> "Profile":
        names = [a.name for a in self.artifacts]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"artifacts listed twice: {duplicates}")
        if self.sequence_lengths is not None:
            lengths = self.sequence_lengths
            if len(set(lengths)) != len(lengths) or any(n < 8 for n in lengths):
                raise ValueError(f"sequence_lengths {lengths}: each length once, and none shorter than 8 tokens")
            if max(lengths) != self.sequence_length:
                raise ValueError(f"sequence_lengths {lengths}: the largest must be sequence_length "
                                 f"({self.sequence_length}), the length longer texts are cut to")
        return self

    @property
    def lengths(self) -> tuple[int, ...]:
        """The length buckets, shortest first; the last is ``sequence_length`` (a copy of the profile made with a
        shorter ``sequence_length`` keeps only the buckets below it)."""
        kept = {n for n in self.sequence_lengths or () if n <= self.sequence_length}
        return tuple(sorted(kept | {self.sequence_length}))


class ProfileError(ToolkitError, ValueError):
    """A profile file that cannot be used; the message names the file and the bad field."""


def shipped_profile_paths() -> dict[str, Path]:
    return {p.stem: p for p in sorted(TARGETS_DIR.glob("*.yaml"))}


def resolve_profile_path(name_or_path: str | Path) -> Path:
    """A shipped profile name (``raspberry-pi-4``) or a path to the user's own YAML file."""
    shipped = shipped_profile_paths()
    if str(name_or_path) in shipped:
        return shipped[str(name_or_path)]
    path = Path(name_or_path)
    if path.is_file():
        return path
    raise ProfileError(
        f"no profile '{name_or_path}': give a shipped name ({', '.join(shipped)}) or the path of a YAML file"
    )


def load_profile(name_or_path: str | Path) -> Profile:
    """Load and validate a profile; every problem is reported with the file and the dotted field path."""
    path = resolve_profile_path(name_or_path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ProfileError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ProfileError(f"{path}: a profile is a YAML mapping, got {type(data).__name__}")
    try:
        return Profile.model_validate(data)
    except ValidationError as err:
        lines = []
        for e in err.errors():
            field = ".".join(str(p) for p in e["loc"]) or "(top level)"
            lines.append(f"  {field}: {e['msg'].removeprefix('Value error, ')}")
        raise ProfileError(f"{path}: invalid profile\n" + "\n".join(lines)) from err


def list_profiles() -> list[Profile]:
    return [load_profile(p) for p in shipped_profile_paths().values()]
