"""The bundle's manifest: what each artifact is, how it was made, and every check it passed or failed."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from toolkit.files import sha256_file
from toolkit.student import StudentConfig, TensorSpec, input_specs, output_specs


@dataclass
class ArtifactRecord:
    """One emitted model file and everything a user or app needs to trust and call it."""

    name: str  # e.g. "pte-int8-dynamic": format + recipe, unique within a profile
    file: str  # path relative to the bundle folder
    format: str  # "pte" | "tflite"
    recipe: str
    runtime: str
    delegate: str
    sha256: str
    bytes: int
    inputs: list[dict]
    outputs: list[dict]
    details: dict = field(default_factory=dict)  # delegation / quantization / NNAPI coverage summaries
    checks: list[dict] = field(default_factory=list)  # CheckResult.to_json() of host and emulator checks
    emulator: dict | None = None  # emulated-device run: cpu, samples, instructions, latency estimate
    valid: bool = False  # True only once every check for this artifact passed

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def for_file(cls, artifact, path: Path, bundle_dir: Path, config: StudentConfig, details: dict) -> "ArtifactRecord":
        """The record of a freshly exported file (not yet valid): what every exporter fills in the same way."""
        return cls(
            name=artifact.name,
            **describe_file(path, bundle_dir),
            format=artifact.format,
            recipe=artifact.recipe,
            runtime=artifact.runtime,
            delegate=artifact.delegate,
            inputs=specs_json(input_specs(config)),
            outputs=specs_json(output_specs(config)),
            details=details,
        )


def describe_file(path: Path, bundle_dir: Path) -> dict:
    """file / sha256 / bytes fields of an artifact record."""
    return {"file": str(path.relative_to(bundle_dir)), "sha256": sha256_file(path), "bytes": path.stat().st_size}


def specs_json(specs: list[TensorSpec]) -> list[dict]:
    return [{"name": s.name, "dtype": s.dtype, "shape": list(s.shape)} for s in specs]
