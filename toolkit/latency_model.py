"""The per-profile student latency model that sizes students (``toolkit.distill.choose_shape``).

For every (core model, artifact kind, student op choices) combination the shipped profiles use,
bench/student_cost_models.py exported a few corner student shapes, ran each on the emulated core and took the cycle
estimate of one steady-state inference (toolkit/cycles.py). A three-term model is fitted to those cycles:

    cycles = a * multiply_adds + b * token_work + c

* ``multiply_adds``: the GEMM-shaped work (q/k/v/o, relative-position and FFN projections, attention scores and
  context) of one inference at the profile's sequence length; ``a`` is cycles per multiply-add.
* ``token_work``: layers x tokens x (d_model + d_inner), the element-wise work per token (norms, activations,
  quantize/dequantize, copies between ops); ``b`` is cycles per element.
* ``c``: fixed cost per inference (runtime dispatch, embedding lookup, pooling, head).

Latency = cycles / clock x the core's calibration factor against published device timings (the same factor the
emulator estimate uses). The coefficients are data, stored in targets/cost_models.json under ``student_latency``;
a combination that has none falls back to the uncalibrated FLOP model and says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from toolkit.cycles import COST_MODELS, read_json, calibration_for

# The pre-calibration assumption, kept only as the fallback: sustained throughput of an ARM core in GFLOP/s per GHz.
GFLOPS_PER_GHZ = 4.0


def linear_macs(config, in_features: int, out_features: int) -> int:
    """Multiply-adds per token of one projection: dense, or the two factors where the config's rank applies."""
    rank = getattr(config, "linear_rank", None)
    if rank and rank * (in_features + out_features) < in_features * out_features:
        return rank * (in_features + out_features)
    return in_features * out_features


def multiply_adds(config) -> int:
    """Multiply-adds of one inference: projections over L tokens, relative positions over 2L, attention, pooling.

    Pruned heads (``inner`` < d_model), a kept position-table width and factorised projections count as they run.
    """
    d, length = config.d_model, config.seq_len
    inner = getattr(config, "inner", d)
    position_width = getattr(config, "position_width", d)
    projections = 4 * linear_macs(config, d, inner) + linear_macs(config, d, config.d_inner) * 2
    per_layer = length * projections + 2 * length * position_width * inner + 4 * length * length * inner
    return config.n_layer * per_layer + d * d


def token_work(config) -> int:
    return config.n_layer * config.seq_len * (config.d_model + config.d_inner)


def features(config) -> np.ndarray:
    return np.array([multiply_adds(config), token_work(config), 1.0])


def combo_key(profile, artifact) -> str:
    """What a fitted model is keyed by: the core's timing model, the artifact kind and the student's op choices."""
    core = profile.device.core.mca_cpu if profile.device.core else profile.device.qemu_cpu
    s = profile.student
    return f"{core}|{artifact.name}|{artifact.runtime}|{artifact.delegate}|{s.activations[0]}|{s.normalisations[0]}|{s.mask_input}"


def fit(points: list[tuple[np.ndarray, float]]) -> np.ndarray:
    """Non-negative coefficients (a, b, c) minimising the RELATIVE error over the fit points."""
    from scipy.optimize import nnls

    x = np.array([f / y for f, y in points])  # each row scaled by 1/y: residuals become relative errors
    y = np.ones(len(points))
    scale = x.max(axis=0)
    scale[scale == 0] = 1.0
    coefficients, _ = nnls(x / scale, y)
    return coefficients / scale


@dataclass(frozen=True)
class LatencyPrediction:
    ms: float
    uncalibrated_ms: float
    source: str  # what the figure rests on


def load_models() -> dict:
    return read_json(COST_MODELS).get("student_latency") or {}


def predict_ms(config, profile, artifact, models: dict | None = None) -> LatencyPrediction:
    """Predicted single-thread latency of ``artifact`` for a student of ``config`` on ``profile``'s device."""
    models = load_models() if models is None else models
    entry = models.get(combo_key(profile, artifact))
    clock = profile.device.clock_ghz
    if entry is None:
        flops = 2 * multiply_adds(config)
        ms = flops / (clock * GFLOPS_PER_GHZ * 1e9) * 1e3
        return LatencyPrediction(ms, ms, f"uncalibrated FLOP model ({GFLOPS_PER_GHZ:g} GFLOP/s per GHz): no fitted "
                                         f"model for {combo_key(profile, artifact)}")  # fmt: skip
    cycles = float(np.dot(entry["coefficients"], features(config)))
    raw = cycles / (clock * 1e6)
    calibration = calibration_for(profile.device.core.mca_cpu) if profile.device.core else None
    factor = calibration["factor"] if calibration else 1.0
    source = (
        f"emulator-fitted model ({entry['fit_points']} shapes, max fit error {entry['max_fit_error']:.1%}) x "
        + (f"calibration {factor:.3f}" if calibration else "no calibration factor")
    )
    return LatencyPrediction(raw * factor, raw, source)
