"""Kill tests: `toolkit export` killed for real (SIGKILL, or SIGINT as Ctrl-C) at each stage boundary and mid-stage.

Each case starts the same command into a fresh --out, watches its output (stderr merged into stdout, progress bars
split on carriage returns) or its files, and kills the process group the moment the kill point is reached. Then:

- nothing in the interrupted bundle looks valid that is not: no manifest.json, every file in models/ is either an
  atomic-write temporary (hidden ``.NAME.XXXX.partial``, never named like an artifact) or listed in a finished
  per-artifact record of work/records/ with its exact sha256;
- the SAME command, without any extra flag, resumes to exit code 0 and produces byte-identical artifacts
  (models/*, tokenizer.json, labels.json, and the manifest's per-artifact sha256 fields) to one uninterrupted
  reference run. Manifest and report bytes differ by design (timings, creation time), so they are not compared.

There are no hooks in the product code: kill points are the log lines the pipeline prints anyway, and for
mid-distillation the checkpoint file distillation writes (atomically) after each epoch.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from toolkit.data import DEMO_DEV, DEMO_TRAIN
from toolkit.errors import EXIT_INTERRUPTED
from toolkit.files import PROJECT_ROOT
from toolkit.profiles import shipped_profile_paths

PROFILE_NAME = "tiny-interrupt"
ARTIFACTS = [  # one of each format; the tflite one is calibrated (seeded sample of training texts)
    {"format": "pte", "recipe": "fp32", "runtime": "executorch", "delegate": "xnnpack"},
    {"format": "tflite", "recipe": "full-int8", "runtime": "ai-edge-litert", "delegate": "xnnpack"},
]
EPOCHS = 2  # an epoch boundary (checkpoint) inside distillation
TEMPORARY = re.compile(r"^\.(?P<final>.+)\.[^.]+\.partial$")  # toolkit.files.atomic_path: .NAME.XXXXXXXX.partial
RUN_TIMEOUT_S = 600
EXIT_TIMEOUT_S = 120  # after the signal, for the process group to be gone


# ---------------------------------------------------------------------------------------------------------------
# Inputs: a tiny teacher (conftest), 192/64 SST-2 rows as files, a 2-artifact profile at sequence length 32
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def command_inputs(tiny_teacher_dir, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("interrupt-inputs")
    for name, source, rows in (("train.tsv", DEMO_TRAIN, 192), ("dev.tsv", DEMO_DEV, 64)):
        lines = source.read_text(encoding="utf-8").splitlines()
        (folder / name).write_text("\n".join(lines[: rows + 1]) + "\n", encoding="utf-8")
    data = yaml.safe_load(shipped_profile_paths()["arm64-cpu"].read_text())
    data["name"] = PROFILE_NAME
    # One method per artifact: resuming is tested here, length buckets in test_buckets.
    data["sequence_length"], data["sequence_lengths"] = 32, [32]
    data["artifacts"] = ARTIFACTS
    data["student"]["max_layers"] = 1  # export time grows with the graph; the kill points need no depth
    data["validation"]["tolerances"].update({"max_accuracy_drop_points": 60, "min_argmax_agreement": 0.5})
    (folder / "profile.yaml").write_text(yaml.safe_dump(data))
    return {"teacher": Path(tiny_teacher_dir), "train": folder / "train.tsv", "dev": folder / "dev.tsv",
            "profile": folder / "profile.yaml"}  # fmt: skip


def export_command(inputs: dict[str, Path], out: Path) -> list[str]:
    return [sys.executable, "-m", "toolkit", "export", "--target", str(inputs["profile"]),
            "--teacher", str(inputs["teacher"]), "--data", str(inputs["train"]), "--eval", str(inputs["dev"]),
            "--epochs", str(EPOCHS), "--out", str(out), "--no-emulate"]  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------
# Running, watching and killing
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class KillPoint:
    id: str
    signal: signal.Signals
    line: str | None = None  # kill when an output line starts with this
    file: str | None = None  # ... or when this file (relative to the bundle) exists
    resumed_log: tuple[str, ...] = ()  # what the resumed run must say (it resumed, it did not start over)


@dataclass
class Run:
    returncode: int
    output: str
    killed: bool = False
    kill_delay_s: float | None = None  # trigger seen -> process gone
    seconds: float = 0.0


def _reader(stream, lines: queue.Queue, chunks: list[str]) -> None:
    """Push output lines as they come; carriage returns (progress bars) end a line too. None at EOF."""
    pending = ""
    for chunk in iter(lambda: stream.read1(65536), b""):
        text = chunk.decode("utf-8", errors="replace")
        chunks.append(text)
        pending += text
        *complete, pending = re.split(r"[\r\n]", pending)
        for line in complete:
            lines.put(line)
    if pending:
        lines.put(pending)
    lines.put(None)


def run_export(command: list[str], bundle: Path, kill: KillPoint | None = None) -> Run:
    """Run the command to its end, or kill its process group (only processes it started) at ``kill``."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    lines: queue.Queue = queue.Queue()
    chunks: list[str] = []
    reader = threading.Thread(target=_reader, args=(proc.stdout, lines, chunks), daemon=True)
    reader.start()
    started = time.monotonic()
    deadline = started + RUN_TIMEOUT_S
    killed_at = None
    try:
        eof = False
        while not eof and killed_at is None:
            if time.monotonic() > deadline:
                pytest.fail(f"{command} still running after {RUN_TIMEOUT_S} s:\n{''.join(chunks)[-4000:]}")
            try:
                line = lines.get(timeout=0.01)
            except queue.Empty:
                line = ""
            eof = line is None
            hit = kill is not None and (
                (kill.line is not None and line is not None and line.lstrip().startswith(kill.line))
                or (kill.file is not None and (bundle / kill.file).exists())
            )
            if hit:
                killed_at = time.monotonic()
                os.killpg(proc.pid, kill.signal)
        try:
            proc.wait(timeout=EXIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{command} did not exit within {EXIT_TIMEOUT_S} s of {kill and kill.signal.name}:\n"
                        + "".join(chunks)[-4000:])
    finally:
        if proc.poll() is None:  # our own process group only
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    reader.join(timeout=30)
    delay = None if killed_at is None else round(time.monotonic() - killed_at, 2)
    seconds = round(time.monotonic() - started, 1)
    return Run(proc.returncode, "".join(chunks), killed=killed_at is not None, kill_delay_s=delay, seconds=seconds)


