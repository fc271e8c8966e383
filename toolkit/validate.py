"""Validation on the emulated device: each artifact runs on the profile's CPU under qemu with the device's runtime.

For every artifact in a bundle's manifest, on a fixed seeded subset of the real dev set:

* the same runtime runs it on the host (``.pte``: the C++ runner built for x86_64, the same source the device runs;
  ``.tflite``: the artifact's own runtime package, ai-edge-litert or tflite-runtime 2.14);
* the emulated CPU (``profile.device.qemu_cpu``) runs it with the aarch64 build of that runtime, counting guest
  instructions per inference;
* logits are compared (float models: an absolute bound; int8 models: a number of quantization steps of the logits'
  range), accuracy is compared with the eager student's, and the last inference becomes a latency ESTIMATE: its
  cycles (llvm-mca per translated block + simulated cache misses, calibrated against published device timings;
  toolkit/cycles.py) when the profile has a core model and llvm-mca is installed, else instructions / the profile's
  stated ``instructions_per_ns``. With ``device.threads`` > 1 a second short run estimates that many threads.

Results and verdicts are written into the manifest; :class:`ValidationError` says what differed.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from toolkit.checks import CheckResult, compare_logits, gate_emulator_vs_host
from toolkit.profiles import Profile
from toolkit.registry import get_backend, get_recipe

INT8_LEVELS = 255  # an int8 tensor spans its range in 255 steps


class ValidationError(RuntimeError):
    """An artifact failed on the emulated device; the message names the artifact and what differed."""


@dataclass
class EmulatorOutcome:
    check: CheckResult
    emulator: dict


def validation_subset(num_examples: int, profile: Profile) -> list[int]:
    """The fixed, seeded dev indices run under emulation (emulation is 50-700x slower than native)."""
    rng = np.random.default_rng(profile.validation.seed)
    size = min(profile.validation.emulator_samples, num_examples)
    return sorted(rng.choice(num_examples, size=size, replace=False).tolist())


def host_logits(artifact: dict, model: Path, inputs: list[np.ndarray]) -> np.ndarray:
    """The artifact's logits from the host build of the runtime the emulated device runs."""
    return get_backend(artifact["format"]).run_host_build(model, inputs, artifact["runtime"])


def emulated_run(
    artifact: dict, model: Path, inputs: list[np.ndarray], profile: Profile, *, profile_cycles: bool = False,
    threads: int = 1,
):
    backend = get_backend(artifact["format"])
    return backend.run_emulated(profile.device, artifact, model, inputs, profile_cycles=profile_cycles, threads=threads)


def quantization_step(reference: np.ndarray) -> float:
    """One int8 step of the logits' observed range: the unit the int8 emulator tolerance is counted in."""
    span = float(np.max(reference) - np.min(reference))
    return max(span, 1e-6) / INT8_LEVELS


def steady_state_instructions(counts: list[int]) -> int | None:
    """Median instructions per inference, leaving out the first (it includes one-time XNNPACK set-up)."""
    steady = counts[1:] if len(counts) > 1 else counts
    return int(statistics.median(steady)) if steady else None


