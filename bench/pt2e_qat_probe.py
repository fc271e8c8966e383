"""Probe: PT2E quantization-aware training of the exact ExecuTorch int8-static graph vs post-training, on a bench student.

The student's fixed-length program with the exporter's XNNPACK op variants (the graph ``int8-static`` lowers) is
exported, prepared with the XNNPACK quantizer (static, per channel; the exporter's min/max ranges for the
post-training q/dq graph, PT2E's QAT config for the trained one), calibrated on the exporters' 256 texts, then
trained (self-distillation to the fp32 logits, T = 2, AdamW, linear decay, 32 samples per step at the profile's
length, no dropout: the graph is exported in eval mode and kept there) on up to 16,000 training texts. Prints each
converted q/dq graph's argmax agreement with the fp32 student on the whole dev set, then lowers the trained graph to
``pt2e-qat-probe.pte`` beside the student folder and prints that program's agreement run by ExecuTorch.

    python bench/pt2e_qat_probe.py out/bench-distill/sst2-1k/0.1/today/student sst2-1k EPOCHS LR_SCALE [RANGES] [NORMS] [GRAPH]

RANGES ``moving`` (default): PT2E's QAT config, activation ranges a moving average updated while training.
``minmax``: the fake-quantizers start from the exporter's post-training ranges (min/max over the same calibration
texts, observed in float) and the activation ranges stay frozen while the weights train (weight ranges follow the
weights, per channel, as the exporter's would). ``grouped``: PT2E's moving averages, but of each range over STEP
consecutive samples (what a batch of STEP gives; the exact graph runs one sample at a time, and moving averages of
single sentences' ranges clip more). ``histogram``: as ``minmax`` (calibrated in float, then frozen) with the XNNPACK
quantizer's default histogram observer for the activation ranges.

NORMS ``int8`` (default): the exporter's recipe, every add and mul quantized, the LayerNorms' own (the
``MeanPoolLayerNorm`` the XNNPACK variants use) included. ``float``: the LayerNorms' ops are left in float (still
XNNPACK ops; only their inputs and outputs are quantized), for PTQ and QAT alike.

GRAPH ``xnnpack`` (default): the graph the exporter lowers. ``plain``: the student without the XNNPACK op variants
(native LayerNorm, which the quantizer leaves in float, and 4-D attention matmuls), to compare with; its ``.pte``
runs the LayerNorms outside the delegate.
"""

from __future__ import annotations

import copy
import os
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
from toolkit.student import FixedLengthClassifier, MeanPoolLayerNorm, calibration_inputs, encode_for, load_student  # noqa: E402
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


def frozen_range_qat_config(static):
    """The exporter's static config as fake-quantizers: min/max observers (activations per tensor, weights per channel)."""
    import dataclasses

    from torchao.quantization.pt2e.fake_quantize import FakeQuantize
    from torchao.quantization.pt2e.observer import MinMaxObserver, PerChannelMinMaxObserver

    activation = dataclasses.replace(
        static.input_activation, observer_or_fake_quant_ctr=FakeQuantize.with_args(observer=MinMaxObserver, eps=2**-12)
    )
    weight = dataclasses.replace(
        static.weight, observer_or_fake_quant_ctr=FakeQuantize.with_args(observer=PerChannelMinMaxObserver, eps=2**-12)
    )
    return dataclasses.replace(static, input_activation=activation, output_activation=activation, weight=weight,
                               is_qat=True)


def grouped_config(qat_config):
    """PT2E's QAT config with activation ranges averaged over groups of STEP samples (see the docstring)."""
    import dataclasses

    from torchao.quantization.pt2e.fake_quantize import FakeQuantize
    from torchao.quantization.pt2e.observer import MovingAverageMinMaxObserver

    class GroupedMovingAverage(MovingAverageMinMaxObserver):
        """The first sample sets the range; then every STEP samples move it toward that group's min/max."""

        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.seen = 0
            self.group_min, self.group_max = float("inf"), float("-inf")

        def forward(self, x_orig):
            x = x_orig.detach().to(self.min_val.dtype)
            if self.seen == 0:
                return super().forward(x_orig)  # sets min/max
            low, high = torch.aminmax(x)
            self.group_min, self.group_max = min(self.group_min, float(low)), max(self.group_max, float(high))
            self.seen += 1
            if self.seen % STEP == 0:
                self.min_val.add_(self.averaging_constant * (self.group_min - self.min_val))
                self.max_val.add_(self.averaging_constant * (self.group_max - self.max_val))
                self.group_min, self.group_max = float("inf"), float("-inf")
            return x_orig

        def reset_min_max_vals(self):
            super().reset_min_max_vals()
            self.seen = 0

    original = GroupedMovingAverage.forward

    def forward(self, x_orig):  # count the first sample too
        out = original(self, x_orig)
        if self.seen == 0:
            self.seen = 1
        return out

    GroupedMovingAverage.forward = forward
    activation = dataclasses.replace(qat_config.input_activation, observer_or_fake_quant_ctr=FakeQuantize.with_args(
        observer=GroupedMovingAverage, eps=2**-12))
    return dataclasses.replace(qat_config, input_activation=activation, output_activation=activation)


