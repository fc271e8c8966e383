"""Distillation recipes against a strong teacher: today's recipe vs augmentation, transfer text, intermediate layers.

Tasks (``--tasks``; data from ../shared/data):
- ``subj``: SUBJ (8,000 train / 2,000 dev); the teacher is the toolkit's stand-in recipe (6 × 128, trained from
  random initialisation), which is strong on this task; transfer text: 8,000 SST-2 train phrases (movie text).
- ``sst2``: the full SST-2 train split (67,349 phrases; dev 872); transfer text: the 8,000 SUBJ train sentences.
- ``sst2-1k``: low-resource SST-2: 1,000 labelled phrases (seeded sample), the other 66,349 phrases as unlabelled
  transfer text. Extra rows "labels alone": the student on the 1,000 labels without a teacher (random init,
  cross-entropy only), the gap the full recipe should close half of; "labels alone (teacher init)": the same from the
  teacher's embeddings and layers (a stronger baseline: the teacher's weights without its answers).
  Its teacher: the demo teacher (the stand-in recipe on the bundled 20,000-phrase sample, dev 0.7764).
- The ``sst2`` teacher is the stronger one the issue asks for: the stand-in shape trained on all 67,349 phrases with
  ``SST2_TEACHER`` (lr 3e-4, batch 64; the demo recipe's lr 1e-3 on all phrases stalled near chance: 0.7076).

Students at about 1/4 and 1/10 of the teacher's parameters (``--sizes``; the arm64-cpu profile sizes them under that
cap, at sequence length 64). Rows (``--rows``): ``today`` (soft + hard labels on the labelled texts), ``+augment``
(``--augment`` variants per text), ``+transfer``, ``+layers`` (every-token hidden states + attention distributions of
mapped layers, weight 1 each), ``all``. Per run: teacher and fp32 student dev accuracy, the best int8 artifact of the
profile (ExecuTorch int8-dynamic-embedding, LiteRT dynamic-int8, each run on the host by its own runtime on the whole
dev set), retention (= best int8 / teacher), argmax agreement of the fp32 student and of that int8 artifact with the
teacher on dev, and wall time. Finished runs are kept in ``--out`` and not repeated; the table shows what is done.

    python bench/distill.py [--tasks subj sst2-1k sst2] [--sizes 0.25 0.1] [--rows today +augment ...] [--epochs 2] [--augment 2]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import SHARED_SST2, machine_line, write_section  # noqa: E402

from toolkit.data import LabelledData, load_labelled  # noqa: E402
from toolkit.distill import QAT_REFERENCE, DistillSettings, distill  # noqa: E402
from toolkit.files import PROJECT_ROOT, atomic_write_json  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "distill"  # one JSON per run: the table survives a clone
SHARED_SUBJ = PROJECT_ROOT.parent / "shared" / "data" / "subj"
ROWS = ("labels alone", "labels alone (teacher init)", "today", "+augment", "+transfer", "+layers", "all", "prune", "prune+lowrank", "qat", "prune+qat", "prune+lowrank+qat")
INT8_ARTIFACTS = ("pte-int8-dynamic-embedding", "tflite-dynamic-int8", "pte-int8-static", "tflite-full-int8")
FULL_INT8 = ("pte-int8-static", "tflite-full-int8")
SEQUENCE_LENGTH = 64
# The full-SST-2 teacher: the demo shape, a lower learning rate and a larger batch (the demo's lr 1e-3 stalls at
# chance on all 67,349 phrases).
SST2_TEACHER = {"learning_rate": 3e-4, "batch_size": 64, "warmup_ratio": 0.1}
# Every bench teacher trains 3 epochs, as the demo recipe did when the tables were measured (it now trains 2).
BENCH_TEACHER = {"epochs": 3}


def task_teacher(task: str) -> Path:
    """The teacher of a task: the stand-in recipe trained on SUBJ for ``subj``, on all of SST-2 (``SST2_TEACHER``)
    for ``sst2``, the demo teacher for ``sst2-1k``. Trained once, then cached."""
    from toolkit.teacher import TeacherRecipe, demo_teacher

    if task == "sst2-1k":
        return demo_teacher(recipe=TeacherRecipe(**BENCH_TEACHER), log=print)
    teacher_train, _, teacher_dev, _ = task_data(task)
    recipe = TeacherRecipe(**BENCH_TEACHER, **(SST2_TEACHER if task == "sst2" else {}))
    return demo_teacher(teacher_train, teacher_dev, recipe, log=print)


def dev_of(task: str) -> LabelledData:
    return task_data(task)[2]


def task_data(task: str) -> tuple[LabelledData, LabelledData, LabelledData, list[str]]:
    """(the teacher's training data, the labelled texts the student gets, dev, transfer text) of a task."""
    if task == "subj":
        train = load_labelled(SHARED_SUBJ / "train.tsv")
        dev = load_labelled(SHARED_SUBJ / "dev.tsv", label_names=train.label_names)
        sst2 = load_labelled(SHARED_SST2 / "train.tsv").texts
        return train, train, dev, random.Random(0).sample(sst2, 8000)
    sst2 = load_labelled(SHARED_SST2 / "train.tsv")
    dev = load_labelled(SHARED_SST2 / "dev.tsv", label_names=sst2.label_names)
    if task == "sst2":
        return sst2, sst2, dev, load_labelled(SHARED_SUBJ / "train.tsv").texts
    if task == "sst2-1k":
        picked = sorted(random.Random(0).sample(range(len(sst2)), 1000))
        rest = sorted(set(range(len(sst2))) - set(picked))
        return sst2, sst2.subset(picked), dev, [sst2.texts[i] for i in rest]
    raise SystemExit(f"unknown task {task}")


def row_settings(row: str, epochs: int, augment: int) -> tuple[DistillSettings, bool]:
    """The distillation settings of a row, and whether it takes the transfer text."""
    base = DistillSettings(epochs=epochs)
    return {
        "labels alone": (replace(base, kd_weight=0.0, route="scratch"), False),  # random init, no teacher at all
        # The same with the teacher's embeddings and layers as the init (no soft labels): a stronger baseline.
        "labels alone (teacher init)": (replace(base, kd_weight=0.0), False),
        "today": (base, False),
        "+augment": (replace(base, augment=augment), False),
        "+transfer": (base, True),
        "+layers": (replace(base, hidden_weight=1.0, attention_weight=1.0), False),
        "all": (replace(base, augment=augment, hidden_weight=1.0, attention_weight=1.0), True),
        # Issue 19's routes: the teacher's own layers pruned (and factorised) to the same budget, today's losses.
        "prune": (replace(base, route="prune"), False),
        "prune+lowrank": (replace(base, route="prune+lowrank"), False),
        # Today's student + one quantization-aware epoch reproducing it, for the full-integer int8 artifacts.
        "qat": (replace(base, qat_epochs=1), False),
        "prune+qat": (replace(base, route="prune", qat_epochs=1), False),
        "prune+lowrank+qat": (replace(base, route="prune+lowrank", qat_epochs=1), False),
    }[row]


def int8_figures(student_dir: Path, train: LabelledData, dev: LabelledData, teacher_labels, profile,
                 kept: dict | None = None) -> dict:
    """Each int8 artifact of the profile (dynamic and full-integer), run by its own runtime on the whole dev set and
    compared with the fp32 student as the pipeline's host check does: accuracy, agreement with the teacher and with
    the fp32 student, whether it passes the profile's tolerances, size; the ``record`` to run it again. ``kept``:
    figures measured before for artifacts not to export again."""
    import numpy as np

    from toolkit.checks import compare_logits, gate_against_student
    from toolkit.export_workers import export_artifact
    from toolkit.manifest import run_on_host
    from toolkit.pipeline import calibration_inputs, encode_for
    from toolkit.registry import get_recipe
    from toolkit.student import eager_logits, load_student
    from toolkit.tokenizer import XLNetTextEncoder

    student, encoder = load_student(student_dir), XLNetTextEncoder.from_pretrained(student_dir)
    inputs = encode_for(student, encoder, dev)
    reference = eager_logits(student, inputs)
    calibration = calibration_inputs(student, encoder, train, 0)
    out, labels = dict(kept or {}), np.asarray(dev.labels)
    # A quantization-aware student: also compared with the float student its QAT epochs started from (what they
    # were trained to reproduce), the student post-training int8 would have been made from.
    distilled_path = student_dir / QAT_REFERENCE
    distilled = torch.load(distilled_path, weights_only=True)["dev"].numpy() if distilled_path.is_file() else None
    for artifact in profile.artifacts:
        if artifact.name not in INT8_ARTIFACTS or artifact.name in out:
            continue
        path = student_dir.parent / "int8" / f"{artifact.name}.{artifact.format}"
        path.parent.mkdir(exist_ok=True)
        record = export_artifact(student, artifact, path, calibration, path.parent, profile.lengths).to_json()
        candidate = run_on_host(record, path, inputs)
        check = gate_against_student(compare_logits(artifact.name, reference, candidate, labels), profile.validation.tolerances,
                                     get_recipe(artifact.format, artifact.recipe).exact)  # fmt: skip
        out[artifact.name] = {"accuracy": check.accuracy,
                              "agreement": float((candidate.argmax(1) == teacher_labels).mean()),
                              "agreement_with_fp32": check.argmax_agreement, "passes_profile": check.passed,
                              "mb": round(path.stat().st_size / 1e6, 2), "record": record}  # fmt: skip
        if distilled is not None:
            out[artifact.name]["agreement_with_distilled"] = float((candidate.argmax(1) == distilled.argmax(1)).mean())
    return out


def emulated_ms(student_dir: Path, artifact: dict, dev: LabelledData, profile) -> float:
    """The estimated latency of one inference at the bench's sequence length on the profile's emulated core (qemu
    and the cycle model, as the pipeline's validation estimates it): a warm-up inference, then the profiled one."""
    from toolkit.cycles import latency_record
    from toolkit.emulate import estimate_cycles
    from toolkit.pipeline import encode_for
    from toolkit.student import load_student
    from toolkit.tokenizer import XLNetTextEncoder
    from toolkit.validate import emulated_run

    student, encoder = load_student(student_dir), XLNetTextEncoder.from_pretrained(student_dir)
    inputs = [a[:2] for a in encode_for(student, encoder, dev.subset([0, 1]))]
    path = student_dir.parent / "int8" / f"{artifact['record']['name']}.{artifact['record']['format']}"
    run = emulated_run(artifact["record"], path, inputs, profile, profile_cycles=True)
    return round(latency_record(estimate_cycles(run, profile.device), profile.device)["estimated_latency_ms"], 2)


# A QAT row is its base row's student plus the quantization-aware epoch: started from the base row's finished
# checkpoint when that run's folder is there (the same result as training it again, see tests/test_qat.py).
QAT_BASE = {"qat": "today", "prune+qat": "prune", "prune+lowrank+qat": "prune+lowrank"}


def seed_from_base_row(folder: Path, base: Path) -> None:
    from toolkit.distill import CHECKPOINT
    from toolkit.student import STUDENT_CONFIG, STUDENT_WEIGHTS

    if base == folder or not (base / "student" / CHECKPOINT).is_file() or (folder / "student" / CHECKPOINT).is_file():
        return
    (folder / "student").mkdir(parents=True, exist_ok=True)
    for name in (STUDENT_CONFIG, STUDENT_WEIGHTS, CHECKPOINT):  # the best student (QAT starts from it), then the rest
        target = folder / "student" / name
        shutil.copy2(base / "student" / name, target.with_suffix(".partial"))
        target.with_suffix(".partial").replace(target)


def run_one(task, size, row, args, teacher_dir, profile) -> dict:
    """One (task, size, row) distillation and its int8 figures, kept in out/... (a finished run is read back)."""
    from toolkit.teacher import load_teacher, predict_logits

    folder = run_folder(args.out, task, size, row)
    result_path = run_folder(RESULTS, task, size, row).with_suffix(".json")
    previous = json.loads(result_path.read_text()) if result_path.is_file() else None
    refresh = args.refresh_int8 and (folder / "student" / "distill_report.json").is_file()
    if previous and not refresh:
        if "emulated_ms" not in previous and (folder / "int8").is_dir() and args.emulate:
            best = previous["int8"][previous["best_int8"]]
            if "record" in best:
                previous["emulated_ms"] = emulated_ms(folder / "student", best, dev_of(task), profile)
                atomic_write_json(result_path, previous)
        return previous
    _, labelled, dev, transfer = task_data(task)
    settings, uses_transfer = row_settings(row, args.epochs, args.augment)
    started = time.time()
    if previous:  # --refresh-int8: the distilled student stays, its int8 artifacts are measured again
        report = json.loads((folder / "student" / "distill_report.json").read_text())
    else:
        seed_from_base_row(folder, run_folder(args.out, task, size, QAT_BASE.get(row, row)))
        report = distill(teacher_dir, labelled, dev, profile, folder / "student", settings, max_param_ratio=size,
                         resume=True, log=print, transfer=transfer if uses_transfer else None).report  # fmt: skip
    teacher, encoder = load_teacher(teacher_dir)
    teacher_labels = predict_logits(teacher, encoder, dev.texts, desc="teacher dev").argmax(1)
    kept = None
    if previous and args.refresh_artifacts:  # only these are exported and measured again
        kept = {name: figures for name, figures in previous["int8"].items() if name not in args.refresh_artifacts}
    int8 = int8_figures(folder / "student", labelled, dev, teacher_labels, profile, kept)
    best = max(int8, key=lambda name: int8[name]["accuracy"])
    result = {
        "task": task, "size": size, "row": row, "teacher_accuracy": report["teacher_dev_accuracy"],
        "student_accuracy": report["student_dev_accuracy"], "agreement": report["agreement"],
        "best_int8": best, "int8": int8, "int8_accuracy": int8[best]["accuracy"],
        "int8_agreement": int8[best]["agreement"],
        "retention": int8[best]["accuracy"] / report["teacher_dev_accuracy"],
        "parameter_ratio": report["parameter_ratio"], "shape": [report["shape"]["n_layer"], report["shape"]["d_model"]],
        "rank": report["shape"].get("linear_rank"), "predicted_ms": report["predicted"]["latency_ms_estimate"],
        "training_examples": report["training_examples"], "epochs_run": report["epochs_run"],
        "qat_agreement_with_float": report.get("agreement_with_float"),
        "distill_seconds": report["wall_seconds"],
        "wall_seconds": previous["wall_seconds"] if previous else round(time.time() - started, 1),
    }
    if previous and previous.get("best_int8") == best and "emulated_ms" in previous:
        result["emulated_ms"] = previous["emulated_ms"]  # the same artifact recipe as measured before
    elif args.emulate:
        result["emulated_ms"] = emulated_ms(folder / "student", int8[best], dev, profile)
    result_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(result_path, result)
    return result


def render(results: list[dict], args) -> str:
    goals = {0.25: 0.99, 0.1: 0.97}
    lines = [
        f"## Distillation recipes and routes: {', '.join(args.tasks)} (`bench/distill.py`)", "",
        f"Measured {time.strftime('%Y-%m-%d')} on {machine_line()} (2 cores, no GPU).",
        f"Command: `python bench/distill.py --tasks {' '.join(args.tasks)} --section {args.section} --epochs "
        f"{args.epochs} --augment {args.augment}` (each run's figures kept in `bench/results/distill/TASK/SIZE/ROW.json`, "
        "its models in `out/bench-distill/`; a rerun skips finished runs and renders them all).",
        "Teachers: the toolkit's stand-in shape (6 × 128, 5.4 M parameters, from random initialisation; no pretrained",
        "XLNet can be downloaded here): on subj trained on SUBJ; on sst2 trained on all 67,349 SST-2 phrases (lr 3e-4,",
        "batch 64); on sst2-1k the demo teacher (the bundled 20,000-phrase sample). Student sized by the arm64-cpu",
        "profile (sequence length 64, widths from 32) under the parameter cap; best int8 = the most accurate of",
        "ExecuTorch int8-dynamic-embedding and int8-static, LiteRT dynamic-int8 and full-int8, each run on the host",
        "by its own runtime on the whole dev set. Retention = int8 accuracy / teacher accuracy; agreement = share of",
        "dev texts with the teacher's argmax (fp32 student / int8 artifact). Predicted ms: the toolkit's cost model;",
        "emulated ms: the best int8 artifact on the profile's emulated Cortex-A76 (qemu instruction trace + cycle",
        "model, one inference at length 64, as the pipeline's validation estimates it). Wall s: the invocation that",
        "finished the run (a run resumed after an interruption counts only the resumed part: sst2 0.25 today's",
        "distillation ran in an earlier invocation that stopped at its int8 step).", "",
        "| task | size cap | student | recipe | examples (labelled + variants + transfer) | teacher acc | fp32 acc | "
        "best int8 acc | retention | agreement fp32 / int8 | int8 MB | predicted ms | emulated ms | wall s |",
        "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        e = r["training_examples"]
        goal = goals.get(r["size"])
        recipe = r["row"] + (f" (rank {r['rank']})" if r.get("rank") else "")
        mark = "" if goal is None or r["task"] == "sst2-1k" else (" ✓" if r["retention"] >= goal else " ✗")
        emulated = f"{r['emulated_ms']:.2f}" if "emulated_ms" in r else "—"
        lines.append(
            f"| {r['task']} | {r['size']:g} ({r['parameter_ratio']:.1%}) | {r['shape'][0]} × d{r['shape'][1]} | "
            f"{recipe} | {e['labelled']:,} + {e['augmented']:,} + {e['transfer']:,} | {r['teacher_accuracy']:.4f} | "
            f"{r['student_accuracy']:.4f} | {r['int8_accuracy']:.4f} | {r['retention']:.1%}{mark} | "
            f"{r['agreement']:.3f} / {r['int8_agreement']:.3f} | {r['int8'][r['best_int8']]['mb']:.2f} | "
            f"{r['predicted_ms']:.2f} | {emulated} | {r['wall_seconds']:.0f} |"
        )
    full = [r for r in results if all(a in r["int8"] for a in FULL_INT8)]
    if full:
        lines += ["", "Full-integer int8 (static activation ranges calibrated on 256 training texts) against the fp32 "
                  "student it was made from: post-training (rows without QAT) vs the same student trained one more "
                  "epoch quantization-aware to reproduce its float self (`qat`, `prune+qat`; cells: acc / agreement "
                  "with that float student before QAT, the student post-training int8 is made from / with the QAT "
                  "student's own float weights). QAT sim: the fake-quantized student's dev agreement with the float "
                  "student. Issue 19's goal: QAT brings agreement to ≥ 99.5 % where PTQ is below it. LiteRT "
                  "full-int8 figures are those of the recipe with the attention's constant BATCH_MATMUL operands "
                  "per tensor (README, \"Export\"; before that fix the sst2 1/4 student's full-int8 agreed on "
                  "98.62 %).", "",
                  "| task | size cap | recipe | pte int8-static | tflite full-int8 | QAT sim | fp32 acc |",
                  "|---|---|---|---:|---:|---:|---:|"]  # fmt: skip
        for r in full:
            cells = []
            for a in FULL_INT8:
                figures = r["int8"][a]
                distilled = f"{figures['agreement_with_distilled']:.3f} / " if "agreement_with_distilled" in figures else ""
                cells.append(f"{figures['accuracy']:.4f} / {distilled}{figures['agreement_with_fp32']:.3f}")
            sim = f"{r['qat_agreement_with_float']:.3f}" if r.get("qat_agreement_with_float") is not None else "—"
            lines.append(f"| {r['task']} | {r['size']:g} | {r['row']} | {cells[0]} | {cells[1]} | {sim} | "
                         f"{r['student_accuracy']:.4f} |")  # fmt: skip
    lines += ["", "Goals (issue 16): int8 retention ≥ 99 % at 1/4 and ≥ 97 % at 1/10 (✓/✗ above), agreement ≥ 95 %; "
              "on sst2-1k the full recipe closes ≥ half the gap between \"labels alone\" and the teacher."]  # fmt: skip
    for task in sorted({r["task"] for r in results if r["task"] == "sst2-1k"}):
        for size in args.sizes:
            by_row = {r["row"]: r for r in results if r["task"] == task and r["size"] == size}
            for baseline in ("labels alone", "labels alone (teacher init)"):
                if baseline not in by_row or "all" not in by_row:
                    continue
                alone, full = by_row[baseline]["int8_accuracy"], by_row["all"]["int8_accuracy"]
                teacher = by_row["all"]["teacher_accuracy"]
                closed = (full - alone) / max(1e-9, teacher - alone)
                lines.append(f"- {task} at {size:g}: {baseline} {alone:.4f}, all {full:.4f}, teacher {teacher:.4f}: "
                             f"**{closed:.0%} of the gap closed** (goal ≥ 50 %).")  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["subj", "sst2-1k", "sst2"])
    parser.add_argument("--sizes", nargs="+", type=float, default=[0.25, 0.1])
    parser.add_argument("--rows", nargs="+", default=list(ROWS))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--augment", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("out/bench-distill"))
    parser.add_argument("--section", default="distill", help="the BENCHMARKS.md section the table goes to")
    parser.add_argument("--emulate", action=argparse.BooleanOptionalAction, default=True,
                        help="estimate each run's best int8 artifact's latency on the profile's emulated core")
    parser.add_argument("--render-only", action="store_true", help="write the table of the finished runs only")
    parser.add_argument("--refresh-int8", action="store_true",
                        help="finished runs whose student is still in --out: export and measure their int8 artifacts "
                        "again (the distilled student is kept), e.g. after an exporter change")  # fmt: skip
    parser.add_argument("--refresh-artifacts", nargs="+", choices=INT8_ARTIFACTS,
                        help="with --refresh-int8: only these artifacts (the others keep their figures)")
    args = parser.parse_args()

    from toolkit.profiles import load_profile

    base = load_profile("arm64-cpu")
    # Sequence length 64 (the teachers' own); widths down to 32, so a 1/10 student still fits beside its vocabulary.
    static = [type(base.artifacts[0])(format="pte", recipe="int8-static", runtime="executorch", delegate="xnnpack"),
              type(base.artifacts[0])(format="tflite", recipe="full-int8", runtime="ai-edge-litert", delegate="xnnpack")]
    profile = base.model_copy(update={"sequence_length": SEQUENCE_LENGTH, "sequence_lengths": [SEQUENCE_LENGTH],
                                      "student": base.student.model_copy(update={"min_d_model": 32}),
                                      "artifacts": list(base.artifacts) + static})  # fmt: skip
    if not args.render_only:
        for task in args.tasks:
            for size in args.sizes:
                for row in args.rows:
                    if row.startswith("labels alone") and task != "sst2-1k":
                        continue
                    teacher_dir = task_teacher(task)
                    print(f"== {task} size {size:g} {row}", flush=True)
                    run_one(task, size, row, args, teacher_dir, profile)
                    write_section(args.section, render(finished(args.tasks), args))
    text = render(finished(args.tasks), args)
    write_section(args.section, text)
    print(text)


def run_folder(out: Path, task: str, size: float, row: str) -> Path:
    return out / task / f"{size:g}" / row.replace(" ", "-").replace("+", "plus-")


def finished(tasks: list[str]) -> list[dict]:
    """Every finished run of ``tasks`` (kept in ``RESULTS``), in table order (task, size, row), whichever invocation
    measured it."""
    results = []
    for path in sorted(p for task in tasks for p in (RESULTS / task).glob("*/*.json")):
        result = json.loads(path.read_text())
        results.append(result)
    tasks = ["subj", "sst2", "sst2-1k"]
    return sorted(results, key=lambda r: (tasks.index(r["task"]), -r["size"], ROWS.index(r["row"])))


if __name__ == "__main__":
    main()