def validate_artifact(
    artifact: dict,
    bundle_dir: Path,
    profile: Profile,
    inputs: list[np.ndarray],
    labels: np.ndarray,
    student_reference: np.ndarray,
) -> EmulatorOutcome:
    """Host vs emulator for one artifact on the subset ``inputs`` (already the validation subset)."""
    from toolkit.cycles import cycle_model_problem
    from toolkit.emulate import estimate_latency_ms

    model = bundle_dir / artifact["file"]
    is_float = get_recipe(artifact["format"], artifact["recipe"]).is_float
    host = host_logits(artifact, model, inputs)
    no_cycles = cycle_model_problem(profile.device)
    run = emulated_run(artifact, model, inputs, profile, profile_cycles=no_cycles is None)
    check = compare_logits(f"emulator {profile.device.qemu_cpu} vs host {artifact['runtime']}", host, run.logits, labels)
    check = gate_emulator_vs_host(check, profile.validation.tolerances, is_float, None if is_float else quantization_step(host))
    student_accuracy = float((student_reference.argmax(1) == labels).mean())
    host_accuracy = float((host.argmax(1) == labels).mean())
    check.details.update(
        kind="emulator",
        cpu=run.cpu,
        runtime=run.runtime,
        host_accuracy=host_accuracy,
        student_accuracy=student_accuracy,
        emulator_accuracy=check.accuracy,
    )
    drop = (student_accuracy - (check.accuracy or 0.0)) * 100
    check.details["accuracy_drop_vs_student_points"] = drop
    if drop > profile.validation.tolerances.max_accuracy_drop_points + _subset_noise_points(len(labels)):
        check.failures.append(f"emulator accuracy {check.accuracy:.4f} is {drop:.1f} points below the student's")
        check.passed = False
    instructions = steady_state_instructions(run.instructions_per_inference)
    latency = estimate_latency_ms(instructions, profile.device) if instructions else None
    emulator = {
        "cpu": run.cpu,
        "runtime": run.runtime,
        "samples": len(labels),
        "instructions_per_inference": instructions,
        "estimated_latency_ms": latency,
        "latency_budget_ms": profile.budgets.latency_ms,
        "within_budget": latency is not None and latency <= profile.budgets.latency_ms,
        "wall_seconds": round(run.wall_seconds, 2),
        "assumption": (
            f"estimate = guest instructions per inference (median, first excluded) / {profile.device.instructions_per_ns}"
            f" instructions per ns on one {profile.device.cpu_model} core (the profile's stated clock x sustained IPC); "
            "caches, memory bandwidth and stalls are not modelled"
            + (f" (no cycle estimate: {no_cycles})" if no_cycles else "")
        ),
        "estimate_method": "instructions",
    }
    if no_cycles is None and run.profile is not None:
        emulator.update(_cycle_fields(artifact, model, inputs, profile, run))
        emulator["instructions_estimate_ms"] = latency
        emulator["within_budget"] = emulator["estimated_latency_ms"] <= profile.budgets.latency_ms
    return EmulatorOutcome(check, emulator)


def _cycle_fields(artifact: dict, model: Path, inputs: list[np.ndarray], profile: Profile, run) -> dict:
    """The cycle estimate of the run's last inference, and of ``device.threads`` threads in a second short run."""
    from toolkit.cycles import latency_record, threads_record
    from toolkit.emulate import estimate_cycles

    device = profile.device
    one = estimate_cycles(run, device)
    fields = latency_record(one, device)
    if device.threads > 1:
        short = [a[:2] for a in inputs]  # one warm-up inference, then the profiled one
        threaded = emulated_run(artifact, model, short, profile, profile_cycles=True, threads=device.threads)
        fields["threads"] = threads_record(estimate_cycles(threaded, device), one)
    return fields


def _subset_noise_points(samples: int) -> float:
    """Accuracy on a small subset moves in steps of 100/samples points: allow one sample's worth of difference."""
    return 100.0 / max(samples, 1)


def not_validated_statements(profile: Profile) -> list[str]:
    """What this run could NOT validate for the profile, said plainly for the manifest and report."""
    from toolkit.rules import not_validated

    statements = [
        "Latency figures are estimates from the emulated inference (llvm-mca cycles per block and a simulated "
        "cache, calibrated against published timings of other models on the same core), not timings on the device.",
        f"qemu emulates the {profile.device.cpu_model} instruction set, not its timing; the timing is llvm-mca's model.",
    ]
    statements += not_validated({a.delegate for a in profile.artifacts})
    if profile.device.os == "android":
        statements.append("Android's runtime environment (ART, vendor drivers, thermal limits) was not emulated.")
    return statements
