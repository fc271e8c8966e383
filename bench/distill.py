"""Distillation benchmark (issue: fp32 student keeps >= 97% of the teacher's dev accuracy with <= 1/4 parameters).

Distils the demo teacher (or ``--teacher``) on the FULL GLUE SST-2 train split from ../shared (67,349 phrases) for
a profile, evaluates on the 872-sentence dev split, and writes the figures (accuracy, parameters, bytes, also
against an xlnet-base-shaped teacher; trimmed vocabulary; wall time) to the ``distill`` section of BENCHMARKS.md.

    python bench/distill.py [--target arm64-cpu] [--epochs 4] [--train PATH --dev PATH] [--teacher DIR]
    python bench/distill.py --report out/bench-distill/arm64-cpu/distill_report.json --measured-on "..."

``--report`` renders the section from a finished run's distill_report.json (e.g. one run on a GPU machine).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import SHARED_SST2, machine_line, write_section  # noqa: E402

from toolkit.data import load_labelled  # noqa: E402
from toolkit.distill import DistillSettings, distill  # noqa: E402
from toolkit.pipeline import XLNET_BASE, xlnet_parameters  # noqa: E402
from toolkit.profiles import load_profile  # noqa: E402
from toolkit.teacher import demo_teacher  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", default="arm64-cpu")
    parser.add_argument("--teacher", type=Path, default=None)
    parser.add_argument("--train", type=Path, default=SHARED_SST2 / "train.tsv")
    parser.add_argument("--dev", type=Path, default=SHARED_SST2 / "dev.tsv")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--out", type=Path, default=Path("out/bench-distill"))
    parser.add_argument("--report", type=Path, help="render from this distill_report.json instead of distilling")
    parser.add_argument("--measured-on", default=None, help="where --report was measured")
    args = parser.parse_args()

    started = time.time()
    train = load_labelled(args.train)
    dev = load_labelled(args.dev, label_names=train.label_names)
    if args.report:
        r = json.loads(args.report.read_text())
    else:
        profile = load_profile(args.target)
        teacher = args.teacher or demo_teacher()
        settings = DistillSettings(epochs=args.epochs)
        r = distill(teacher, train, dev, profile, args.out / profile.name, settings, resume=True).report
    base = xlnet_parameters(**XLNET_BASE)
    teacher_shape = r.get("teacher_shape") or json.loads((demo_teacher() / "config.json").read_text())
    shape = r["shape"]
    text = f"""## Distillation (SST-2, full train split)

Measured {time.strftime('%Y-%m-%d')} on {args.measured_on or machine_line()}.
Command: `python bench/distill.py --target {args.target} --epochs {args.epochs}` (train {len(train):,} phrases,
dev {len(dev)} sentences; teacher: {'demo teacher' if args.teacher is None else args.teacher}).

| model | layers × width | vocab | parameters | fp32 bytes | SST-2 dev accuracy |
|---|---|---|---|---|---|
| xlnet-base-shaped teacher (reference size) | 12 × 768 | 32,000 | {base:,} | {4 * base / 1e6:.1f} MB | (≈ 94.4% when pretrained; not available offline) |
| demo teacher | {teacher_shape['n_layer']} × {teacher_shape['d_model']} | 32,000 | {r['teacher_parameters']:,} | {r['teacher_bytes_fp32'] / 1e6:.1f} MB | {r['teacher_dev_accuracy']:.4f} |
| fp32 student | {shape['n_layer']} × {shape['d_model']} | {r['vocab']['student']:,} | {r['student_parameters']:,} | {r['student_bytes_fp32'] / 1e6:.1f} MB | {r['student_dev_accuracy']:.4f} |

- Accuracy retention: **{r['retention']:.1%}** of the teacher (goal ≥ 97%).
- Student parameters: **{r['parameter_ratio']:.1%}** of the demo teacher (goal ≤ 25%), {r['student_parameters'] / base:.2%} of
  xlnet-base; fp32 bytes {r['student_bytes_fp32'] / (4 * base):.2%} of an xlnet-base fp32 checkpoint.
- Vocabulary trimming: {r['vocab']['teacher']:,} → {r['vocab']['student']:,} tokens (embedding
  {r['vocab']['teacher'] * shape['d_model']:,} → {r['vocab']['student'] * shape['d_model']:,} parameters at width
  {shape['d_model']}); the kept tokens cover {r['vocab']['train_token_coverage']:.2%} of train and
  {r['vocab']['dev_token_coverage']:.2%} of dev tokens (the trimmed tokenizer re-segments the rest with kept pieces).
- Initialisation: {r['init']['scheme']} (teacher layers {r['init']['teacher_layers'] or 'none: narrower student'}).
- Dev accuracy per epoch: {', '.join(f"{h['dev_accuracy']:.4f}" for h in r['history'])}; best epoch {r['student_best_epoch']}.
- Wall time: distillation {r['wall_seconds']:.0f} s (teacher logits once + {r['epochs_run']} epochs){'' if args.report else f", whole bench {time.time() - started:.0f} s"}.
"""
    write_section("distill", text)
    print(text)


if __name__ == "__main__":
    main()
