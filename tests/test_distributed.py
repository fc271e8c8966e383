"""Distillation on 2 real CPU processes (gloo): `torchrun` and `accelerate launch`, as the README gives them.

Each run is the CLI (or, for resume, a small driver calling ``distill``) started for real in a subprocess on the
bundled SST-2 rows (193 train / 64 dev: the last batch of each epoch has one row, so one process takes part in that
step with a zero weight), a tiny teacher (conftest) and the arm64-cpu profile at length 32. Checked:

- both processes ran, each on its own share of every global batch: the report's per-rank records (examples and a
  hash of the sorted training indices, per epoch) equal the shares recomputed here from the batching, which are
  disjoint and together cover each epoch;
- the main process alone prints distillation's stage lines and the progress bar;
- the student matches the single-process one. The global batch is the same for any number of processes (each takes
  rows rank, rank+N, ... of it; gradients averaged with share weights), so with dropout off the only difference is
  float summation order: weights and dev logits within ``EXACT_ATOL``. With dropout on, every process draws its own
  masks (another sample of the same training, like a re-seeded run): dev accuracy within ``DROPOUT_ACCURACY_POINTS``
  and the same predicted class on at least ``DROPOUT_MIN_AGREEMENT`` of dev (README: measured values);
- a 2-process run stopped after one epoch and resumed ends bit-identical to an uninterrupted 2-process run.

CUDA is hidden from the subprocesses so they are CPU (gloo) processes on any machine.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import save_tiny_teacher
from toolkit.data import DEMO_DEV, DEMO_TRAIN, bucketed_batches, load_labelled
from toolkit.files import PROJECT_ROOT
from toolkit.profiles import shipped_profile_paths

EPOCHS = 2
TRAIN_ROWS = 193  # 6 batches of 32 and one of 1
BATCH = 32  # DistillSettings' default global batch (the CLI does not change it)
PROCESSES = 2
EXACT_ATOL = 1e-5  # dropout off: 2 processes vs 1, float summation order only (measured: 2e-8 weights, 4e-9 logits)
DROPOUT_ACCURACY_POINTS = 2.0  # dropout on (README: 0.6 points measured on a trained teacher; 0.3 between seeds)
DROPOUT_MIN_AGREEMENT = 0.9  # dropout on (README: 97.1% measured; 94.4% between seeds)
RUN_TIMEOUT_S = 300
STAGE_LINES = ("student: ", "truncation: ")  # what distill() logs; the main process alone prints them


@pytest.fixture(scope="module")
def inputs(tiny_teacher_dir, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("distributed-inputs")
    for name, source, rows in (("train.tsv", DEMO_TRAIN, TRAIN_ROWS), ("dev.tsv", DEMO_DEV, 64)):
        lines = source.read_text(encoding="utf-8").splitlines()
        (folder / name).write_text("\n".join(lines[: rows + 1]) + "\n", encoding="utf-8")
    profile = yaml.safe_load(shipped_profile_paths()["arm64-cpu"].read_text())
    profile["sequence_length"], profile["sequence_lengths"] = 32, None
    (folder / "profile.yaml").write_text(yaml.safe_dump(profile))
    # The same tiny teacher with dropout off (the student inherits the teacher's dropout).
    no_dropout = save_tiny_teacher(folder / "teacher-no-dropout")
    config = json.loads((no_dropout / "config.json").read_text())
    config["dropout"] = 0.0
    (no_dropout / "config.json").write_text(json.dumps(config, indent=2))
    return {"teacher": Path(tiny_teacher_dir), "teacher_no_dropout": no_dropout, "train": folder / "train.tsv",
            "dev": folder / "dev.tsv", "profile": folder / "profile.yaml", "folder": folder}  # fmt: skip


def distill_args(inputs: dict[str, Path], teacher: Path, out: Path) -> list[str]:
    return ["-m", "toolkit", "distill", "--teacher", str(teacher), "--data", str(inputs["train"]),
            "--eval", str(inputs["dev"]), "--target", str(inputs["profile"]), "--out", str(out),
            "--layers", "1", "--epochs", str(EPOCHS)]  # fmt: skip


TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(PROCESSES)]
ACCELERATE = [str(Path(sys.executable).with_name("accelerate")), "launch", "--multi_gpu",
              "--num_processes", str(PROCESSES), "--main_process_port", "0"]  # fmt: skip


def run(command: list[str]) -> str:
    """Run to the end (its own process group, killed on timeout); stdout+stderr, progress bars split into lines."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "CUDA_VISIBLE_DEVICES": ""}
    env.pop("OMP_NUM_THREADS", None)  # torchrun sets 1 per process
    proc = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        output, _ = proc.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the process group this test started
        output, _ = proc.communicate()
        pytest.fail(f"{command} still running after {RUN_TIMEOUT_S} s:\n{output.decode(errors='replace')[-4000:]}")
    text = output.decode("utf-8", errors="replace").replace("\r", "\n")
    assert proc.returncode == 0, f"{command} exited {proc.returncode}:\n{text[-4000:]}"
    return text


