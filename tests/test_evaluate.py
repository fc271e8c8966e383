"""`toolkit evaluate BUNDLE --data FILE` on a real tiny bundle: figures equal an independent computation from the
artifacts, bad files get clear messages (exit 2), --json parses, and --emulate runs a subset on the emulated CPU."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from bundle_fixture import host_inputs
from toolkit.cli import app
from toolkit.data import DEMO_DEV
from toolkit.distill import DistillSettings
from toolkit.evaluate import EvaluateError, evaluate_bundle, macro_f1
from toolkit.pipeline import RunSpec, export_bundle
from toolkit.profiles import load_profile, shipped_profile_paths

ARTIFACTS = [
    {"format": "pte", "recipe": "fp32", "runtime": "executorch", "delegate": "xnnpack"},
    {"format": "tflite", "recipe": "dynamic-int8", "runtime": "ai-edge-litert", "delegate": "xnnpack"},
]


@pytest.fixture(scope="module")
def bundle(tiny_teacher_dir, small_data, tmp_path_factory):
    """One export (no emulation) of a tiny student with a .pte and a .tflite; ~1 min on 2 cores."""
    scratch = tmp_path_factory.mktemp("evaluate")
    data = yaml.safe_load(shipped_profile_paths()["arm64-cpu"].read_text())
    data.update(name="tiny-evaluate", sequence_length=32, sequence_lengths=[16, 32], artifacts=ARTIFACTS)
    data["validation"]["emulator_samples"] = 4
    data["validation"]["tolerances"].update({"max_accuracy_drop_points": 60, "min_argmax_agreement": 0.5})
    (scratch / "profile.yaml").write_text(yaml.safe_dump(data))
    train, dev = small_data
    spec = RunSpec(load_profile(scratch / "profile.yaml"), train, dev, tiny_teacher_dir,
                   DistillSettings(epochs=1, batch_size=32), emulate=False)  # fmt: skip
    export_bundle(spec, scratch / "out", log=lambda _: None)
    return scratch / "out" / "tiny-evaluate"


def dev_rows(start: int, stop: int) -> list[dict]:
    with open(DEMO_DEV, encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
    return rows[start:stop]


def write_tsv(path, rows, columns=("sentence", "label")):
    lines = ["\t".join(columns)] + ["\t".join(str(r[c]) for c in columns) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------------------------
# Independent figures: the bundle's files through the runtimes' own APIs, metrics counted by hand
# ---------------------------------------------------------------------------------------------------------------


def bucket_of(row_mask, lengths: list[int]) -> int:
    """The length an app runs a text at: the shortest bucket holding its tokens, else the longest."""
    tokens = int(np.sum(row_mask))
    return min([n for n in lengths if n >= tokens] or [max(lengths)])


def tflite_logits(path, inputs, lengths: list[int]) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=1)
    rows = []
    for i in range(len(inputs[0])):
        length = bucket_of(inputs[1][i], lengths)
        runner = interpreter.get_signature_runner(f"forward_{length}")
        names = sorted(runner.get_input_details(), key=lambda n: int(n.rsplit("_", 1)[-1]))
        result = runner(**{name: array[i : i + 1, -length:] for name, array in zip(names, inputs)})
        rows.append(next(iter(result.values())).reshape(-1))
    return np.stack(rows)


def pte_logits(path, inputs, lengths: list[int]) -> np.ndarray:
    from executorch.runtime import Runtime

    program = Runtime.get().load_program(str(path))
    rows = []
    for i in range(len(inputs[0])):
        length = bucket_of(inputs[1][i], lengths)
        method = program.load_method(f"forward_{length}")
        sample = [torch.from_numpy(np.ascontiguousarray(a[i : i + 1, -length:])) for a in inputs]
        rows.append(method.execute(sample)[0].numpy())
    return np.concatenate(rows)


def counted_figures(predicted: list[int], truth: list[int], classes: int) -> tuple[float, float, list[list[int]]]:
    """Accuracy, macro-F1 (labels seen in truth or predictions) and the confusion matrix, by counting."""
    confusion = [[0] * classes for _ in range(classes)]
    for t, p in zip(truth, predicted):
        confusion[t][p] += 1
    f1s = []
    for k in range(classes):
        tp = sum(1 for t, p in zip(truth, predicted) if t == k and p == k)
        fp = sum(1 for t, p in zip(truth, predicted) if t != k and p == k)
        fn = sum(1 for t, p in zip(truth, predicted) if t == k and p != k)
        if tp + fp + fn:
            f1s.append(2 * tp / (2 * tp + fp + fn))
    accuracy = sum(1 for t, p in zip(truth, predicted) if t == p) / len(truth)
    return accuracy, sum(f1s) / len(f1s), confusion


def test_figures_equal_an_independent_computation(bundle, tmp_path):
    """Held-out rows labelled by name, in a .jsonl with other column names: every figure recomputed from the files."""
    rows = dev_rows(100, 160)
    names = {"0": "negative", "1": "positive"}
    data = tmp_path / "held_out.jsonl"
    data.write_text("".join(json.dumps({"text": r["sentence"], "gold": names[r["label"]]}) + "\n" for r in rows))
    from toolkit.data import Columns

    result = evaluate_bundle(bundle, data, Columns(text="text", label="gold"), log=lambda _: None)
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert result.labels == ["negative", "positive"] and result.examples == 60
    assert [a.name for a in result.artifacts] == ["pte-fp32", "tflite-dynamic-int8"]

    inputs = host_inputs(bundle, [r["sentence"] for r in rows])
    truth = [int(r["label"]) for r in rows]  # SST-2's 0/1 are the bundle's outputs 0/1 (negative, positive)
    from toolkit.student import eager_logits, load_student

    student = eager_logits(load_student(bundle / "work" / "student"), inputs).argmax(1).tolist()
    for model in [result.student, *result.artifacts]:
        if model.file is None:
            predicted = student
        else:
            entry = next(a for a in manifest["artifacts"] if a["name"] == model.name)
            run = pte_logits if entry["format"] == "pte" else tflite_logits
            lengths = [m["sequence_length"] for m in entry["methods"]]
            predicted = run(bundle / entry["file"], inputs, lengths).argmax(1).tolist()
        accuracy, f1, confusion = counted_figures(predicted, truth, 2)
        assert model.accuracy == pytest.approx(accuracy), model.name
        assert model.macro_f1 == pytest.approx(f1), model.name
        assert model.confusion == confusion, model.name
        agreement = sum(1 for a, b in zip(predicted, student) if a == b) / len(student)
        assert model.agreement_with_student == pytest.approx(agreement), model.name
    assert result.student.agreement_with_student == 1.0


def test_the_export_dev_set_reproduces_the_manifest_host_checks(bundle, tmp_path):
    """On the rows the export checked (SST-2 labels 0/1), evaluate's figures are the export's host-check figures."""
    data = write_tsv(tmp_path / "dev.tsv", dev_rows(0, 64))
    result = evaluate_bundle(bundle, data, log=lambda _: None)
    manifest = json.loads((bundle / "manifest.json").read_text())
    for model in result.artifacts:
        host = next(c for c in next(a for a in manifest["artifacts"] if a["name"] == model.name)["checks"]
                    if c["kind"] == "host")  # fmt: skip
        assert model.accuracy == pytest.approx(host["accuracy"])
        assert model.agreement_with_student == pytest.approx(host["argmax_agreement"])
        assert model.confusion == host["details"]["confusion"]
    assert result.student.accuracy == pytest.approx(manifest["student"]["dev_accuracy"])


def test_macro_f1_leaves_out_labels_never_seen():
    assert macro_f1([[3, 1, 0], [2, 4, 0], [0, 0, 0]]) == pytest.approx((6 / 9 + 8 / 11) / 2)
    assert macro_f1([[0, 5], [0, 5]]) == pytest.approx((0 + 10 / 15) / 2)


# ---------------------------------------------------------------------------------------------------------------
# The command: table, --json, bad inputs
# ---------------------------------------------------------------------------------------------------------------


def invoke(*args):
    return CliRunner().invoke(app, ["evaluate", *map(str, args)], env={"COLUMNS": "80", "NO_COLOR": "1"})


def test_console_table_is_complete_in_80_columns(bundle, tmp_path):
    result = invoke(bundle, "--data", write_tsv(tmp_path / "d.tsv", dev_rows(0, 40)))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    table = lines[[i for i, line in enumerate(lines) if line.startswith("model ")][0]:]
    assert all(len(line) <= 80 for line in table), result.output
    assert "…" not in result.output
    for name in ("student (fp32, eager)", "pte-fp32", "tflite-dynamic-int8", "macro-F1", "confusion of student"):
        assert name in result.output, result.output
    same = next((line for line in lines if line.startswith("same confusion as the fp32 student:")), "")
    for name in ("pte-fp32", "tflite-dynamic-int8"):  # its own matrix, or named as equal to the student's
        assert f"confusion of {name}" in result.output or name in same, result.output
    row = next(line for line in table if line.startswith("tflite-dynamic-int8 "))
    assert "ai-edge-litert" in row and len(row.split()) == 5


def test_json_output_parses(bundle, tmp_path):
    result = invoke(bundle, "--data", write_tsv(tmp_path / "d.tsv", dev_rows(0, 30)), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["examples"] == 30 and report["labels"] == ["negative", "positive"]
    assert {a["name"] for a in report["artifacts"]} == {"pte-fp32", "tflite-dynamic-int8"}
    for model in [report["student"], *report["artifacts"]]:
        assert 0 <= model["accuracy"] <= 1 and 0 <= model["macro_f1"] <= 1 and model["emulated"] is None
        assert sum(map(sum, model["confusion"])) == 30


def test_bad_inputs_are_refused_clearly(bundle, tmp_path):
    good = write_tsv(tmp_path / "good.tsv", dev_rows(0, 10))
    rows = dev_rows(0, 10)
    rows[3]["label"] = "neutral"
    cases = [
        ([bundle, "--data", tmp_path / "missing.tsv"], "no such data file"),
        ([bundle, "--data", good, "--text-column", "text"], "no column(s) ['text'] in the header"),
        ([bundle, "--data", write_tsv(tmp_path / "neutral.tsv", rows)], "labels ['neutral'] are not labels of this bundle"),
        ([bundle, "--data", good, "--pair-column", "label"], "this bundle classifies single texts"),
        ([tmp_path, "--data", good], "no manifest.json"),
        ([bundle, "--data", good, "--emulate", "-1"], "--emulate takes a number of rows"),
    ]
    for args, expected in cases:
        result = invoke(*args)
        assert result.exit_code == 2, (args, result.output)
        assert "error:" in result.output and expected in " ".join(result.output.split()), (args, result.output)
        assert "Traceback" not in result.output
    with pytest.raises(EvaluateError, match="labels \\['neutral'\\]"):
        evaluate_bundle(bundle, tmp_path / "neutral.tsv", log=lambda _: None)


def test_a_tampered_artifact_is_refused(bundle, tmp_path):
    copy = tmp_path / "copy"
    import shutil

    shutil.copytree(bundle, copy)
    model = next((copy / "models").glob("*.tflite"))
    model.write_bytes(model.read_bytes()[:-16] + bytes(16))
    result = invoke(copy, "--data", write_tsv(tmp_path / "d.tsv", dev_rows(0, 5)))
    assert result.exit_code == 2 and "does not match the manifest's sha256" in " ".join(result.output.split())


@pytest.mark.emulator
def test_emulate_runs_a_subset_on_the_emulated_cpu(bundle, tmp_path):
    result = invoke(bundle, "--data", write_tsv(tmp_path / "d.tsv", dev_rows(0, 20)), "--emulate", "3", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    for model in report["artifacts"]:
        emulated = model["emulated"]
        assert emulated["cpu"] == "cortex-a76" and emulated["samples"] == 3 and emulated["passed"], emulated
        assert emulated["agreement_with_host"] == 1.0 and emulated["instructions_per_inference"] > 0
