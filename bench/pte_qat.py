"""ExecuTorch ``int8-static`` vs ``int8-static-qat`` on bench students: the real exports, run by ExecuTorch on all dev.

For each student: both recipes exported by the toolkit's exporter at the student's length (calibrated on the 256
texts the pipeline draws, seed 0), each ``.pte`` run on the whole dev set by the ExecuTorch runtime; argmax agreement
with the fp32 eager student, accuracy, file size and export wall time.

    python bench/pte_qat.py sst2-1k:out/bench-distill/sst2-1k/0.1/today/student ...
Writes bench/results/pte_qat.json and the "pte-qat" section of BENCHMARKS.md.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine_line, write_section  # noqa: E402
from distill import task_data  # noqa: E402

from toolkit.export_pte import export_pte, run_pte  # noqa: E402
from toolkit.profiles import Artifact  # noqa: E402
from toolkit.student import calibration_inputs, eager_logits, encode_for, load_student  # noqa: E402
from toolkit.tokenizer import XLNetTextEncoder  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "pte_qat.json"
RECIPES = ("int8-static", "int8-static-qat")


def measure(task: str, folder: str) -> dict:
    _, train, dev, _ = task_data(task)
    student = load_student(folder).eval()
    encoder = XLNetTextEncoder.from_pretrained(folder)
    inputs, labels = encode_for(student, encoder, dev), np.asarray(dev.labels)
    reference = eager_logits(student, inputs).argmax(1)
    calibration = calibration_inputs(student, encoder, train, 0)
    result = {"task": task, "student": folder, "fp32_accuracy": round(float((reference == labels).mean()), 4)}
    with tempfile.TemporaryDirectory() as scratch:
        for recipe in RECIPES:
            path = Path(scratch) / f"{recipe}.pte"
            started = time.time()
            export_pte(student, Artifact(format="pte", recipe=recipe, runtime="executorch", delegate="xnnpack"), path,
                       calibration=calibration)  # fmt: skip
            seconds = time.time() - started
            predicted = run_pte(path, inputs).argmax(1)
            result[recipe] = {
                "agreement": round(float((predicted == reference).mean()), 4),
                "accuracy": round(float((predicted == labels).mean()), 4),
                "mb": round(path.stat().st_size / 1e6, 2),
                "export_s": round(seconds),
            }
            print(task, folder, recipe, result[recipe], flush=True)
    return result


def section(results: list[dict]) -> str:
    lines = [
        "## ExecuTorch int8-static vs int8-static-qat (`bench/pte_qat.py`)",
        "",
        "Both recipes exported by the toolkit's exporter at the student's length, calibrated on the 256 training texts "
        "the pipeline draws (seed 0); each `.pte` run by the ExecuTorch runtime on all dev sentences. `int8-static`: "
        "min/max activation ranges, post-training. `int8-static-qat`: the exact graph trained quantization-aware on "
        "those 256 texts (PT2E QAT, histogram ranges frozen, 3 epochs, self-distillation), then quantized with the "
        "histogram ranges (toolkit/pt2e_qat.py).",
        "",
        f"Measured on {machine_line()}. Reproduce: `python bench/pte_qat.py TASK:STUDENT ...` (the students of "
        "`python bench/distill.py`).",
        "",
        "| task | student | fp32 acc | int8-static agreement | int8-static-qat agreement | int8-static acc | "
        "int8-static-qat acc | MB | export s (static / qat) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        name = "/".join(Path(r["student"]).parts[-3:-1])
        static, qat = r["int8-static"], r["int8-static-qat"]
        lines.append(f"| {r['task']} | {name} | {r['fp32_accuracy']:.4f} | {static['agreement']:.4f} | "
                     f"{qat['agreement']:.4f} | {static['accuracy']:.4f} | {qat['accuracy']:.4f} | {qat['mb']} | "
                     f"{static['export_s']} / {qat['export_s']} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else []
    for argument in sys.argv[1:]:
        task, folder = argument.split(":", 1)
        results = [r for r in results if r["student"] != folder] + [measure(task, folder)]
        RESULTS.write_text(json.dumps(results, indent=1) + "\n")
        write_section("pte-qat", section(results))


if __name__ == "__main__":
    main()
