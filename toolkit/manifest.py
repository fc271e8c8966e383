"""The bundle's manifest: what each artifact is, how it was made, and every check it passed or failed."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from toolkit.buckets import method_name, run_by_bucket
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
    inputs: list[dict]  # the longest method's (the one a fixed-length app calls)
    outputs: list[dict]
    methods: list[dict] = field(default_factory=list)  # one per length bucket, shortest first: name, length, specs
    details: dict = field(default_factory=dict)  # delegation / quantization / NNAPI coverage summaries
    checks: list[dict] = field(default_factory=list)  # CheckResult.to_json() of host and emulator checks
    emulator: dict | None = None  # emulated-device run: cpu, samples, instructions, latency estimate
    valid: bool = False  # True only once every check for this artifact passed

    def to_json(self) -> dict:
        return asdict(self)

    @property
    def lengths(self) -> list[int]:
        """The sequence lengths this artifact's methods take, shortest first."""
        return artifact_lengths(self.to_json())

    @classmethod
    def for_file(
        cls, artifact, path: Path, bundle_dir: Path, config: StudentConfig, details: dict,
        lengths: Sequence[int] | None = None,
    ) -> "ArtifactRecord":
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
            methods=methods_json(config, lengths or [config.seq_len]),
            details=details,
        )


def artifact_lengths(entry: dict) -> list[int]:
    """The length buckets of a manifest artifact entry, shortest first (one length for an entry without methods)."""
    return [m["sequence_length"] for m in entry.get("methods") or []] or [entry["inputs"][0]["shape"][-1]]


def artifact_method(entry: dict, length: int) -> str | None:
    """The method (signature) an app calls for ``length``; None for an artifact written before length buckets,
    whose one method is called without a name."""
    return method_name(length) if entry.get("methods") else None


def run_on_host(entry: dict, path: Path, inputs: list[np.ndarray]) -> np.ndarray:
    """Logits [N, C] from the runtime the artifact ships for, on the host (ExecuTorch, ai-edge-litert,
    tflite-runtime), every example run in the length bucket an app picks for it (``inputs`` at the longest length)."""
    from toolkit.registry import get_backend

    backend = get_backend(entry["format"])

    def run(arrays: list[np.ndarray], length: int) -> np.ndarray:
        return backend.run_on_host(path, arrays, entry["runtime"], artifact_method(entry, length))

    return run_by_bucket(run, inputs, artifact_lengths(entry))


def describe_file(path: Path, bundle_dir: Path) -> dict:
    """file / sha256 / bytes fields of an artifact record."""
    return {"file": str(path.relative_to(bundle_dir)), "sha256": sha256_file(path), "bytes": path.stat().st_size}


def methods_json(config: StudentConfig, lengths: Sequence[int]) -> list[dict]:
    """The manifest's ``methods``: what an app calls for each length bucket (see toolkit/buckets.py)."""
    return [
        {"name": method_name(n), "sequence_length": n, "inputs": specs_json(input_specs(config, n)),
         "outputs": specs_json(output_specs(config))}
        for n in sorted(lengths)
    ]


def specs_json(specs: list[TensorSpec]) -> list[dict]:
    return [{"name": s.name, "dtype": s.dtype, "shape": list(s.shape)} for s in specs]
