"""The fixture manifest validates; each kind of malformed manifest is refused with the JSON path of the problem."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Callable

import pytest
from jsonschema import Draft202012Validator

from toolkit.manifest_schema import ManifestError, load_manifest, load_schema, validate_manifest
from toolkit.profiles import list_profiles

SAMPLE = Path(__file__).parent / "data" / "sample_manifest.json"


@pytest.fixture()
def manifest() -> dict:
    return json.loads(SAMPLE.read_text(encoding="utf-8"))


def errors_of(manifest: dict) -> list[str]:
    with pytest.raises(ManifestError) as info:
        validate_manifest(manifest)
    return info.value.errors


def test_schema_is_valid_draft_2020_12():
    schema = load_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


def test_fixture_validates():
    manifest = load_manifest(SAMPLE)
    assert {a["format"] for a in manifest["artifacts"]} == {"pte", "tflite"}


def test_every_shipped_profile_fits_the_profile_section(manifest):
    """The schema's profile section matches toolkit.profiles, so a real dump always validates."""
    for profile in list_profiles():
        manifest["profile"] = profile.model_dump(mode="json")
        validate_manifest(manifest)


def test_optional_and_free_form_parts_accepted(manifest):
    manifest["artifacts"][0]["emulator"] = None  # not run under emulation
    manifest["artifacts"][0]["details"]["anything"] = {"nested": [1, 2]}
    manifest["artifacts"][0]["checks"][0]["details"]["extra"] = "free-form"
    manifest["artifacts"][0]["checks"][0]["accuracy"] = None  # no labels
    manifest["student"]["distill"]["settings"] = {"epochs": 8}
    manifest["stages"]["tokenizer"] = {"seconds": 1.0}
    validate_manifest(manifest)


def test_optional_selftest_entry(manifest):
    """``selftest`` (toolkit/selftest.py) is optional; when present its digest and counts are checked."""
    validate_manifest(manifest)  # absent: older bundles stay valid
    entry = {"file": "selftest.json", "sha256": "a" * 64, "examples": 4, "artifacts": ["pte-fp32", "tflite-fp32"]}
    manifest["selftest"] = entry
    validate_manifest(manifest)
    for field, value, expected in [("sha256", "abc", "$.selftest.sha256: 'abc' does not match"),
                                   ("examples", -1, "$.selftest.examples: -1 is less than"),
                                   ("extra", 1, "$.selftest.extra: unknown field")]:  # fmt: skip
        manifest["selftest"] = {**entry, field: value}
        assert any(expected in e for e in errors_of(manifest)), errors_of(manifest)
    manifest["selftest"] = {k: v for k, v in entry.items() if k != "sha256"}
    assert "$.selftest.sha256: required field is missing" in errors_of(manifest)


def _set(path: str, value: Any) -> Callable[[dict], None]:
    """A mutation setting ``a.b.0.c`` (list indexes as numbers) to ``value``."""

    def mutate(m: dict) -> None:
        *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
        target = m
        for p in parents:
            target = target[p]
        target[last] = value

    return mutate


def _delete(path: str) -> Callable[[dict], None]:
    def mutate(m: dict) -> None:
        *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
        target = m
        for p in parents:
            target = target[p]
        del target[last]

    return mutate


