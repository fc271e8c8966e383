"""Every bad input the issue lists, as a runnable case: what the user does, the exit code and the message.

``tests/test_bad_inputs.py`` runs each case through the real CLI (typer's test runner, in process) and asserts the
code, the message and that no traceback is printed. ``python tests/bad_inputs.py`` prints the same cases as the
Markdown table in docs/bad-inputs.md (exact messages, exit codes).

Each case builds its inputs in a scratch folder from the tiny real teacher and the bundled SST-2 sample. A case
that needs a condition the machine cannot produce on demand (a full disk, qemu uninstalled) simulates it and says
so in its ``simulated`` field.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from toolkit.files import PROJECT_ROOT  # noqa: E402
from toolkit.profiles import shipped_profile_paths  # noqa: E402

SST2 = PROJECT_ROOT / "toolkit" / "assets" / "sst2"


@dataclass
class Case:
    name: str
    what: str  # the bad input, in words
    build: Callable[[Path, Path], list[str]]  # (scratch folder, tiny teacher folder) -> CLI arguments
    code: int
    expect: str  # a fragment the message must contain
    simulated: str = ""  # how a condition that cannot be produced for real is simulated
    patch: Callable[[object], None] | None = None  # gets pytest's monkeypatch (or a stand-in) before the run
    setup_notes: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------------------- input builders


def small_data(folder: Path, rows: int = 96) -> tuple[Path, Path]:
    """The first ``rows`` training and 32 dev sentences of the bundled SST-2 sample, as TSV files."""
    train, dev = folder / "train.tsv", folder / "dev.tsv"
    train.write_text("".join((SST2 / "train.tsv").read_text().splitlines(keepends=True)[: rows + 1]))
    dev.write_text("".join((SST2 / "dev.tsv").read_text().splitlines(keepends=True)[:33]))
    return train, dev


def profile_file(folder: Path, edit: Callable[[dict], None], base: str = "arm64-cpu", name: str = "p.yaml") -> Path:
    data = yaml.safe_load(shipped_profile_paths()[base].read_text())
    data["sequence_length"], data["sequence_lengths"] = 32, [16, 32]
    edit(data)
    path = folder / name
    path.write_text(yaml.safe_dump(data))
    return path


def export_args(folder: Path, teacher: Path, *extra: str, target: str | None = None, data: Path | None = None,
                dev: Path | None = None) -> list[str]:
    train_path, dev_path = small_data(folder)
    return ["export", "--target", target or str(profile_file(folder, lambda d: None)), "--teacher", str(teacher),
            "--data", str(data or train_path), "--eval", str(dev or dev_path), "--out", str(folder / "out"),
            "--no-emulate", "--epochs", "1", *extra]


def worded_labels(folder: Path) -> tuple[Path, Path]:
    """The small data with labels written as words (negative/positive) instead of 0/1."""
    train, dev = small_data(folder)
    for path in (train, dev):
        lines = path.read_text().splitlines()
        body = [line.rsplit("\t", 1)[0] + "\t" + ("positive" if line.endswith("1") else "negative") for line in lines[1:]]
        path.with_name("worded-" + path.name).write_text("\n".join([lines[0], *body]) + "\n")
    return train.with_name("worded-" + train.name), dev.with_name("worded-" + dev.name)


def teacher_copy(folder: Path, teacher: Path, edit: Callable[[Path], None]) -> Path:
    target = folder / "teacher"
    shutil.copytree(teacher, target)
    edit(target)
    return target


def edit_config(key: str, value) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        config = json.loads((folder / "config.json").read_text())
        config[key] = value
        (folder / "config.json").write_text(json.dumps(config))
    return edit


def pickle_only(folder: Path) -> None:
    import torch
    from safetensors.torch import load_file

    weights = folder / "model.safetensors"
    torch.save(load_file(weights), folder / "pytorch_model.bin")
    weights.unlink()


def written(folder: Path, name: str, content: str | bytes) -> Path:
    path = folder / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def finished_bundle(folder: Path) -> None:
    bundle = folder / "out" / "arm64-cpu"
    bundle.mkdir(parents=True)
    (bundle / "manifest.json").write_text("{}")


def foreign_folder(folder: Path) -> None:
    bundle = folder / "out" / "arm64-cpu"
    bundle.mkdir(parents=True)
    (bundle / "holiday-photos.jpg").write_bytes(b"\xff\xd8")


def escaping_manifest(folder: Path) -> list[str]:
    bundle = folder / "bundle"
    bundle.mkdir()
    manifest = json.loads((Path(__file__).parent / "data" / "sample_manifest.json").read_text())
    manifest["artifacts"][0]["file"] = "../../outside/model.tflite"
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    return ["validate", str(bundle), "--target", "arm64-cpu"]


def disk_full(monkeypatch) -> None:
    """The first atomic write fails with ENOSPC, as on a full disk (a real full disk needs root to mount)."""
    from pathlib import Path as _Path

    real = _Path.write_bytes

    def write_bytes(self, data):
        if self.name.endswith(".partial"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, data)

    monkeypatch.setattr(_Path, "write_bytes", write_bytes)


def no_qemu(monkeypatch) -> None:
    """qemu-aarch64 looked up under a name that is not installed (uninstalling it would break other tests)."""
    import toolkit.emulate

    monkeypatch.setattr(toolkit.emulate, "QEMU", "qemu-aarch64-not-installed")


def _write_dev_with_label(folder: Path, label: str) -> Path:
    return written(folder, "dev_bad.tsv", "sentence\tlabel\na fine film\t1\nodd one\t" + label + "\n")


CASES = [
    # ---- profiles
    Case("profile-unknown", "`--target` names no shipped profile or file",
         lambda d, t: export_args(d, t, target="raspberry-pi-9"), 2, "no profile 'raspberry-pi-9'"),
    Case("profile-bad-yaml", "profile file is not valid YAML",
         lambda d, t: export_args(d, t, target=str(written(d, "p.yaml", "name: [unclosed\n"))), 2, "not valid YAML"),
    Case("profile-missing-field", "profile lacks a required field (`budgets`)",
         lambda d, t: export_args(d, t, target=str(profile_file(d, lambda p: p.pop("budgets")))), 2,
         "budgets: Field required"),
    Case("profile-unknown-field", "profile has a misspelt field (`budget`)",
         lambda d, t: export_args(d, t, target=str(profile_file(d, lambda p: p.update(budget=1)))), 2,
         "budget: Extra inputs are not permitted"),
    Case("profile-impossible-budget", "budgets no student can meet (artifact ≤ 0.001 MB)",
         lambda d, t: export_args(d, t, target=str(profile_file(d, lambda p: p["budgets"].update(artifact_mb=0.001)))),
         2, "no student shape fits profile"),
    Case("profile-name-escapes", "profile name that would write outside --out (`../../x`)",
         lambda d, t: export_args(d, t, target=str(profile_file(d, lambda p: p.update(name="../../x")))), 2,
         "name: String should match pattern"),
    Case("profile-op-unsupported-runtime", "a recipe the device runtime runs wrongly (full-int8 on tflite-runtime 2.14)",
         lambda d, t: export_args(d, t, target=str(profile_file(d, lambda p: p.update(artifacts=[
             {"format": "tflite", "recipe": "full-int8", "runtime": "tflite-runtime", "delegate": "xnnpack"}])))),
         2, "tflite-runtime 2.14's aarch64 build crashes"),
    Case("profile-op-unsupported-delegate", "NNAPI artifact with a GELU/LayerNorm student (ops NNAPI rejects in int8)",
         lambda d, t: export_args(d, t, target=str(profile_file(d, lambda p: p.update(artifacts=[
             {"format": "tflite", "recipe": "full-int8", "runtime": "ai-edge-litert", "delegate": "nnapi"}])))),
         2, "the NNAPI delegate cannot run ['gelu', 'layernorm']"),
    # ---- teacher
    Case("teacher-missing", "`--teacher` folder does not exist",
         lambda d, t: export_args(d, d / "nope"), 2, "no such folder"),
    Case("teacher-incomplete", "teacher folder without weights",
         lambda d, t: export_args(d, teacher_copy(d, t, lambda f: (f / "model.safetensors").unlink())), 2,
         "no *.safetensors weights"),
    Case("teacher-corrupt", "teacher weights truncated (corrupt safetensors)",
         lambda d, t: export_args(d, teacher_copy(d, t, lambda f: (f / "model.safetensors").write_bytes(
             (f / "model.safetensors").read_bytes()[:5000]))), 2, "the checkpoint could not be loaded"),
    Case("teacher-not-xlnet", "a BERT checkpoint", lambda d, t: export_args(
        d, teacher_copy(d, t, edit_config("model_type", "bert"))), 2, "not XLNet"),
    Case("teacher-pickle-only", "only `pytorch_model.bin` (pickle) weights",
         lambda d, t: export_args(d, teacher_copy(d, t, pickle_only)), 2, "--trust-pickle"),
    Case("teacher-remote-code", "config.json asks for custom code (`auto_map`)",
         lambda d, t: export_args(d, teacher_copy(d, t, edit_config("auto_map", {"AutoModel": "evil.Model"}))), 2,
         "never runs code shipped with a checkpoint"),
    Case("teacher-labels-unmatched", "teacher with transformers' default `LABEL_0/1` names, data labelled by words",
         lambda d, t: export_args(d, teacher_copy(d, t, edit_config("id2label", {"0": "LABEL_0", "1": "LABEL_1"})),
                                  data=worded_labels(d)[0], dev=worded_labels(d)[1]), 2,
         "do not match"),
    Case("teacher-tokenizer-damaged", "the teacher's `tokenizer.json` is damaged",
         lambda d, t: export_args(d, teacher_copy(d, t, lambda f: (f / "tokenizer.json").write_text("{ not json"))),
         2, "tokenizer files could not be read"),
    # ---- distillation options
    Case("transfer-missing", "`--transfer` file does not exist",
         lambda d, t: export_args(d, t, "--transfer", str(d / "nope.txt")), 2, "no such transfer-text file"),
    Case("transfer-no-column", "`--transfer` TSV without the text column",
         lambda d, t: export_args(d, t, "--transfer", str(written(d, "t.tsv", "review\tx\ngood\t1\n"))), 2,
         "no column 'sentence'"),
    Case("route-unknown", "`--route` names no route", lambda d, t: export_args(d, t, "--route", "snip"), 2,
         "route 'snip': choose one of ['fresh', 'prune', 'prune+lowrank', 'scratch']"),
    # ---- data
    Case("data-missing", "`--data` file does not exist",
         lambda d, t: export_args(d, t, data=d / "nope.tsv"), 2, "no such data file"),
    Case("data-empty", "`--data` file is empty",
         lambda d, t: export_args(d, t, data=written(d, "empty.tsv", "")), 2, "no usable labelled rows"),
    Case("data-wrong-columns", "columns named differently from `--text-column/--label-column`",
         lambda d, t: export_args(d, t, data=written(d, "cols.tsv", "review\tstars\nnice\t5\n")), 2,
         "name them with --text-column"),
    Case("data-unknown-label", "dev label outside the training label set",
         lambda d, t: export_args(d, t, dev=_write_dev_with_label(d, "7")), 2, "labels ['7'] are not in the label set"),
    Case("data-single-class", "training data with one label only",
         lambda d, t: export_args(d, t, data=written(d, "one.tsv", "sentence\tlabel\n" + "good\t1\n" * 40)), 2,
         "needs at least two classes"),
    Case("data-not-utf8", "training file in Latin-1 (non-UTF-8 bytes)",
         lambda d, t: export_args(d, t, data=written(d, "latin1.tsv", b"sentence\tlabel\ncaf\xe9 au lait\t1\n")), 2,
         "line 2 is not UTF-8"),
    Case("data-bad-rows", "rows with an empty text or label",
         lambda d, t: export_args(d, t, data=written(d, "rows.tsv", "sentence\tlabel\nok\t1\n\t0\nfine\t\n")), 2,
         "2 bad rows"),
    Case("calibration-too-small", "static int8 artifact but only 20 training rows to calibrate on",
         lambda d, t: export_args(d, t, data=written(d, "twenty.tsv", "".join(
             (SST2 / "train.tsv").read_text().splitlines(keepends=True)[:21])), target=str(profile_file(d, lambda p: p.update(
             artifacts=[{"format": "pte", "recipe": "int8-static", "runtime": "executorch", "delegate": "xnnpack"}])))),
         2, "needs at least 32, the training data has 20"),
    # ---- output folder, disk, emulator, manifests
    Case("out-holds-bundle", "`--out` already holds a finished bundle",
         lambda d, t: (finished_bundle(d), export_args(d, t))[1], 2, "already holds a finished bundle"),
    Case("out-foreign-folder", "`--out/<profile>` holds files the toolkit did not write",
         lambda d, t: (foreign_folder(d), export_args(d, t))[1], 2, "was not written by `toolkit export`"),
    Case("disk-full", "the disk fills up while writing", lambda d, t: export_args(d, t), 2, "no space left on the device",
         simulated="the atomic writer's temporary file raises ENOSPC", patch=disk_full),
    Case("qemu-missing", "qemu-aarch64 not installed (emulation on)",
         lambda d, t: [a for a in export_args(d, t) if a != "--no-emulate"], 2, "sudo apt-get install -y qemu-user",
         simulated="the toolkit looks qemu up under a name that is not installed", patch=no_qemu),
    Case("manifest-path-escapes", "a manifest whose artifact path leaves the bundle (`../../outside/model.tflite`)",
         lambda d, t: escaping_manifest(d), 2, "points outside"),
]


def run_case(case: Case, scratch: Path, teacher: Path, monkeypatch) -> tuple[int, str]:
    """(exit code, output) of the CLI for one case."""
    from typer.testing import CliRunner

    from toolkit.cli import app

    args = case.build(scratch, teacher)
    if case.patch:
        case.patch(monkeypatch)
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200", "NO_COLOR": "1"})
    return result.exit_code, result.output


def markdown_table() -> str:
    import tempfile

    import pytest

    from conftest import save_tiny_teacher

    rows = ["| bad input | exit | message |", "|---|---:|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        teacher = save_tiny_teacher(Path(tmp) / "teacher")
        for case in CASES:
            scratch = Path(tmp) / case.name
            scratch.mkdir()
            with pytest.MonkeyPatch.context() as monkeypatch:
                code, output = run_case(case, scratch, teacher, monkeypatch)
            message = output[output.rindex("error:"):] if "error:" in output else output
            message = " ".join(line.strip() for line in message.strip().splitlines() if line.strip())
            message = message.replace(tmp, "…").replace("|", "\\|").replace("`", "'")
            note = f" *(simulated: {case.simulated})*" if case.simulated else ""
            rows.append(f"| {case.what}{note} | {code} | `{message[:600]}` |")
    return "\n".join(rows) + "\n"


HEADER = """# Bad inputs: what the toolkit says, and its exit code

Generated by `python tests/bad_inputs.py > docs/bad-inputs.md`; every row is a case of `tests/test_bad_inputs.py`,
run through the real CLI (`toolkit export ...` on a tiny real teacher and SST-2 rows unless the row says otherwise).
Exit codes: 2 = bad input or environment (nothing that looks valid was written), 3 = an artifact failed a check
(moved to `rejected/`), 130 = interrupted (run the same command again to resume). Scratch paths are shown as `…`.

"""

if __name__ == "__main__":
    print(HEADER + markdown_table(), end="")