# ---------------------------------------------------------------------------------------------------------------
# What a bundle holds
# ---------------------------------------------------------------------------------------------------------------


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def shipped_files(bundle: Path) -> dict[str, str]:
    """sha256 of every file an app takes from the bundle: models/*, tokenizer.json, labels.json."""
    models = sorted(p for p in (bundle / "models").iterdir()) if (bundle / "models").is_dir() else []
    files = {str(p.relative_to(bundle)): sha256(p) for p in models}
    for name in ("tokenizer.json", "labels.json"):
        if (bundle / name).exists():
            files[name] = sha256(bundle / name)
    return files


def manifest_artifacts(bundle: Path) -> dict[str, dict]:
    manifest = json.loads((bundle / "manifest.json").read_text())
    return {a["name"]: {k: a[k] for k in ("file", "sha256", "bytes", "valid")} for a in manifest["artifacts"]}


class UncheckedArtifact(AssertionError):
    """A file sits in models/ that no finished per-artifact record vouches for."""


def assert_nothing_looks_valid(bundle: Path) -> None:
    """The state an interrupted run leaves: no completed manifest, and no model file that no finished record vouches
    for with its exact sha256; atomic-write temporaries are hidden and never named like an artifact."""
    assert not (bundle / "manifest.json").exists(), "an interrupted run left a manifest.json claiming completion"
    records = {}
    for path in sorted((bundle / "work" / "records").glob("*.json")):
        record = json.loads(path.read_text())  # a record is written atomically: it parses or does not exist
        records[record["file"]] = record
    models = bundle / "models"
    for path in sorted(models.iterdir()) if models.is_dir() else []:
        if TEMPORARY.match(path.name):
            assert not path.name.endswith((".pte", ".tflite")), f"temporary {path.name} is named like an artifact"
            continue
        relative = str(path.relative_to(bundle))
        record = records.get(relative)
        if record is None:
            raise UncheckedArtifact(
                f"{relative} is in models/ but no finished record (work/records/) lists it: an artifact that has "
                "not passed its checks looks shipped"
            )
        assert record["valid"] and record["sha256"] == sha256(path), f"{relative} does not match its record"
    for path in bundle.rglob("*"):  # nothing else that looks final is half-written: only hidden temporaries
        if path.name.endswith(".partial"):
            assert TEMPORARY.match(path.name), f"unexpected partial file {path}"


