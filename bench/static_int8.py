"""Static (full-integer) int8 vs the fp32 student on the whole SST-2 dev set, for distilled students.

For each student folder: the tflite dynamic-int8 and full-int8 models and the pte int8-static program, calibrated
as the pipeline calibrates them (256 seeded training samples, full observed activation ranges), run on all dev
sentences with the host runtimes; accuracy, its change vs the fp32 student, argmax agreement, max |logit diff|.
Writes the "static-int8" section of BENCHMARKS.md.

    python bench/static_int8.py out/arm64-cpu/work/student out/android-nnapi/work/student
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import machine_line, write_section  # noqa: E402
from toolkit.export_pte import export_pte, run_pte  # noqa: E402
from toolkit.export_tflite import convert_fp32, quantize, run_tflite  # noqa: E402
from toolkit.files import atomic_write_bytes  # noqa: E402
from toolkit.pipeline import CALIBRATION_SAMPLES, calibration_inputs, default_data, encode_for  # noqa: E402
from toolkit.profiles import Artifact  # noqa: E402
from toolkit.student import eager_logits, load_student  # noqa: E402
from toolkit.tokenizer import XLNetTextEncoder  # noqa: E402


def measure(student_dir: Path, folder: Path) -> list[str]:
    student = load_student(student_dir)
    encoder = XLNetTextEncoder.from_pretrained(student_dir)
    train, dev = default_data()
    inputs, labels = encode_for(student, encoder, dev), np.asarray(dev.labels)
    reference = eager_logits(student, inputs)
    calibration = calibration_inputs(student, encoder, train, seed=0)
    nnapi = student.config.mask_input == "additive_bias"  # the NNAPI student is exported with its NNAPI lowering
    float_model = convert_fp32(student, nnapi=nnapi)
    results = []
    for recipe in ("dynamic-int8", "full-int8"):
        path = atomic_write_bytes(folder / f"{recipe}.tflite", quantize(float_model, recipe, calibration))
        results.append((f".tflite {recipe}", run_tflite(path, inputs)))
    static = Artifact(format="pte", recipe="int8-static", runtime="executorch", delegate="xnnpack")
    export_pte(student, static, folder / "int8-static.pte", calibration, bundle_dir=folder)
    results.append((".pte int8-static", run_pte(folder / "int8-static.pte", inputs)))

    fp32_accuracy = (reference.argmax(1) == labels).mean()
    config = student.config
    name = f"{student_dir} ({config.n_layer} × d{config.d_model}, {config.activation}, {config.normalisation})"
    lines = [f"| {name} | fp32 eager | {fp32_accuracy:.4f} | | | |"]
    for label, logits in results:
        accuracy = (logits.argmax(1) == labels).mean()
        lines.append(
            f"| | {label} | {accuracy:.4f} | {(accuracy - fp32_accuracy) * 100:+.2f} | "
            f"{(logits.argmax(1) == reference.argmax(1)).mean():.4f} | {np.abs(logits - reference).max():.3f} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("students", type=Path, nargs="+", help="distilled student folders (OUT/<profile>/work/student)")
    args = parser.parse_args()
    rows = ["| student | program | dev accuracy | Δ pts vs fp32 | argmax agreement | max abs logit diff |",
            "|---|---|---:|---:|---:|---:|"]
    with tempfile.TemporaryDirectory() as tmp:
        for student_dir in args.students:
            rows += measure(student_dir, Path(tmp))
    text = "\n".join([
        "## Static int8 vs fp32 on the whole SST-2 dev set (872 sentences)",
        "",
        f"{machine_line()}",
        f"Calibration: {CALIBRATION_SAMPLES} seeded training samples, full observed ranges (see README, Export).",
        "",
        *rows,
        "",
        f"Reproduce: `python bench/static_int8.py {' '.join(str(s) for s in args.students)}`",
    ])
    print(text)
    write_section("static-int8", text)


if __name__ == "__main__":
    main()
