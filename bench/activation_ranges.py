"""Which activation ranges make ExecuTorch int8-static agree with fp32: the range rule, measured on bench students.

For each student: the exact graph the exporter lowers for ``int8-static`` (XNNPACK op variants, batch 1, weights
per channel), calibrated on the exporters' 256 texts with one activation range rule at a time, converted to its
quantize/dequantize graph and run on the whole dev set; argmax agreement with the fp32 student. (The lowered ``.pte``
agrees with its q/dq graph: bench/pt2e_qat_probe.py prints both.)

Rules (per tensor):
* ``min/max``: the full range seen over all calibration texts (the exporter today);
* ``mean``: the mean over calibration texts of each text's own min and max;
* ``median``: the median of each text's own min and max;
* ``histogram``: the XNNPACK quantizer's default observer (fits the range to minimise rounding + clipping error);
* ``histogram, float norms``: histogram with the LayerNorms' inner ops left in float (``int8-static-qat``'s
  quantizer, before its training).

    python bench/activation_ranges.py sst2-1k:out/bench-distill/sst2-1k/0.1/today/student ...
Writes bench/results/activation_ranges.json and the "activation-ranges" section of BENCHMARKS.md.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine_line, write_section  # noqa: E402
from distill import task_data  # noqa: E402

from toolkit.export_pte import _sample  # noqa: E402
from toolkit.student import FixedLengthClassifier, calibration_inputs, encode_for, load_student  # noqa: E402
from toolkit.tokenizer import XLNetTextEncoder  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "activation_ranges.json"


def per_text_observer(statistic: str):
    """An observer whose range is ``statistic`` (mean / median) over calls (one text each) of each call's min/max."""
    from torchao.quantization.pt2e.observer import MinMaxObserver

    reduce = {"mean": np.mean, "median": np.median}[statistic]

    class PerTextRange(MinMaxObserver):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.lows: list[float] = []
            self.highs: list[float] = []

        def forward(self, x_orig):
            low, high = torch.aminmax(x_orig.detach().to(self.min_val.dtype))
            self.lows.append(float(low))
            self.highs.append(float(high))
            self.min_val.fill_(float(reduce(self.lows)))
            self.max_val.fill_(float(reduce(self.highs)))
            return x_orig

    return PerTextRange


def quantizer(rule: str):
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.observer import MinMaxObserver

    config = get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False)  # histogram activations
    if rule == "histogram, float norms":
        from toolkit.export_pte import _float_norm_quantizer

        return _float_norm_quantizer(config)
    if rule != "histogram":
        observer = MinMaxObserver if rule == "min/max" else per_text_observer(rule)
        spec = dataclasses.replace(config.input_activation, observer_or_fake_quant_ctr=observer.with_args(eps=2**-12))
        config = dataclasses.replace(config, input_activation=spec, output_activation=spec)
    return XNNPACKQuantizer().set_global(config)


def rows(arrays: list[np.ndarray]):
    """Batch-1 tensors, one per row (the exporter's own ``_sample``)."""
    return (_sample(arrays, i) for i in range(len(arrays[0])))


def measure(task: str, folder: str, rules: list[str], known: dict | None = None) -> dict:
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    _, train, dev, _ = task_data(task)
    student = load_student(folder).eval()
    encoder = XLNetTextEncoder.from_pretrained(folder)
    module = FixedLengthClassifier(student.with_op_variants(xnnpack=True)).eval()
    dev_inputs = encode_for(student, encoder, dev)
    calibration = calibration_inputs(student, encoder, train, 0)
    with torch.no_grad():
        reference = torch.cat([module(*row) for row in rows(dev_inputs)]).argmax(1)
    exported = torch.export.export(module, next(rows(calibration))).module()
    result = {"task": task, "student": folder, **(known or {})}
    for rule in [r for r in rules if r not in result]:  # rules measured before are kept
        started = time.time()
        prepared = prepare_pt2e(copy.deepcopy(exported), quantizer(rule))
        with torch.no_grad():
            for row in rows(calibration):
                prepared(*row)
            converted = convert_pt2e(prepared)
            predicted = torch.cat([converted(*row) for row in rows(dev_inputs)]).argmax(1)
        result[rule] = round(float((predicted == reference).float().mean()), 4)
        print(f"{task} {folder}: {rule} {result[rule]:.4f} ({time.time() - started:.0f} s)", flush=True)
    return result


RULES = ["min/max", "mean", "median", "histogram", "histogram, float norms"]


def section(results: list[dict]) -> str:
    lines = [
        "## Activation ranges for ExecuTorch int8-static (`bench/activation_ranges.py`)",
        "",
        "The exact graph the exporter lowers for `int8-static` (XNNPACK op variants, batch 1, weights per channel), "
        "calibrated on the exporters' 256 training texts with one activation range rule at a time, run as its "
        "quantize/dequantize graph on all dev sentences: argmax agreement with the fp32 student. min/max = the full "
        "range over the calibration texts (the exporter today); mean / median = of each text's own min and max; "
        "histogram = the XNNPACK quantizer's default observer (range fitted to minimise rounding plus clipping error); "
        "histogram, float norms = histogram with the LayerNorms' inner ops in float (`int8-static-qat`'s quantizer, "
        "before its training).",
        "",
        f"Measured on {machine_line()}. Reproduce: `python bench/activation_ranges.py TASK:STUDENT ...` (the students "
        "of `python bench/distill.py`).",
        "",
        "| task | student | " + " | ".join(RULES) + " |",
        "|---|---|" + "---:|" * len(RULES),
    ]
    for result in results:
        name = "/".join(Path(result["student"]).parts[-3:-1])
        cells = " | ".join(f"{result[rule]:.4f}" for rule in RULES)
        lines.append(f"| {result['task']} | {name} | {cells} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    rules = RULES
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else []
    for argument in sys.argv[1:]:
        task, folder = argument.split(":", 1)
        known = next((r for r in results if r["student"] == folder), None)
        results = [r for r in results if r["student"] != folder] + [measure(task, folder, rules, known)]
        RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    write_section("activation-ranges", section(results))


if __name__ == "__main__":
    main()
