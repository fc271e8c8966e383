"""tflite-runtime 2.14 (the Raspberry Pi OS era runtime) in its own virtual environment.

Why a side environment: tflite-runtime 2.14 is built against numpy 1.x and the toolkit runs numpy 2. The venv is
built on first use under ``<cache>/tflite-runtime-venv`` (about 15 s from a warm pip cache) and driven through a
small worker script: arrays go in and out as ``.npy`` files.

Two questions only this runtime can answer, asked before an artifact ships:

* does it load the model at all? 2.14's op resolver knows fewer op versions than today's converter emits
  (e.g. FULLY_CONNECTED v12+); :func:`require_loadable_by_tflite_runtime` names the op and version it lacks;
* what logits does it give? :func:`run_with_tflite_runtime` (the host reference for a tflite-runtime profile must be
  this runtime: TF's and ai-edge-litert's int8 kernels differ by several quantization steps).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from toolkit.errors import ToolkitError
from toolkit.files import atomic_write_text, build_lock, cache_dir

TFLITE_RUNTIME_VERSION = "2.14.0"
VENV_NAME = "tflite-runtime-venv"

_WORKER = r'''
"""Runs inside the tflite-runtime venv: load | run a model, answer as JSON on stdout."""
import json, sys
import numpy as np
from tflite_runtime.interpreter import Interpreter

command, model_path = sys.argv[1], sys.argv[2]
try:
    interpreter = Interpreter(model_path=model_path, num_threads=1)
    interpreter.allocate_tensors()
    signatures = interpreter.get_signature_list()
    runners = {key: interpreter.get_signature_runner(key) for key in signatures}  # every length bucket loads
except Exception as err:  # the resolver's message names the missing op and version
    print(json.dumps({"loaded": False, "error": str(err)}))
    sys.exit(0)
if command == "load":
    print(json.dumps({"loaded": True}))
    sys.exit(0)
key = sys.argv[4] or next(iter(signatures))
inputs = [np.load(p) for p in sys.argv[5:]]
names = sorted(signatures[key]["inputs"], key=lambda n: int(n.rsplit("_", 1)[-1]))
runner = runners[key]
outputs = []
for i in range(len(inputs[0])):
    result = runner(**{n: a[i : i + 1] for n, a in zip(names, inputs)})
    outputs.append(next(iter(result.values())).reshape(-1))
np.save(sys.argv[3], np.stack(outputs).astype(np.float32))
print(json.dumps({"loaded": True, "samples": len(outputs)}))
'''


class TfliteRuntimeError(ToolkitError, RuntimeError):
    """tflite-runtime 2.14 cannot load or run a model; the message names the op/version when it can."""


def venv_python() -> Path:
    return cache_dir(VENV_NAME) / "bin" / "python"


def ensure_tflite_runtime_venv() -> Path:
    """The venv's python, building the venv once (tflite-runtime==2.14.0 + numpy<2)."""
    python = venv_python()
    marker = cache_dir(VENV_NAME) / ".ready"
    if python.exists() and marker.exists():
        return python
    with build_lock(VENV_NAME):  # the main job builds it in the background while an export may ask for it
        if not (python.exists() and marker.exists()):
            _build_venv(python, marker)
    return python


def _build_venv(python: Path, marker: Path) -> None:
    root = cache_dir(VENV_NAME)
    started = time.monotonic()
    print(f"building the tflite-runtime {TFLITE_RUNTIME_VERSION} venv in {root} (once)...", file=sys.stderr)
    steps = [
        [sys.executable, "-m", "venv", "--clear", str(root)],
        [str(python), "-m", "pip", "install", "--quiet", f"tflite-runtime=={TFLITE_RUNTIME_VERSION}", "numpy<2"],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode:
            raise TfliteRuntimeError(
                f"could not build the tflite-runtime venv ({' '.join(step[:4])} ...):\n{done.stderr[-2000:]}\n"
                f"tflite-runtime {TFLITE_RUNTIME_VERSION} has wheels for CPython 3.9-3.11 on x86_64/aarch64 Linux"
            )
    atomic_write_text(marker, f"built in {time.monotonic() - started:.1f} s\n")


def _worker_path() -> Path:
    path = cache_dir(VENV_NAME) / "worker.py"
    if not path.exists() or path.read_text() != _WORKER:
        atomic_write_text(path, _WORKER)
    return path


def _call_worker(args: list[str]) -> dict:
    python = ensure_tflite_runtime_venv()
    done = subprocess.run([str(python), str(_worker_path()), *args], capture_output=True, text=True)
    if done.returncode:
        raise TfliteRuntimeError(f"tflite-runtime worker failed:\n{done.stderr[-3000:]}")
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise TfliteRuntimeError(f"tflite-runtime worker gave no answer:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return json.loads(lines[-1])


_MISSING_OP = re.compile(r"Didn't find op for builtin opcode '(\w+)' version '(\d+)'")


def require_loadable_by_tflite_runtime(path: Path | str) -> None:
    """Ask tflite-runtime 2.14 itself to load the model; raise naming the op version it lacks."""
    answer = _call_worker(["load", str(path)])
    if answer["loaded"]:
        return
    error = answer["error"]
    missing = _MISSING_OP.findall(error)
    if missing:
        ops = ", ".join(f"{op} v{version}" for op, version in sorted(set(missing)))
        raise TfliteRuntimeError(
            f"tflite-runtime {TFLITE_RUNTIME_VERSION} cannot load {Path(path).name}: it has no kernel for {ops}. "
            "Target ai-edge-litert instead, or choose a recipe/student whose ops the old runtime knows."
        )
    raise TfliteRuntimeError(f"tflite-runtime {TFLITE_RUNTIME_VERSION} cannot load {Path(path).name}: {error}")


def run_with_tflite_runtime(path: Path | str, inputs: list[np.ndarray], signature: str | None = None) -> np.ndarray:
    """Logits [N, C] from tflite-runtime 2.14 running ``signature`` (default: the first), one sample at a time."""
    with tempfile.TemporaryDirectory(prefix="tflrt-") as tmp:
        files = []
        for i, array in enumerate(inputs):
            files.append(str(Path(tmp) / f"input_{i}.npy"))
            np.save(files[-1], np.ascontiguousarray(array))
        out = Path(tmp) / "logits.npy"
        answer = _call_worker(["run", str(path), str(out), signature or "", *files])
        if not answer["loaded"]:
            require_loadable_by_tflite_runtime(path)  # raises with the op/version when that is the cause
            raise TfliteRuntimeError(answer["error"])
        return np.load(out)
