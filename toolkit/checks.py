"""Comparing an artifact's logits with a reference, and gating on a profile's tolerances.

Every check (host runtime vs eager student, emulator vs host runtime) produces a :class:`CheckResult` with the
figures and a verdict; the export and validate stages refuse to mark an artifact valid when a verdict fails.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from toolkit.errors import ToolkitError
from toolkit.profiles import Tolerances


@dataclass
class CheckResult:
    """Figures of one comparison and whether they meet the tolerances."""

    name: str
    samples: int
    accuracy: float | None  # of the candidate on the true labels, if labels were given
    reference_accuracy: float | None
    argmax_agreement: float
    max_abs_logit_diff: float
    passed: bool = True
    failures: list[str] = field(default_factory=list)
    details: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        acc = "" if self.accuracy is None else f"acc {self.accuracy:.4f} (ref {self.reference_accuracy:.4f}), "
        verdict = "PASS" if self.passed else "FAIL: " + "; ".join(self.failures)
        return (
            f"{self.name}: {self.samples} samples, {acc}agreement {self.argmax_agreement:.4f}, "
            f"max |diff| {self.max_abs_logit_diff:.3g} -> {verdict}"
        )


class ToleranceError(ToolkitError, RuntimeError):
    """An artifact did not meet its profile's tolerances; the message says what differed."""


def compare_logits(
    name: str, reference: np.ndarray, candidate: np.ndarray, labels: np.ndarray | None = None
) -> CheckResult:
    """Accuracy, argmax agreement and max |logit difference| of ``candidate`` against ``reference`` ([N, C])."""
    reference = np.asarray(reference, dtype=np.float64)
    candidate = np.asarray(candidate, dtype=np.float64)
    if reference.shape != candidate.shape:
        raise ValueError(f"{name}: logits shapes differ: reference {reference.shape} vs candidate {candidate.shape}")
    if not np.all(np.isfinite(candidate)):
        bad = int((~np.isfinite(candidate)).any(axis=1).sum())
        return CheckResult(name, len(candidate), None, None, 0.0, float("inf"), False, [f"{bad} samples with NaN/inf"])
    ref_pred, cand_pred = reference.argmax(1), candidate.argmax(1)
    accuracy = reference_accuracy = None
    if labels is not None:
        labels = np.asarray(labels)
        accuracy = float((cand_pred == labels).mean())
        reference_accuracy = float((ref_pred == labels).mean())
    return CheckResult(
        name=name,
        samples=int(len(candidate)),
        accuracy=accuracy,
        reference_accuracy=reference_accuracy,
        argmax_agreement=float((ref_pred == cand_pred).mean()),
        max_abs_logit_diff=float(np.abs(reference - candidate).max()) if len(candidate) else 0.0,
    )


def pack_correct(correct: np.ndarray) -> str:
    """Per-example correctness as hex of its bits (numpy ``packbits`` order): 872 dev examples take 218 characters.

    Stored in host checks (``details.correct_bits``) so artifacts can be compared example by example later (a
    paired significance test in the report) without keeping every prediction.
    """
    return np.packbits(np.asarray(correct, dtype=bool)).tobytes().hex()


def unpack_correct(bits: str, count: int) -> np.ndarray:
    """The boolean array [count] that :func:`pack_correct` encoded."""
    return np.unpackbits(np.frombuffer(bytes.fromhex(bits), dtype=np.uint8), count=count).astype(bool)


def gate_against_student(result: CheckResult, tolerances: Tolerances, is_float: bool) -> CheckResult:
    """Host check of an artifact vs the fp32 eager student: accuracy drop, agreement, and (float) max diff."""
    failures = []
    if result.accuracy is not None and result.reference_accuracy is not None:
        drop_points = (result.reference_accuracy - result.accuracy) * 100
        result.details["accuracy_drop_points"] = drop_points
        if drop_points > tolerances.max_accuracy_drop_points:
            failures.append(
                f"accuracy dropped {drop_points:.2f} points (> {tolerances.max_accuracy_drop_points}) "
                f"from {result.reference_accuracy:.4f} to {result.accuracy:.4f}"
            )
    if result.argmax_agreement < tolerances.min_argmax_agreement:
        failures.append(f"argmax agreement {result.argmax_agreement:.4f} < {tolerances.min_argmax_agreement}")
    if is_float and result.max_abs_logit_diff > tolerances.fp32_max_abs_logit_diff:
        failures.append(
            f"max |logit diff| {result.max_abs_logit_diff:.3g} > {tolerances.fp32_max_abs_logit_diff} for a float model"
        )
    return _with_verdict(result, failures)


def gate_emulator_vs_host(
    result: CheckResult, tolerances: Tolerances, is_float: bool, output_step: float | None
) -> CheckResult:
    """Emulator vs host with the same runtime: float within an absolute bound, int8 within N output quant steps.

    ``output_step`` is the logits' quantization step (scale) for int8 outputs; when the output is float but the
    model is int8 inside, pass the step of the last quantized tensor (or None to fall back to the float bound).
    """
    failures = []
    if is_float or not output_step:
        bound = tolerances.emulator_fp32_max_abs_diff
        if is_float and result.max_abs_logit_diff > bound:
            failures.append(f"max |diff| {result.max_abs_logit_diff:.3g} > {bound} (float model)")
        if not is_float:
            result.details["note"] = "no output quantization step known; compared argmax only"
    else:
        steps = result.max_abs_logit_diff / output_step
        result.details["max_diff_quant_steps"] = steps
        if steps > tolerances.emulator_int8_max_steps:
            failures.append(f"max |diff| is {steps:.2f} quantization steps (> {tolerances.emulator_int8_max_steps})")
    if result.argmax_agreement < tolerances.min_argmax_agreement:
        failures.append(f"argmax agreement {result.argmax_agreement:.4f} < {tolerances.min_argmax_agreement}")
    return _with_verdict(result, failures)


def _with_verdict(result: CheckResult, failures: list[str]) -> CheckResult:
    result.failures = failures
    result.passed = not failures
    return result