MALFORMED = [
    ("missing top-level field", _delete("teacher"), "$.teacher: required field is missing"),
    ("missing nested field", _delete("teacher.fingerprint"), "$.teacher.fingerprint: required field is missing"),
    ("missing artifact field", _delete("artifacts.1.sha256"), "$.artifacts[1].sha256: required field is missing"),
    ("missing check field", _delete("artifacts.0.checks.1.passed"), "$.artifacts[0].checks[1].passed: required"),
    ("unknown field", _set("artifact_count", 3), "$.artifact_count: unknown field"),
    ("bad format", _set("artifacts.0.format", "onnx"), "$.artifacts[0].format: 'onnx' is not one of"),
    ("bad runtime", _set("artifacts.1.runtime", "onnxruntime"), "$.artifacts[1].runtime:"),
    ("bad delegate", _set("artifacts.0.delegate", "gpu"), "$.artifacts[0].delegate: 'gpu' is not one of"),
    ("bad check kind", _set("artifacts.0.checks.0.kind", "device"), "$.artifacts[0].checks[0].kind:"),
    ("pte on litert", _set("artifacts.2.runtime", "ai-edge-litert"), "$.artifacts[2].runtime: 'executorch' was"),
    ("short sha256", _set("teacher.fingerprint", "abc123"), "$.teacher.fingerprint: 'abc123' does not match"),
    ("upper-case sha256", _set("artifacts.1.sha256", "A" * 64), "$.artifacts[1].sha256:"),
    ("string bytes", _set("artifacts.2.bytes", "6893568"), "$.artifacts[2].bytes: '6893568' is not of type"),
    ("string accuracy", _set("artifacts.0.checks.0.accuracy", "0.89"), "$.artifacts[0].checks[0].accuracy:"),
    ("accuracy above 1", _set("student.dev_accuracy", 89.45), "$.student.dev_accuracy: 89.45 is greater than"),
    ("float count", _set("artifacts.0.emulator.instructions_per_inference", 1.5), "instructions_per_inference:"),
    ("emulator as text", _set("artifacts.0.emulator", "cortex-a76"), "$.artifacts[0].emulator: 'cortex-a76' is not"),
    ("qemu max", _set("artifacts.0.emulator.cpu", "max"), "$.artifacts[0].emulator.cpu: 'max' is not allowed"),
    ("typed details field", _set("artifacts.0.details.nnapi_coverage.share", "91%"),
     "$.artifacts[0].details.nnapi_coverage.share: '91%' is not of type"),
    ("confusion of floats", _set("artifacts.0.checks.0.details.confusion", [[1.5, 2], [3, 4]]),
     "$.artifacts[0].checks[0].details.confusion[0][0]"),
    ("silent failure", _set("artifacts.2.checks.0.failures", []), "$.artifacts[2].checks[0].failures: [] should be"),
    ("bad created time", _set("created", "22/11/2026"), "$.created: '22/11/2026' does not match"),
    ("wrong schema version", _set("schema_version", 2), "$.schema_version: 1 was expected"),
    ("bad tensor dtype", _set("artifacts.0.inputs.0.dtype", "int"), "$.artifacts[0].inputs[0].dtype:"),
]  # fmt: skip


@pytest.mark.parametrize("mutate,expected", [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_malformed_manifest_rejected_with_path(manifest, mutate, expected):
    mutate(manifest)
    errors = errors_of(manifest)
    assert any(expected in e for e in errors), errors


def test_every_violation_listed_in_document_order(manifest):
    bad = copy.deepcopy(manifest)
    _set("artifacts.2.bytes", -1)(bad)
    _set("artifacts.0.format", "onnx")(bad)
    _delete("tokenizer.sha256")(bad)
    with pytest.raises(ManifestError) as info:
        validate_manifest(bad, "bundle/manifest.json")
    paths = [e.split(":")[0] for e in info.value.errors]
    assert paths == ["$.artifacts[0].format", "$.artifacts[2].bytes", "$.tokenizer.sha256"]
    assert str(info.value).startswith("bundle/manifest.json: 3 problem(s)")


@pytest.mark.parametrize(
    "mutate,expected",
    [
        (_set("artifacts.2.valid", True), "$.artifacts[2].valid: true but checks failed"),
        (_set("validation.passed", True), "$.validation.passed: true but some artifacts are not valid"),
        (_set("artifacts.1.name", "tflite-full-int8"), "$.artifacts[1].name: 'tflite-full-int8' is listed twice"),
        (_set("labels", ["neg", "pos"]), "$.student.config.labels: differ from $.labels"),
    ],
    ids=["valid-with-failed-check", "passed-with-invalid-artifact", "duplicate-name", "labels-differ"],
)
def test_cross_field_facts_checked(manifest, mutate, expected):
    mutate(manifest)
    assert expected in "\n".join(errors_of(manifest))


def test_load_manifest_names_the_file(tmp_path):
    broken = tmp_path / "manifest.json"
    broken.write_text("{not json", encoding="utf-8")
    with pytest.raises(ManifestError, match=r"(?s)manifest\.json: 1 problem.*not valid JSON"):
        load_manifest(broken)
    broken.write_text(json.dumps({"schema_version": 1}), encoding="utf-8")
    with pytest.raises(ManifestError, match=r"\$\.artifacts: required field is missing"):
        load_manifest(broken)