# ---------------------------------------------------------------------------------------------------------------
# The reference and the cases
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference(command_inputs, tmp_path_factory) -> dict:
    """One uninterrupted run: its shipped files' sha256 and its manifest's artifact fields."""
    out = tmp_path_factory.mktemp("interrupt-reference")
    bundle = out / PROFILE_NAME
    run = run_export(export_command(command_inputs, out), bundle)
    assert run.returncode == 0, run.output[-6000:]
    files = shipped_files(bundle)
    assert sorted(files) == sorted(["labels.json", "tokenizer.json", "models/pte-fp32.pte",
                                    "models/tflite-full-int8.tflite"]), files  # fmt: skip
    artifacts = manifest_artifacts(bundle)
    assert all(a["valid"] and files[a["file"]] == a["sha256"] for a in artifacts.values()), artifacts
    return {"files": files, "artifacts": artifacts}


ALREADY = ("already exported and checked",)
KILL_POINTS = [
    KillPoint("distill-start-SIGKILL", signal.SIGKILL, line="[2/5] distill"),
    KillPoint("after-epoch-1-checkpoint-SIGKILL", signal.SIGKILL, file="work/student/checkpoint.pt",
              resumed_log=("resuming after epoch 1",)),  # fmt: skip
    KillPoint("export-start-SIGKILL", signal.SIGKILL, line="[3/5] export + host checks",
              resumed_log=("student already distilled",)),  # fmt: skip
    KillPoint("mid-export-pte-SIGKILL", signal.SIGKILL, line="pte-fp32: exporting",
              resumed_log=("student already distilled",)),  # fmt: skip
    # The first artifact is exported to work/unchecked/ and only moved into models/ after its host check and
    # record: killed during the check, models/ must hold nothing (resume then re-exports it identically).
    KillPoint("host-check-of-first-artifact-SIGKILL", signal.SIGKILL, file="work/unchecked/pte-fp32.pte",
              resumed_log=("student already distilled",)),  # fmt: skip
    # Both artifacts export at once in worker processes (toolkit/export_workers.py): Ctrl-C reaches the workers too.
    KillPoint("mid-export-SIGINT", signal.SIGINT, line="tflite-full-int8: exporting",
              resumed_log=("student already distilled",)),  # fmt: skip
    # The first artifact's record is written, then its file moved into models/: killed in between or after, the
    # rerun keeps it (moves it if needed) instead of exporting it again.
    KillPoint("first-artifact-recorded-SIGKILL", signal.SIGKILL, file="work/records/pte-fp32.json",
              resumed_log=("pte-fp32: already exported and checked",)),  # fmt: skip
    KillPoint("emulator-stage-SIGKILL", signal.SIGKILL, line="[4/5] emulator",
              resumed_log=("pte-fp32: " + ALREADY[0], "tflite-full-int8: " + ALREADY[0])),  # fmt: skip
    KillPoint("bundle-stage-SIGINT", signal.SIGINT, line="[5/5] bundle + report",
              resumed_log=("pte-fp32: " + ALREADY[0], "tflite-full-int8: " + ALREADY[0])),  # fmt: skip
]
# Near-duplicates of a default case (same work on disk when the kill lands): run with -m slow.
SLOW = {"distill-start-SIGKILL", "export-start-SIGKILL", "emulator-stage-SIGKILL",
        "after-epoch-1-checkpoint-SIGKILL",  # distillation's resume is also tested in process (test_distill)
        "mid-export-pte-SIGKILL",  # lands where mid-export-SIGINT does: both artifacts exporting in their workers
        "first-artifact-recorded-SIGKILL",
        "bundle-stage-SIGINT"}  # after every artifact is recorded, as emulator-stage-SIGKILL; SIGINT: mid-export-SIGINT
