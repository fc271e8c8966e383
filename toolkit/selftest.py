"""The bundle's golden inputs: ``selftest.json``, which the sample apps' self-tests replay on the device.

A few dev texts (``GOLDEN_EXAMPLES``, both labels where the data has them) with the token ids the host encoder gives
them (the apps' tokenizers must give the same ids) and, for every valid artifact, the logits the artifact's own
runtime gives on the HOST (ExecuTorch for ``.pte``, ai-edge-litert or tflite-runtime for ``.tflite``), with the
tolerance an app must meet. The tolerance is the one the toolkit's emulator check applies (``toolkit.validate``):

* float-compute recipes (fp32, fp16-weights, weight-only-int8): ``|diff| <= emulator_fp32_max_abs_diff`` (1e-4);
* int8 recipes: ``|diff| <= emulator_int8_max_steps`` quantization steps of the logits' range, the step being
  ``(max - min) / 255`` of the host logits on the emulator validation subset (the same unit the emulator check counts
  in), written out as an absolute bound.

One JSON file for every format (an ExecuTorch BundledProgram would cover only ``.pte``); the manifest lists it with
its SHA-256 (``manifest["selftest"]``), and the apps verify that digest before trusting the expected outputs.

    {"format": "xlnet-edge-selftest", "version": 1, "seq_len": 128, "sequence_lengths": [32, 64, 128],
     "mask_input": "attention_mask",
     "examples": [{"text": ..., "pair": null, "label": "positive", "sequence_length": 32,
                   "input_ids": [...], "attention_mask": [...], "token_type_ids": [...]}, ...],
     "artifacts": {"pte-fp32": {"sha256": ..., "runtime": "executorch", "recipe": "fp32", "float": true,
                                "atol": 0.0001, "tolerance": "...", "logits": [[...], ...]}, ...}}
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from toolkit.files import atomic_write_json, sha256_file
from toolkit.profiles import Tolerances
from toolkit.buckets import pick_length
from toolkit.manifest import run_on_host
from toolkit.registry import get_recipe
from toolkit.student import StudentConfig, model_inputs
from toolkit.tokenizer import XLNetTextEncoder

SELFTEST_FILE = "selftest.json"
SELFTEST_FORMAT = "xlnet-edge-selftest"
GOLDEN_EXAMPLES = 4
INT8_LEVELS = 255  # as toolkit.validate: an int8 tensor spans its range in 255 steps

HostRun = Callable[[dict, Path, list[np.ndarray]], np.ndarray]


def golden_indices(labels: Sequence[int], candidates: Sequence[int], count: int = GOLDEN_EXAMPLES) -> list[int]:
    """``count`` of the ``candidates`` (dev indices, in order), taking each label in turn so every label occurs."""
    by_label: dict[int, list[int]] = {}
    for i in candidates:
        by_label.setdefault(int(labels[i]), []).append(i)
    picked: list[int] = []
    queues = [list(q) for _, q in sorted(by_label.items())]
    while len(picked) < min(count, len(candidates)) and any(queues):
        for queue in queues:
            if queue and len(picked) < count:
                picked.append(queue.pop(0))
    return picked


def host_logits(artifact: dict, path: Path, inputs: list[np.ndarray]) -> np.ndarray:
    """Logits [N, C] of the artifact's own runtime on the host (the reference the device must reproduce), each
    example in the length bucket an app picks for it."""
    return run_on_host(artifact, path, inputs)


def tolerance_for(is_float: bool, tolerances: Tolerances, step_logits: np.ndarray | None) -> tuple[float, str]:
    """(absolute bound, how it was derived) for one artifact: the emulator check's rule as a number."""
    if is_float or step_logits is None or not len(step_logits):
        bound = tolerances.emulator_fp32_max_abs_diff
        kind = "float" if is_float else "int8 (no range known: float bound)"
        return bound, f"{kind} model: max |logit diff| <= {bound:g} (profile emulator_fp32_max_abs_diff)"
    span = float(np.max(step_logits) - np.min(step_logits))
    step = max(span, 1e-6) / INT8_LEVELS
    steps = tolerances.emulator_int8_max_steps
    return steps * step, (
        f"int8 model: max |logit diff| <= {steps:g} quantization steps of {step:.6g} (the host logits' range "
        f"{span:.4g} / {INT8_LEVELS}, as the emulator check counts them) = {steps * step:.6g}"
    )


