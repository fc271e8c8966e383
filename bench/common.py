"""What every benchmark shares: BENCHMARKS.md sections and a one-line description of the machine."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path

from toolkit.files import PROJECT_ROOT, atomic_write_text

BENCHMARKS_MD = PROJECT_ROOT / "BENCHMARKS.md"
SHARED_SST2 = PROJECT_ROOT.parent / "shared" / "data" / "sst2"


def write_section(name: str, text: str, path: Path = BENCHMARKS_MD) -> None:
    """Replace the ``<!-- name:begin -->`` ... ``<!-- name:end -->`` section of BENCHMARKS.md, or append it."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    section = f"{begin}\n{text.rstrip()}\n{end}"
    current = path.read_text(encoding="utf-8") if path.is_file() else "# Benchmarks\n"
    if begin in current and end in current:
        head, rest = current.split(begin, 1)
        updated = head + section + rest.split(end, 1)[1]
    else:
        updated = current.rstrip() + "\n\n" + section + "\n"
    atomic_write_text(path, updated)


def measure_each(results: Path, section_name: str, arguments: list[str], measure, section,
                 keeps_earlier: bool = False) -> None:
    """For each ``TASK:STUDENT`` argument: ``measure(task, folder)``, replacing that student's earlier result in the
    ``results`` JSON, which is written after each student with BENCHMARKS.md's ``section_name`` section. With
    ``keeps_earlier``, ``measure(task, folder, earlier)`` also gets that earlier result (or None), to keep what it
    already measured."""
    import json

    recorded = json.loads(results.read_text()) if results.is_file() else []
    for argument in arguments:
        task, folder = argument.split(":", 1)
        earlier = next((r for r in recorded if r["student"] == folder), None)
        result = measure(task, folder, earlier) if keeps_earlier else measure(task, folder)
        recorded = [r for r in recorded if r["student"] != folder] + [result]
        results.write_text(json.dumps(recorded, indent=1) + "\n")
        write_section(section_name, section(recorded))


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_line() -> str:
    versions = ", ".join(f"{n} {_version(n)}" for n in ("torch", "executorch", "ai-edge-litert", "onnxruntime"))
    return f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}; {versions}"