def histogram_ranges(qat, observed):
    """``qat``'s activation fake-quantizers take the ranges of ``observed`` (the same graph prepared post-training
    with histogram observers and calibrated; a histogram inside a fake-quantizer would refit at every call), frozen:
    the toolkit's own swap (``int8-static-qat`` uses it)."""
    from toolkit.pt2e_qat import _use_ranges

    _use_ranges(qat, observed)
    return qat


def calibrated_frozen(prepared, calibration: list[np.ndarray]):
    """Observe float activations (fake-quant off) like the post-training recipe, then freeze activation ranges."""
    from torchao.quantization.pt2e.fake_quantize import FakeQuantize
    from torchao.quantization.pt2e.observer import PerChannelMinMaxObserver

    quantizers = [m for m in prepared.modules() if isinstance(m, FakeQuantize)]
    for quantizer in quantizers:
        quantizer.disable_fake_quant()
    calibrated(prepared, calibration)
    for quantizer in quantizers:
        quantizer.enable_fake_quant()
        if not isinstance(quantizer.activation_post_process, PerChannelMinMaxObserver):
            quantizer.disable_observer()  # activation ranges: the exporter's, fixed
    return prepared


def main() -> None:
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e, prepare_qat_pt2e

    folder, task, epochs, lr_scale = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    ranges = sys.argv[5] if len(sys.argv) > 5 else "moving"
    norms = sys.argv[6] if len(sys.argv) > 6 else "int8"
    graph = sys.argv[7] if len(sys.argv) > 7 else "xnnpack"

    def quantizer_for(config):
        quantizer = XNNPACKQuantizer().set_global(config)
        return quantizer.set_module_type(MeanPoolLayerNorm, None) if norms == "float" else quantizer

    torch.manual_seed(0)
    _, train, dev, _ = task_data(task)
    student = load_student(folder).eval()
    encoder = XLNetTextEncoder.from_pretrained(folder)
    variants = student.with_op_variants(xnnpack=graph == "xnnpack")  # xnnpack: the graph the exporter lowers
    module = FixedLengthClassifier(variants).eval()
    dev_inputs = encode_for(student, encoder, dev)
    reference = run(module, dev_inputs).argmax(1)

    def agreement(model) -> float:
        return float((run(model, dev_inputs).argmax(1) == reference).float().mean())

    calibration = calibration_inputs(student, encoder, train, 0)
    exported = torch.export.export(module, next(batches(calibration))).module()
    static = get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False)
    ptq = prepare_pt2e(copy.deepcopy(exported), quantizer_for(_with_min_max_activations(static)))
    print(f"post-training q/dq graph (the exporter's recipe): {agreement(convert_pt2e(calibrated(ptq, calibration))):.4f}")

    if ranges == "minmax":
        quantizer = quantizer_for(frozen_range_qat_config(static))
        qat = calibrated_frozen(prepare_qat_pt2e(copy.deepcopy(exported), quantizer), calibration)
    elif ranges == "histogram":
        qat = calibrated_frozen(  # min/max first (weights observed), then the histogram's activation ranges
            prepare_qat_pt2e(copy.deepcopy(exported), quantizer_for(frozen_range_qat_config(static))), calibration
        )
        qat = histogram_ranges(qat, calibrated(prepare_pt2e(copy.deepcopy(exported), quantizer_for(static)), calibration))
    else:
        qat_config = get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False, is_qat=True)
        if ranges == "grouped":
            qat_config = grouped_config(qat_config)
        qat = calibrated(prepare_qat_pt2e(copy.deepcopy(exported), quantizer_for(qat_config)), calibration)
    print(f"QAT start ({ranges} ranges): {agreement(convert_pt2e(copy.deepcopy(qat))):.4f}", flush=True)
    if os.environ.get("PROBE_TRAIN") == "calibration":  # train on the 256 calibration texts only (what an exporter has)
        train_inputs = calibration
        texts = list(range(len(calibration[0])))
    else:
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