def build_selftest(
    bundle: Path,
    artifacts: Sequence[dict],
    encoder: XLNetTextEncoder,
    config: StudentConfig,
    texts: Sequence[str],
    pairs: Sequence[str] | None,
    label_names: Sequence[str | None],
    tolerances: Tolerances,
    step_inputs: list[np.ndarray] | None = None,
    run: HostRun = host_logits,
    lengths: Sequence[int] | None = None,
) -> dict:
    """The selftest document for ``texts`` (the golden examples) and every valid artifact record (manifest dicts).

    ``step_inputs`` are the model inputs the int8 quantization step is measured on (the emulator validation
    subset); without them the golden inputs themselves are used. ``lengths``: the artifacts' length buckets; each
    example's ids are stored at the length an app runs it in (``sequence_length``).
    """
    batch = encoder.encode(list(texts), None if pairs is None else list(pairs), seq_len=config.seq_len)
    inputs = model_inputs(config, batch.input_ids, batch.attention_mask, batch.token_type_ids)
    lengths = sorted(lengths or [config.seq_len])
    examples = []
    for i, text in enumerate(texts):
        length = pick_length(int(np.asarray(batch.attention_mask[i]).sum()), lengths)  # the app's bucket
        examples.append({
            "text": text,
            "pair": None if pairs is None else pairs[i],
            "label": label_names[i],
            "sequence_length": length,
            "input_ids": batch.input_ids[i][-length:].tolist(),
            "attention_mask": batch.attention_mask[i][-length:].tolist(),
            "token_type_ids": batch.token_type_ids[i][-length:].tolist(),
        })  # fmt: skip
    expected = {}
    for artifact in artifacts:
        if not artifact.get("valid"):
            continue
        path = Path(bundle) / artifact["file"]
        logits = np.asarray(run(artifact, path, inputs), dtype=np.float32)
        is_float = get_recipe(artifact["format"], artifact["recipe"]).is_float
        step_logits = None
        if not is_float:
            step_logits = logits if step_inputs is None else np.asarray(run(artifact, path, step_inputs))
        atol, rule = tolerance_for(is_float, tolerances, step_logits)
        expected[artifact["name"]] = {
            "file": artifact["file"],
            "sha256": sha256_file(path),
            "runtime": artifact["runtime"],
            "recipe": artifact["recipe"],
            "float": is_float,
            "atol": float(atol),
            "tolerance": rule,
            "logits": [[float(v) for v in row] for row in logits],
        }
    return {
        "format": SELFTEST_FORMAT,
        "version": 1,
        "about": "Golden inputs for the sample apps' self-tests: the apps' tokenizers must give these ids, and each "
        "artifact's logits must equal the host run of its runtime within atol (see toolkit/selftest.py).",
        "seq_len": config.seq_len,
        "sequence_lengths": lengths,
        "mask_input": config.mask_input,
        "examples": examples,
        "artifacts": expected,
    }


def write_selftest(bundle: Path, document: dict) -> dict:
    """Write ``BUNDLE/selftest.json`` atomically; returns the manifest's ``selftest`` entry (file, sha256, counts)."""
    path = atomic_write_json(Path(bundle) / SELFTEST_FILE, document)
    return {
        "file": SELFTEST_FILE,
        "sha256": sha256_file(path),
        "examples": len(document["examples"]),
        "artifacts": sorted(document["artifacts"]),
    }
