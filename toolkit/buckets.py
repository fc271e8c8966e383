"""Length buckets: one artifact holds one method per sequence length, and an app runs the shortest that holds the text.

XLNet pads on the left and its attention uses relative positions, so a text's logits do not depend on how much
padding precedes it (apart from the finite mask value): the same text gives the same logits at every length that
holds it, while a short text at length 32 costs about a quarter of what it costs at 128. The rules here are the ones
every sample app implements (Python, C++, Kotlin): pick the shortest bucket that holds all of the text's tokens
(specials included); a text longer than the largest bucket is cut to it, as before.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def method_name(length: int) -> str:
    """The ``.pte`` method / ``.tflite`` signature that takes ``length`` tokens."""
    return f"forward_{length}"


def pick_length(tokens: int, lengths: Sequence[int]) -> int:
    """The shortest bucket holding ``tokens`` tokens; the longest when none does (the text is cut to it)."""
    return next((n for n in sorted(lengths) if n >= tokens), max(lengths))


def picked_lengths(token_counts: np.ndarray, lengths: Sequence[int]) -> np.ndarray:
    """The bucket each example runs in, from its token count (specials included)."""
    return np.array([pick_length(int(n), lengths) for n in token_counts], dtype=np.int64)


def bucket_of_rows(inputs: Sequence[np.ndarray], lengths: Sequence[int]) -> np.ndarray:
    """The bucket each row of model inputs (at the longest length) runs in: what an app picks for it."""
    return picked_lengths(token_counts(inputs), lengths)


def at_length(inputs: Sequence[np.ndarray], length: int) -> list[np.ndarray]:
    """Model inputs [N, L_max] as length ``length``: the last ``length`` columns (padding is on the left).

    For a text that fits, this is exactly what the tokenizer produces at ``length``; a longer text loses its start.
    """
    return [np.ascontiguousarray(a[:, -length:]) for a in inputs]


def shares(picked: np.ndarray, lengths: Sequence[int]) -> dict[int, float]:
    """Share of examples per bucket."""
    picked = np.asarray(picked)
    return {int(n): float((picked == n).mean()) if len(picked) else 0.0 for n in lengths}


def expected_latency_ms(latency_by_length: dict[int, float], bucket_shares: dict[int, float]) -> float:
    """Latency averaged over a data set's length distribution: sum of share x latency per bucket."""
    return float(sum(bucket_shares[n] * latency_by_length[n] for n in bucket_shares if bucket_shares[n] > 0))


def token_counts(inputs: Sequence[np.ndarray]) -> np.ndarray:
    """Real tokens per example, from the model inputs' mask (input 1): a 1/0 attention mask, or the additive bias
    (0 on tokens, a large negative value on padding)."""
    mask = np.asarray(inputs[1])
    real = mask != 0 if np.issubdtype(mask.dtype, np.integer) else mask == 0
    return real.sum(axis=1)


def run_by_bucket(run, inputs: Sequence[np.ndarray], lengths: Sequence[int]) -> np.ndarray:
    """Logits [N, C] with every example run in the bucket an app picks for it.

    ``run(arrays, length)`` returns the logits of ``arrays`` (model inputs at ``length``) from that length's method.
    """
    picked = bucket_of_rows(inputs, lengths)
    logits = None
    for length in sorted(lengths):
        rows = np.flatnonzero(picked == length)
        if len(rows):
            part = np.asarray(run(at_length([a[rows] for a in inputs], length), length))
            if logits is None:
                logits = np.zeros((len(picked), part.shape[1]), dtype=np.float32)
            logits[rows] = part
    if logits is None:
        raise ValueError("no inputs to run")
    return logits
