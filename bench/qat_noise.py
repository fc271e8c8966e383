"""Why quantization-aware training does not lift full-int8 agreement to 99.5 %: int8 noise against the fp32 margins.

For each distilled bench student (``bench/distill.py`` keeps them in ``out/bench-distill``) this measures, on the
whole SST-2 dev set, with the toolkit's own int8 simulation (``toolkit.qat.QuantAware``: every op output on its
per-tensor grid with the exporters' 256-text min/max ranges, linear weights per channel; it matched ExecuTorch
int8-static and LiteRT full-int8 within 0.1 point on the sst2-1k 1/10 student):

* the fp32 student's margin |logit1 - logit0| (quantiles): how many dev sentences are near-ties;
* post-training: the simulated int8 student's agreement with fp32, the standard deviation of its margin error, and
  the agreement a Gaussian margin error of that size would give (each sentence flips with P(noise > its margin));
* the noise that 99.5 % would need under that model;
* quantization-aware fine-tuning variants (self-distillation to the fp32 logits, T = 2, as ``--qat-epochs`` trains;
  no dropout, AdamW, linear decay), each from the same distilled student: their simulated agreement with fp32.

    python bench/qat_noise.py [--students sst2-1k/0.1/today sst2/0.25/prune ...] [--train-cap 16000]

Writes the "qat-noise" section of BENCHMARKS.md; results in bench/results/qat_noise.json.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine_line, write_section  # noqa: E402
from distill import run_folder, task_data  # noqa: E402

from toolkit.data import bucketed_batches  # noqa: E402
from toolkit.distill import calibration_batches, kd_loss, student_logits  # noqa: E402
from toolkit.files import PROJECT_ROOT, atomic_write_json  # noqa: E402
from toolkit.qat import QuantAware  # noqa: E402
from toolkit.student import load_student  # noqa: E402
from toolkit.tokenizer import XLNetTextEncoder  # noqa: E402

STUDENTS = ("sst2-1k/0.1/today", "sst2-1k/0.25/today", "sst2/0.25/prune", "sst2/0.25/prune+lowrank", "sst2/0.1/today")
VARIANTS = {"QAT lr×0.1, 1 epoch (the toolkit's)": (0.1, 1), "lr×1, 1 epoch": (1.0, 1), "lr×0.1, 3 epochs": (0.1, 3)}
RESULTS = Path(__file__).resolve().parent / "results" / "qat_noise.json"


def gaussian_agreement(margins: np.ndarray, sd: float) -> float:
    """Share of sentences a zero-mean Gaussian margin error of ``sd`` leaves on the fp32 side."""
    return float(np.mean([1 - 0.5 * (1 - math.erf(m / (sd * math.sqrt(2)))) for m in margins]))


def measure(name: str, out: Path, train_cap: int) -> dict:
    task, size, row = name.split("/")
    folder = run_folder(out, task, float(size), row) / "student"
    _, labelled, dev, _ = task_data(task)
    calibration = labelled  # the exporters' 256 calibration texts are sampled from the whole training set
    train = labelled  # the QAT variants' training texts: a seeded sample of it (the fp32 targets need no labels)
    if len(train) > train_cap:
        train = train.subset(sorted(random.Random(0).sample(range(len(train)), train_cap)))
    encoder = XLNetTextEncoder.from_pretrained(folder)
    fp32 = load_student(folder)
    reference = student_logits(fp32, encoder, dev)
    margins = np.abs(reference[:, 1] - reference[:, 0])

    def simulated(student) -> tuple[float, float]:
        logits = student_logits(student, encoder, dev)
        error = (logits[:, 1] - logits[:, 0]) - (reference[:, 1] - reference[:, 0])
        return float((logits.argmax(1) == reference.argmax(1)).mean()), float(error.std())

    quant = QuantAware(fp32)
    quant.calibrate(calibration_batches(fp32, encoder, calibration))
    agreement, sd = simulated(fp32)
    quant.detach()
    record = {
        "student": name, "shape": [fp32.config.n_layer, fp32.config.d_model],
        "margin_quantiles": dict(zip(("1%", "2%", "5%", "10%", "50%"),
                                     np.quantile(margins, [0.01, 0.02, 0.05, 0.1, 0.5]).round(3).tolist())),
        "ptq_agreement": agreement, "margin_error_sd": sd, "gaussian_agreement": gaussian_agreement(margins, sd),
        "sd_for_99_5": next((round(sd / k, 4) for k in np.arange(1.0, 8.01, 0.25)
                             if gaussian_agreement(margins, sd / k) >= 0.995), None),
        "qat": {},
    }  # fmt: skip
    train_logits = torch.from_numpy(student_logits(fp32, encoder, train))
    lengths = [len(text.split()) for text in train.texts]
    for variant, (lr_scale, epochs) in VARIANTS.items():
        started = time.time()
        student = load_student(folder).eval()  # no dropout: the simulated int8 model has none
        quant = QuantAware(student)
        quant.calibrate(calibration_batches(student, encoder, calibration))
        optimizer = torch.optim.AdamW(student.parameters(), lr=3e-4 * lr_scale, weight_decay=0.01)
        batches = [bucketed_batches(lengths, 32, seed=epoch) for epoch in range(epochs)]
        steps = sum(len(b) for b in batches)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.0, 1 - step / steps))
        for epoch_batches in batches:
            for idx in epoch_batches:
                batch = encoder.encode_padded_to_longest([train.texts[i] for i in idx], None, max_len=64)
                ids, mask = torch.from_numpy(batch.input_ids), torch.from_numpy(batch.attention_mask)
                logits = student(ids, student.mask_input(mask), None)
                loss = kd_loss(logits, train_logits[idx], logits.argmax(-1), 2.0, 1.0)
                optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
                optimizer.step()
                schedule.step()
        agreement, sd = simulated(student)  # the fine-tuned student's int8 simulation against the original fp32
        record["qat"][variant] = {"agreement": agreement, "margin_error_sd": sd, "seconds": round(time.time() - started)}
        print(f"{name} {variant}: {agreement:.4f} (sd {sd:.4f})", flush=True)
    return record


def render(records: list[dict]) -> str:
    lines = [
        "## QAT and int8 noise (`bench/qat_noise.py`)",
        "",
        "Simulated full-int8 (every op output per tensor with the exporters' 256-text min/max ranges, weights per "
        "channel) against the fp32 student on all 872 SST-2 dev sentences. Margin = |logit1 − logit0| of the fp32 "
        "student; noise sd = standard deviation of the int8 margin error; Gaussian = the agreement that noise would "
        "give (a sentence flips when the error passes its margin); QAT columns: the same student fine-tuned "
        "quantization-aware (self-distillation to its fp32 logits, T = 2, no dropout), then simulated again.",
        "",
        f"Measured on {machine_line()}. Reproduce: `python bench/qat_noise.py` (after `python bench/distill.py`).",
        "",
        "| student | shape | fp32 margin 2% / 5% / 50% quantile | PTQ agreement | noise sd | Gaussian | sd for 99.5 % | "
        + " | ".join(VARIANTS) + " |",
        "|---|---|---|---:|---:|---:|---:|" + "---:|" * len(VARIANTS),
    ]
    for r in records:
        q = r["margin_quantiles"]
        cells = " | ".join(f"{r['qat'][v]['agreement']:.3f}" for v in VARIANTS)
        need = "—" if r["sd_for_99_5"] is None else f"{r['sd_for_99_5']:.3f}"
        lines.append(
            f"| {r['student']} | {r['shape'][0]} × d{r['shape'][1]} | {q['2%']:.2f} / {q['5%']:.2f} / {q['50%']:.2f} "
            f"| {r['ptq_agreement']:.3f} | {r['margin_error_sd']:.3f} | {r['gaussian_agreement']:.3f} | {need} | {cells} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", nargs="+", default=list(STUDENTS), help="task/size/row of bench/distill.py runs")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "out" / "bench-distill")
    parser.add_argument("--train-cap", type=int, default=16000, help="QAT training texts at most (seeded sample)")
    args = parser.parse_args()
    torch.manual_seed(0)
    records = [measure(name, args.out, args.train_cap) for name in args.students]
    atomic_write_json(RESULTS, records)
    write_section("qat-noise", render(records))
    print(render(records))


if __name__ == "__main__":
    main()