@pytest.fixture(scope="module")
def runs(inputs) -> dict[str, tuple[Path, str]]:
    """(student folder, output) of the single-process, torchrun and accelerate runs, dropout off."""
    teacher, base = inputs["teacher_no_dropout"], inputs["folder"]
    commands = {
        "single": [sys.executable],
        "torchrun": TORCHRUN,
        "accelerate": ACCELERATE,
    }
    return {
        name: (base / name, run(prefix + distill_args(inputs, teacher, base / name)))
        for name, prefix in commands.items()
    }


def report(folder: Path) -> dict:
    return json.loads((folder / "distill_report.json").read_text())


def expected_ranks(inputs, epoch: int, processes: int) -> list[dict]:
    """The shares the loop must give each process, recomputed from the batching: rows r, r+N, ... of each batch."""
    from toolkit.teacher import load_teacher

    _, encoder = load_teacher(inputs["teacher"])
    train = load_labelled(inputs["train"])
    lengths = [len(ids) for ids in encoder.text_ids(train.texts)]
    batches = bucketed_batches(lengths, BATCH, seed=0 + epoch)  # DistillSettings.seed + epoch (0-based)
    shares = [sorted(i for b in batches for i in b[r::processes]) for r in range(processes)]
    seen = [i for s in shares for i in s]
    assert len(seen) == len(set(seen)) == len(train) and set(seen) == set(range(len(train)))  # disjoint, complete
    sha = lambda s: hashlib.sha256(",".join(map(str, s)).encode()).hexdigest()[:16]  # noqa: E731
    return [{"rank": r, "examples": len(s), "indices_sha": sha(s)} for r, s in enumerate(shares)]


def dev_logits(folder: Path, dev_path: Path, train_path: Path) -> tuple[np.ndarray, np.ndarray]:
    from toolkit.distill import student_logits
    from toolkit.student import load_student
    from toolkit.tokenizer import XLNetTextEncoder

    train = load_labelled(train_path)
    dev = load_labelled(dev_path, label_names=train.label_names)
    logits = student_logits(load_student(folder), XLNetTextEncoder.from_pretrained(folder), dev)
    return logits, np.asarray(dev.labels)


def max_weight_diff(a: Path, b: Path) -> float:
    sa = torch.load(a / "checkpoint.pt", weights_only=True)["student"]
    sb = torch.load(b / "checkpoint.pt", weights_only=True)["student"]
    assert sa.keys() == sb.keys()
    return max((sa[k] - sb[k]).abs().max().item() for k in sa)


def stage_line_counts(output: str) -> dict[str, int]:
    lines = output.splitlines()
    counts = {prefix: sum(line.startswith(prefix) for line in lines) for prefix in STAGE_LINES}
    counts["progress bar"] = len(re.findall(r"^distill:\s+0%", output, flags=re.M))  # each bar's first frame
    return counts


