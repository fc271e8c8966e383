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

from toolkit.buckets import at_length, bucket_of_rows, expected_latency_ms, shares
from toolkit.checks import CheckResult, compare_logits, gate_emulator_vs_host
from toolkit.manifest import artifact_lengths, artifact_method
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


def host_logits(artifact: dict, model: Path, inputs: list[np.ndarray], method: str | None = None) -> np.ndarray:
    """The artifact's logits from the host build of the runtime the emulated device runs."""
    return get_backend(artifact["format"]).run_host_build(model, inputs, artifact["runtime"], method)


def emulated_run(
    artifact: dict, model: Path, inputs: list[np.ndarray], profile: Profile, *, profile_cycles: bool = False,
    threads: int = 1, method: str | None = None,
):
    backend = get_backend(artifact["format"])
    return backend.run_emulated(profile.device, artifact, model, inputs, method=method,
                                profile_cycles=profile_cycles, threads=threads)


def quantization_step(reference: np.ndarray) -> float:
    """One int8 step of the logits' observed range: the unit the int8 emulator tolerance is counted in."""
    span = float(np.max(reference) - np.min(reference))
    return max(span, 1e-6) / INT8_LEVELS


def steady_state_instructions(counts: list[int]) -> int | None:
    """Median instructions per inference, leaving out the first (it includes one-time XNNPACK set-up)."""
    steady = counts[1:] if len(counts) > 1 else counts
    return int(statistics.median(steady)) if steady else None


@dataclass
class BucketRun:
    """One length bucket on the emulated device: the subset examples an app runs in it, plus (when fewer than two)
    other examples cut to this length, so that every bucket is timed on a warm inference."""

    length: int
    method: str | None
    rows: np.ndarray  # subset examples an app runs in this bucket
    inputs: list[np.ndarray]  # rows first, then the timing-only extras
    host: np.ndarray
    run: object  # EmulatedRun


def run_buckets(artifact: dict, model: Path, profile: Profile, inputs: list[np.ndarray], profile_cycles: bool):
    """Host build and emulated device on each bucket's examples, every bucket run with its own method."""
    lengths = artifact_lengths(artifact)
    picked = bucket_of_rows(inputs, lengths)
    runs = []
    for length in lengths:
        rows = np.flatnonzero(picked == length)
        extras = np.flatnonzero(picked != length)[: max(0, 2 - len(rows))]
        arrays = at_length([a[np.concatenate([rows, extras])] for a in inputs], length)
        method = artifact_method(artifact, length)
        host = host_logits(artifact, model, arrays, method)
        run = emulated_run(artifact, model, arrays, profile, profile_cycles=profile_cycles, method=method)
        runs.append(BucketRun(length, method, rows, arrays, host, run))
    return runs


