"""Probe: PT2E quantization-aware training of the exact ExecuTorch int8-static graph vs post-training, on a bench student.

The student's fixed-length program with the exporter's XNNPACK op variants (the graph ``int8-static`` lowers) is
exported, prepared with the XNNPACK quantizer (static, per channel; the exporter's min/max ranges for the
post-training q/dq graph, PT2E's QAT config for the trained one), calibrated on the exporters' 256 texts, then
trained (self-distillation to the fp32 logits, T = 2, AdamW, linear decay, 32 samples per step at the profile's
length, no dropout: the graph is exported in eval mode and kept there) on up to 16,000 training texts. Prints each
converted q/dq graph's argmax agreement with the fp32 student on the whole dev set, then lowers the trained graph to
``pt2e-qat-probe.pte`` beside the student folder and prints that program's agreement run by ExecuTorch.

    python bench/pt2e_qat_probe.py out/bench-distill/sst2-1k/0.1/today/student sst2-1k EPOCHS LR_SCALE
"""

from __future__ import annotations

import copy
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from distill import task_data  # noqa: E402

from toolkit.data import unlabelled  # noqa: E402
from toolkit.distill import kd_loss  # noqa: E402
from toolkit.export_pte import Prepared, _lower_and_write, _with_min_max_activations, run_pte  # noqa: E402
from toolkit.student import FixedLengthClassifier, calibration_inputs, encode_for, load_student  # noqa: E402
from toolkit.tokenizer import XLNetTextEncoder  # noqa: E402

BATCH = 1  # the XNNPACK op variants (the graph the exporter lowers) run one sample at a time
STEP = 32  # samples per optimiser step (gradients accumulated)
TRAIN_CAP = 16000


def batches(arrays: list[np.ndarray]):
    """Fixed batches of BATCH rows (the last one padded with copies of the last row)."""
    pad = (-len(arrays[0])) % BATCH
    arrays = [np.concatenate([a, np.repeat(a[-1:], pad, 0)]) for a in arrays]
    for start in range(0, len(arrays[0]), BATCH):
        yield tuple(torch.from_numpy(np.ascontiguousarray(a[start : start + BATCH])) for a in arrays)


def run(model, arrays: list[np.ndarray]) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(*batch) for batch in batches(arrays)])[: len(arrays[0])]


def calibrated(prepared, calibration: list[np.ndarray]):
    with torch.no_grad():
        for batch in batches(calibration):
            prepared(*batch)
    return prepared


def main() -> None:
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e, prepare_qat_pt2e

    folder, task, epochs, lr_scale = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    torch.manual_seed(0)
    _, train, dev, _ = task_data(task)
    student = load_student(folder).eval()
    encoder = XLNetTextEncoder.from_pretrained(folder)
    module = FixedLengthClassifier(student.with_op_variants(xnnpack=True)).eval()  # the graph the exporter lowers
    dev_inputs = encode_for(student, encoder, dev)
    reference = run(module, dev_inputs).argmax(1)

    def agreement(model) -> float:
        return float((run(model, dev_inputs).argmax(1) == reference).float().mean())

    calibration = calibration_inputs(student, encoder, train, 0)
    exported = torch.export.export(module, next(batches(calibration))).module()
    static = get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False)
    ptq = prepare_pt2e(copy.deepcopy(exported), XNNPACKQuantizer().set_global(_with_min_max_activations(static)))
    print(f"post-training q/dq graph (the exporter's recipe): {agreement(convert_pt2e(calibrated(ptq, calibration))):.4f}")

    qat_config = get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False, is_qat=True)
    qat = calibrated(prepare_qat_pt2e(copy.deepcopy(exported), XNNPACKQuantizer().set_global(qat_config)), calibration)
    print(f"QAT start (moving-average ranges): {agreement(convert_pt2e(copy.deepcopy(qat))):.4f}", flush=True)
    texts = list(train.texts)
    if len(texts) > TRAIN_CAP:
        texts = random.Random(0).sample(texts, TRAIN_CAP)
    train_inputs = encode_for(student, encoder, unlabelled(texts, train.label_names, "qat"))
    targets = run(module, train_inputs)
    optimizer = torch.optim.AdamW(qat.parameters(), lr=3e-4 * lr_scale, weight_decay=0.01)
    steps = epochs * (len(texts) // STEP)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.0, 1 - step / steps))
    started = time.time()
    for epoch in range(epochs):
        order = np.random.default_rng(epoch).permutation(len(texts))
        for start in range(0, len(order) - STEP + 1, STEP):
            optimizer.zero_grad()
            for i in order[start : start + STEP]:
                logits = qat(*(torch.from_numpy(np.ascontiguousarray(a[i : i + 1])) for a in train_inputs))
                loss = kd_loss(logits, targets[i : i + 1], logits.argmax(-1), temperature=2.0, kd_weight=1.0)
                (loss / STEP).backward()
            torch.nn.utils.clip_grad_norm_(qat.parameters(), 1.0)
            optimizer.step()
            schedule.step()
        converted = convert_pt2e(copy.deepcopy(qat))
        print(f"epoch {epoch + 1}: QAT q/dq graph {agreement(converted):.4f} ({time.time() - started:.0f} s)", flush=True)
    # The .pte: the trained graph converted and lowered as the exporter lowers its post-training one.
    example = tuple(torch.from_numpy(a[:1]) for a in calibration)
    program = torch.export.export(convert_pt2e(qat), example)
    path = Path(folder).parent / "pt2e-qat-probe.pte"  # beside the student folder (bench output, not shipped)
    _lower_and_write({"forward": Prepared(program, {})}, path)
    logits = run_pte(path, dev_inputs)
    print(f".pte (ExecuTorch runtime): {float((logits.argmax(1) == reference.numpy()).mean()):.4f}", flush=True)


if __name__ == "__main__":
    main()
