"""Which 256 training texts calibrate static int8: the pipeline's uniform draw vs draws that cover long texts.

The calibration texts come from the training data, whose SST-2 phrases are short (9.4 words on average; dev
sentences 19.5, SUBJ's 23.4), so the activation ranges may miss what long texts produce. For each student and
sampler: ``int8-static`` and ``int8-static-histogram`` exported by the toolkit's exporter, each ``.pte`` run by
ExecuTorch on all SST-2 dev sentences and on SUBJ's 10,000 sentences (agreement with the fp32 student, no labels
needed; see bench/pte_qat.py).

Samplers: ``uniform`` (the pipeline's: ``calibration_inputs``, seed 0); ``uniform-1024`` (four times as many texts,
drawn the same way); ``lengths`` (a token length drawn uniformly among the lengths present, then a text of that
length; 256 draws, duplicates dropped); ``long`` (uniform among texts of at least 24 tokens; all of them when there
are fewer than 256).

    python bench/calibration_sample.py sst2:out/bench-distill/sst2/0.1/today/student ...
Writes bench/results/calibration_sample.json and the "calibration-sample" section of BENCHMARKS.md.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine_line, measure_each  # noqa: E402
from pte_qat import subject, wilson  # noqa: E402

from toolkit.buckets import token_counts  # noqa: E402
from toolkit.export_pte import export_pte, run_pte  # noqa: E402
from toolkit.profiles import Artifact  # noqa: E402
from toolkit.student import (  # noqa: E402
    CALIBRATION_SAMPLES,
    calibration_inputs,
    encode_for,
)

RESULTS = Path(__file__).resolve().parent / "results" / "calibration_sample.json"
RECIPES = ("int8-static", "int8-static-histogram")
SAMPLERS = ("uniform", "uniform-1024", "lengths", "long")
LONG_TOKENS = 24


def sample(kind: str, student, encoder, train) -> list[np.ndarray]:
    if kind == "uniform":
        return calibration_inputs(student, encoder, train, 0)
    if kind == "uniform-1024":  # four times the pipeline's sample, drawn the same way
        return calibration_inputs(student, encoder, train, 0, samples=4 * CALIBRATION_SAMPLES)
    every = encode_for(student, encoder, train)
    tokens, rng = token_counts(every), np.random.default_rng(0)
    if kind == "lengths":
        by_length: dict[int, list[int]] = {}
        for index, n in enumerate(tokens):
            by_length.setdefault(int(n), []).append(index)
        lengths = sorted(by_length)
        draws = [int(rng.choice(by_length[lengths[rng.integers(len(lengths))]])) for _ in range(CALIBRATION_SAMPLES)]
        picked = sorted(set(draws))
    else:
        pool = np.flatnonzero(tokens >= LONG_TOKENS)
        picked = sorted(rng.choice(pool, min(CALIBRATION_SAMPLES, len(pool)), replace=False).tolist())
    return [a[picked] for a in every]


def measure(task: str, folder: str) -> dict:
    bench = subject(task, folder)
    student, encoder, train, inputs, heldout = bench.student, bench.encoder, bench.train, bench.dev_inputs, \
        bench.heldout  # fmt: skip
    reference, heldout_reference = bench.dev_logits.argmax(1), bench.heldout_logits.argmax(1)
    result: dict = {"task": task, "student": folder}
    with tempfile.TemporaryDirectory() as scratch:
        for kind in SAMPLERS:
            calibration = sample(kind, student, encoder, train)
            mean_tokens = round(float(token_counts(calibration).mean()), 1)
            result[kind] = {"texts": len(calibration[0]), "mean_tokens": mean_tokens}
            for recipe in RECIPES:
                path = Path(scratch) / f"{kind}-{recipe}.pte"
                export_pte(student, Artifact(format="pte", recipe=recipe, runtime="executorch", delegate="xnnpack"),
                           path, calibration=calibration)  # fmt: skip
                agreeing = int((run_pte(path, heldout).argmax(1) == heldout_reference).sum())
                result[kind][recipe] = {
                    "dev": round(float((run_pte(path, inputs).argmax(1) == reference).mean()), 4),
                    "heldout": round(agreeing / len(heldout_reference), 4),
                    "interval": [round(x, 4) for x in wilson(agreeing, len(heldout_reference))],
                }
                print(task, folder, kind, recipe, result[kind][recipe], flush=True)
    return result


def section(results: list[dict]) -> str:
    lines = [
        "## Calibration sample: uniform vs covering long texts (`bench/calibration_sample.py`)",
        "",
        "The calibration texts (256) come from the training data, whose SST-2 phrases are short (9.4 words on average; "
        "dev sentences 19.5, SUBJ 23.4). Samplers: `uniform` (the pipeline's draw, seed 0), `lengths` (a token length "
        "drawn uniformly among those present, then a text of that length), `uniform-1024` (four times as many texts, "
        "drawn the same way), `long` (texts of at least 24 tokens; the "
        "sst2-1k student's 1,000 texts have fewer than 256). Cells: agreement with the fp32 student, dev (872) / "
        "10,000 unseen SUBJ sentences [95 % interval], each `.pte` run by ExecuTorch.",
        "",
        "Read: no sampler is better for both students and both rules. Four times the texts lowered agreement (the "
        "histogram rule most: 0.9930 -> 0.9905 and 0.9946 -> 0.9824 on 10,000 unseen texts); texts covering every "
        "length lifted the sst2 student (histogram 0.9930 -> 0.9960) and lowered the sst2-1k one (0.9946 -> 0.9925). "
        "Which texts calibrate moves agreement on the unseen texts by up to 1.3 points (histogram rule: 0.55 and 1.26) "
        "and 0.8 (min/max: 0.11 and 0.79) on the same student, as much as the range rule itself, so the pipeline's "
        "uniform draw stays.",
        "",
        f"Measured on {machine_line()}. Reproduce: `python bench/calibration_sample.py TASK:STUDENT ...` "
        "(sst2:out/bench-distill/sst2/0.1/today/student sst2-1k:out/bench-distill/sst2-1k/0.1/today/student).",
        "",
        "| task | student | sampler (texts, mean tokens) | int8-static | int8-static-histogram |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        name = "/".join(Path(r["student"]).parts[-3:-1])
        for kind in SAMPLERS:
            cells = [f"{r[kind][x]['dev']:.4f} / {r[kind][x]['heldout']:.4f} [{r[kind][x]['interval'][0]:.4f}, "
                     f"{r[kind][x]['interval'][1]:.4f}]" for x in RECIPES]
            lines.append(f"| {r['task']} | {name} | {kind} ({r[kind]['texts']}, {r[kind]['mean_tokens']}) | "
                         + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    measure_each(RESULTS, "calibration-sample", sys.argv[1:], measure, section)

if __name__ == "__main__":
    main()