def validate_artifact(
    artifact: dict,
    bundle_dir: Path,
    profile: Profile,
    inputs: list[np.ndarray],
    labels: np.ndarray,
    student_reference: np.ndarray,
    eval_shares: dict[int, float] | None = None,
) -> EmulatorOutcome:
    """Host vs emulator for one artifact on the subset ``inputs`` (already the validation subset, at the longest
    length), every example in the length bucket an app picks for it; each bucket is timed.

    ``eval_shares``: the share of the whole eval set an app runs in each bucket, for the expected latency (default:
    the subset's own shares).
    """
    from toolkit.cycles import cycle_model_problem
    from toolkit.emulate import estimate_latency_ms

    model = bundle_dir / artifact["file"]
    is_float = get_recipe(artifact["format"], artifact["recipe"]).is_float
    no_cycles = cycle_model_problem(profile.device)
    buckets = run_buckets(artifact, model, profile, inputs, profile_cycles=no_cycles is None)
    host = np.zeros_like(student_reference, dtype=np.float32)
    emulated = np.zeros_like(host)
    extra_host, extra_emulated = [], []
    for bucket in buckets:
        count = len(bucket.rows)
        host[bucket.rows], emulated[bucket.rows] = bucket.host[:count], bucket.run.logits[:count]
        extra_host.append(bucket.host[count:])
        extra_emulated.append(bucket.run.logits[count:])
    cpu, runtime = buckets[0].run.cpu, buckets[0].run.runtime
    check = compare_logits(f"emulator {profile.device.qemu_cpu} vs host {artifact['runtime']}", host, emulated, labels)
    step = None if is_float else quantization_step(host)
    check = gate_emulator_vs_host(check, profile.validation.tolerances, is_float, step)
    extras = compare_logits("timing-only inputs", np.concatenate(extra_host), np.concatenate(extra_emulated))
    if extras.samples:  # the extra inputs must agree too: they are what the bucket's latency was measured on
        extras = gate_emulator_vs_host(extras, profile.validation.tolerances, is_float, step)
        check.failures += [f"{failure} (inputs run only to time a bucket)" for failure in extras.failures]
        check.passed = check.passed and extras.passed
    student_accuracy = float((student_reference.argmax(1) == labels).mean())
    host_accuracy = float((host.argmax(1) == labels).mean())
    check.details.update(
        kind="emulator",
        cpu=cpu,
        runtime=runtime,
        host_accuracy=host_accuracy,
        student_accuracy=student_accuracy,
        emulator_accuracy=check.accuracy,
    )
    drop = (student_accuracy - (check.accuracy or 0.0)) * 100
    check.details["accuracy_drop_vs_student_points"] = drop
    if drop > profile.validation.tolerances.max_accuracy_drop_points + _subset_noise_points(len(labels)):
        check.failures.append(f"emulator accuracy {check.accuracy:.4f} is {drop:.1f} points below the student's")
        check.passed = False

    per_bucket = []
    for bucket in buckets:
        instructions = steady_state_instructions(bucket.run.instructions_per_inference)
        figures = {
            "instructions_per_inference": instructions,
            "estimated_latency_ms": estimate_latency_ms(instructions, profile.device) if instructions else None,
            "estimate_method": "instructions",
        }
        if no_cycles is None and bucket.run.profile is not None:
            figures.update(_cycle_fields(artifact, model, bucket, profile))
            figures["instructions_estimate_ms"] = estimate_latency_ms(instructions, profile.device)
        per_bucket.append(figures)
    longest = per_bucket[-1]  # the fixed-length figure: what every input costs without buckets
    emulator = {
        "cpu": cpu,
        "runtime": runtime,
        "samples": len(labels),
        "assumption": (
            f"estimate = guest instructions per inference (median, first excluded) / {profile.device.instructions_per_ns}"
            f" instructions per ns on one {profile.device.cpu_model} core (the profile's stated clock x sustained IPC); "
            "caches, memory bandwidth and stalls are not modelled"
            + (f" (no cycle estimate: {no_cycles})" if no_cycles else "")
        ),
        **longest,  # a cycle estimate brings its own assumption
        "latency_budget_ms": profile.budgets.latency_ms,
        "within_budget": longest["estimated_latency_ms"] is not None
        and longest["estimated_latency_ms"] <= profile.budgets.latency_ms,
        "wall_seconds": round(sum(b.run.wall_seconds for b in buckets), 2),
    }
    if len(buckets) > 1:
        lengths = [b.length for b in buckets]
        bucket_shares = eval_shares or shares(bucket_of_rows(inputs, lengths), lengths)
        emulator["buckets"] = [
            {"sequence_length": b.length, "method": b.method, "samples": len(b.rows),
             "eval_share": bucket_shares.get(b.length, 0.0), **_bucket_summary(figures)}
            for b, figures in zip(buckets, per_bucket)
        ]
        by_length = {b.length: f["estimated_latency_ms"] for b, f in zip(buckets, per_bucket)}
        emulator["expected_latency_ms"] = (expected_latency_ms(by_length, bucket_shares)
                                           if None not in by_length.values() else None)
    return EmulatorOutcome(check, emulator)


def _bucket_summary(figures: dict) -> dict:
    """A bucket's latency figures without the cycle estimate's full breakdown (kept for the longest bucket)."""
    summary = {k: figures[k] for k in ("instructions_per_inference", "estimated_latency_ms", "estimate_method",
                                       "instructions_estimate_ms") if k in figures}
    if "threads" in figures:
        summary["threads_latency_ms"] = figures["threads"]["estimated_latency_ms"]
    return summary


def _cycle_fields(artifact: dict, model: Path, bucket: BucketRun, profile: Profile) -> dict:
    """The cycle estimate of a bucket run's last inference, and of ``device.threads`` threads in a second short run."""
    from toolkit.cycles import latency_record, threads_record
    from toolkit.emulate import estimate_cycles

    device = profile.device
    one = estimate_cycles(bucket.run, device)
    fields = latency_record(one, device)
    if device.threads > 1:
        short = [a[:2] for a in bucket.inputs]  # one warm-up inference, then the profiled one
        threaded = emulated_run(artifact, model, short, profile, profile_cycles=True, threads=device.threads,
                                method=bucket.method)
        fields["threads"] = threads_record(estimate_cycles(threaded, device), one, device.threads)
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