KNOWN: dict = {}  # product bugs a kill point exposes, as xfail marks (none open)


def _marks(kill: KillPoint) -> list:
    return ([pytest.mark.slow] if kill.id in SLOW else []) + ([KNOWN[kill.id]] if kill.id in KNOWN else [])


@pytest.mark.parametrize("kill", [pytest.param(k, id=k.id, marks=_marks(k)) for k in KILL_POINTS])
def test_killed_export_resumes_to_identical_artifacts(kill: KillPoint, reference, command_inputs, tmp_path):
    out = tmp_path / "out"
    bundle = out / PROFILE_NAME
    command = export_command(command_inputs, out)

    interrupted = run_export(command, bundle, kill)
    assert interrupted.killed, f"kill point {kill.id} never reached; the run ended:\n{interrupted.output[-6000:]}"
    if kill.signal == signal.SIGKILL:
        assert interrupted.returncode == -signal.SIGKILL
    else:  # Ctrl-C: the command stops promptly (within EXIT_TIMEOUT_S), says how to resume, exits 130
        assert interrupted.returncode == EXIT_INTERRUPTED, interrupted.output[-6000:]
        assert "run the same command again to resume" in " ".join(interrupted.output.split())
    unchecked = None
    try:
        assert_nothing_looks_valid(bundle)
    except UncheckedArtifact as err:  # reported after the resume checks, so those still run
        unchecked = err

    resumed = run_export(command, bundle)  # the same command, no extra flag: the unfinished bundle resumes
    print(f"{kill.id}: killed after {interrupted.seconds} s (exit {interrupted.returncode}, "
          f"{interrupted.kill_delay_s} s after the signal); resumed in {resumed.seconds} s, exit {resumed.returncode}")
    assert resumed.returncode == 0, resumed.output[-6000:]
    for expected in kill.resumed_log:
        assert expected in resumed.output, f"the rerun did not resume ({expected!r}):\n{resumed.output[-6000:]}"

    files = shipped_files(bundle)
    differing = sorted(n for n in set(files) | set(reference["files"]) if files.get(n) != reference["files"].get(n))
    assert not differing, f"after {kill.id} the resumed bundle differs from the uninterrupted one: {differing}"
    assert manifest_artifacts(bundle) == reference["artifacts"]
    if unchecked is not None:
        raise unchecked


def test_a_swallowed_ctrl_c_still_stops_the_pipeline():
    """A C extension that checks signals may swallow the KeyboardInterrupt the handler raises; the flag it sets
    still stops the run at the next check (stage starts, each artifact, before the manifest)."""
    from toolkit import errors

    errors.raise_if_interrupted()  # nothing pressed: no-op
    try:
        errors._on_sigint(signal.SIGINT, None)
    except KeyboardInterrupt:
        pass  # swallowed, as inside a runtime's C++ loop
    try:
        with pytest.raises(KeyboardInterrupt):
            errors.raise_if_interrupted()
    finally:
        errors._interrupted.clear()
