"""Check a bundle's ``manifest.json`` against ``schema/manifest.schema.json`` and say exactly what is wrong.

The JSON schema (draft 2020-12) is the contract apps and tools read; it catches missing fields, wrong types, unknown
formats/runtimes/delegates and malformed digests. A few facts span several fields and cannot be written in the
schema (an artifact marked valid with a failed check, duplicate artifact names); :func:`validate_manifest` checks
those too, so one call reports every problem, each with its JSON path (``$.artifacts[1].sha256``).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from toolkit.errors import ToolkitError

SCHEMA_PATH = Path(__file__).resolve().parent / "schema" / "manifest.schema.json"


class ManifestError(ToolkitError, ValueError):
    """A manifest that does not match the schema; ``errors`` holds one ``"$.path: problem"`` line per violation."""

    def __init__(self, errors: list[str], source: str = "manifest") -> None:
        self.errors = errors
        super().__init__(f"{source}: {len(errors)} problem(s)\n" + "\n".join(f"  {e}" for e in errors))


@lru_cache(maxsize=1)
def load_schema() -> dict:
    """The manifest schema as a dict (read once)."""
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


@lru_cache(maxsize=1)
def _validator() -> Draft202012Validator:
    schema = load_schema()
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def _describe(error: ValidationError) -> list[str]:
    """One line per problem; a missing field is reported at its own path, not its parent's."""
    if error.validator == "required" and isinstance(error.instance, dict):
        return [f"{error.json_path}.{name}: required field is missing"
                for name in error.validator_value if name not in error.instance]  # fmt: skip
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = set(error.schema.get("properties", {}))
        return [f"{error.json_path}.{name}: unknown field" for name in error.instance if name not in allowed]
    if error.validator == "not" and isinstance(error.validator_value, dict) and "const" in error.validator_value:
        return [f"{error.json_path}: {error.instance!r} is not allowed here"]
    return [f"{error.json_path}: {error.message}"]


def _document_order(error: ValidationError) -> list[tuple[int, int | str]]:
    """Sort key: list indexes compare as numbers, so artifacts[2] comes before artifacts[10]."""
    return [(0, p) if isinstance(p, int) else (1, p) for p in error.absolute_path]


def schema_errors(manifest: Any) -> list[str]:
    """Every schema violation as ``"$.path: problem"``, in document order, without duplicates."""
    errors = sorted(_validator().iter_errors(manifest), key=_document_order)
    lines: list[str] = []
    for error in errors:
        lines.extend(line for line in _describe(error) if line not in lines)
    return lines


def consistency_errors(manifest: dict) -> list[str]:
    """Facts across fields the schema cannot express. Assumes the manifest already matches the schema."""
    errors = []
    names = [a["name"] for a in manifest["artifacts"]]
    for i, name in enumerate(names):
        if names.index(name) != i:
            errors.append(f"$.artifacts[{i}].name: '{name}' is listed twice")
    for i, artifact in enumerate(manifest["artifacts"]):
        failed = [c["name"] for c in artifact["checks"] if not c["passed"]]
        if artifact["valid"] and (failed or not artifact["checks"]):
            why = f"checks failed: {failed}" if failed else "it has no checks"
            errors.append(f"$.artifacts[{i}].valid: true but {why}")
    all_valid = all(a["valid"] for a in manifest["artifacts"])
    if manifest["validation"]["passed"] and not all_valid:
        errors.append("$.validation.passed: true but some artifacts are not valid")
    if manifest["student"]["config"]["labels"] and manifest["student"]["config"]["labels"] != manifest["labels"]:
        errors.append("$.student.config.labels: differ from $.labels")
    return errors


def validate_manifest(manifest: Any, source: str = "manifest") -> None:
    """Raise :class:`ManifestError` listing every violation (schema first, then cross-field facts)."""
    errors = schema_errors(manifest)
    if not errors:
        errors = consistency_errors(manifest)
    if errors:
        raise ManifestError(errors, source)


def load_manifest(path: Path | str) -> dict:
    """Read and validate a ``manifest.json``; errors name the file."""
    path = Path(path)
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ManifestError([f"$: not valid JSON: {err}"], str(path)) from err
    validate_manifest(manifest, str(path))
    return manifest