@pytest.mark.parametrize("launcher", ["torchrun", "accelerate"])
def test_two_cpu_processes_each_train_on_their_own_share(runs, inputs, launcher):
    folder, output = runs[launcher]
    r = report(folder)
    assert r["data_parallel"] == {"processes": 2, "distributed_type": "MULTI_CPU", "global_batch": BATCH,
                                  "per_process_batch": BATCH // 2}  # fmt: skip
    assert [h["epoch"] for h in r["history"]] == list(range(1, EPOCHS + 1))
    for epoch, entry in enumerate(r["history"]):
        assert entry["ranks"] == expected_ranks(inputs, epoch, 2)
        assert entry["ranks"][0]["indices_sha"] != entry["ranks"][1]["indices_sha"]
        assert sum(rank["examples"] for rank in entry["ranks"]) == TRAIN_ROWS
    assert r["ranks"] == r["history"][-1]["ranks"]
    # The single-process run: one rank with every example, the same batches.
    single = report(runs["single"][0])
    assert single["data_parallel"]["processes"] == 1
    assert [h["ranks"] for h in single["history"]] == [expected_ranks(inputs, e, 1) for e in range(EPOCHS)]
    # Only the main process prints distillation's lines and its progress bar (the single run prints them once too).
    expected = {prefix: 1 for prefix in STAGE_LINES} | {"progress bar": 1}
    assert stage_line_counts(runs["single"][1]) == expected
    assert stage_line_counts(output) == expected, output[-4000:]


@pytest.mark.parametrize("launcher", ["torchrun", "accelerate"])
def test_two_processes_give_the_single_process_student(runs, inputs, launcher):
    """Dropout off: the same global batches and averaged gradients, so the same student up to summation order."""
    single, multi = runs["single"][0], runs[launcher][0]
    assert max_weight_diff(single, multi) <= EXACT_ATOL
    a, labels = dev_logits(single, inputs["dev"], inputs["train"])
    b, _ = dev_logits(multi, inputs["dev"], inputs["train"])
    assert np.abs(a - b).max() <= EXACT_ATOL
    assert report(multi)["student_dev_accuracy"] == report(single)["student_dev_accuracy"]
    assert report(multi)["history"][-1]["dev_accuracy"] == pytest.approx(float((b.argmax(1) == labels).mean()))


DRIVER = """
import sys
from pathlib import Path

from toolkit.data import load_labelled
from toolkit.distill import DistillSettings, distill
from toolkit.profiles import load_profile

teacher, train_path, dev_path, profile_path, out = sys.argv[1:6]
train = load_labelled(train_path)
dev = load_labelled(dev_path, label_names=train.label_names)
profile, settings, out = load_profile(profile_path), DistillSettings(epochs=EPOCHS), Path(out)
kwargs = dict(n_layer=1, log=print)
distill(teacher, train, dev, profile, out / "straight", settings, **kwargs)
distill(teacher, train, dev, profile, out / "resumed", settings, stop_after_epochs=1, **kwargs)
distill(teacher, train, dev, profile, out / "resumed", settings, resume=True, **kwargs)
"""


def test_two_process_resume_and_dropout_tolerance(inputs, tmp_path):
    """Dropout on: a stopped-and-resumed 2-process run equals an uninterrupted one bit for bit (every process's
    dropout stream is in the checkpoint); the 2-process student is within the dropout tolerance of 1 process."""
    from toolkit.distill import DistillSettings, distill
    from toolkit.profiles import load_profile

    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER.replace("EPOCHS", str(EPOCHS)))
    output = run(TORCHRUN + [str(driver), str(inputs["teacher"]), str(inputs["train"]), str(inputs["dev"]),
                             str(inputs["profile"]), str(tmp_path)])  # fmt: skip
    assert sum(line.startswith("resuming after epoch 1") for line in output.splitlines()) == 1
    straight, resumed = report(tmp_path / "straight"), report(tmp_path / "resumed")
    assert resumed["history"] == straight["history"]
    assert max_weight_diff(tmp_path / "straight", tmp_path / "resumed") == 0.0
    assert len(torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)["rank_rng"]) == 2

    train = load_labelled(inputs["train"])
    dev = load_labelled(inputs["dev"], label_names=train.label_names)
    single = distill(inputs["teacher"], train, dev, load_profile(inputs["profile"]), tmp_path / "single",
                     DistillSettings(epochs=EPOCHS), n_layer=1, log=lambda *_: None)  # fmt: skip
    accuracy_points = abs(single.report["student_dev_accuracy"] - straight["student_dev_accuracy"]) * 100
    assert accuracy_points <= DROPOUT_ACCURACY_POINTS
    a, _ = dev_logits(tmp_path / "single", inputs["dev"], inputs["train"])
    b, _ = dev_logits(tmp_path / "straight", inputs["dev"], inputs["train"])
    assert (a.argmax(1) == b.argmax(1)).mean() >= DROPOUT_MIN_AGREEMENT
