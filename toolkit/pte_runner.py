"""Build and run the C++ ExecuTorch runner (toolkit/runner/pte_runner.cpp) on .pte programs.

Why a C++ runner and not executorch's Python bindings: on ARM the bindings need an aarch64 torch, which PyPI does
not carry as a CPU build, while the aarch64 executorch wheel does ship the runtime as shared libraries. The same
source is built for the host (x86_64, against the installed wheel) and cross-built for aarch64 (against the aarch64
wheel, unpacked under the cache), so host and emulated device run the very same runner code.

Input file format (also used by the emulated LiteRT path): N samples back to back; one sample is every input tensor's
raw little-endian bytes, concatenated in the model's input order. See :func:`write_samples`.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Literal

import numpy as np

from toolkit.files import atomic_path, cache_dir
from toolkit.quiet import detail

Arch = Literal["x86_64", "aarch64"]

RUNNER_DIR = Path(__file__).resolve().parent / "runner"
RUNNER_SOURCES = ("pte_runner.cpp", "marker.h", "build.sh")
EXECUTORCH_VERSION = "1.5.1"
# Where the aarch64 runner finds the executorch libraries on the device, i.e. inside the emulator's rootfs.
DEVICE_EXECUTORCH_LIB = "/opt/executorch/lib"
# The libraries pte_runner links (build.sh); the rootfs carries exactly these.
RUNNER_LIBRARIES = (
    "libexecutorch.so",
    "libexecutorch_threadpool.so",
    "libexecutorch_backend_xnnpack.so",
    "libexecutorch_kernels_optimized.so",
    "libexecutorch_kernels_quantized.so",
)
# pip flags that fetch aarch64 CPython 3.11 wheels on any host, without emulation (Debian bookworm has Python 3.11 and
# glibc 2.36, so every manylinux tag up to 2_34 fits).
AARCH64_WHEEL_FLAGS = (
    "--only-binary=:all:",
    "--python-version", "3.11",
    "--implementation", "cp",
    "--platform", "manylinux_2_17_aarch64",
    "--platform", "manylinux_2_27_aarch64",
    "--platform", "manylinux_2_28_aarch64",
    "--platform", "manylinux_2_34_aarch64",
    "--platform", "manylinux2014_aarch64",
)  # fmt: skip


class RunnerError(RuntimeError):
    """The runner could not be built, or it rejected or failed on a program; the message says which and why."""


def _log(message: str) -> None:
    detail(f"[runner] {message}")  # build steps: the log file under the quiet console


def new_partial_dir(final: Path) -> Path:
    """A fresh, uniquely named folder beside ``final`` to build into: concurrent builders never share one."""
    final.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
    partial.chmod(0o755)  # mkdtemp makes it private; it becomes e.g. the guest's "/"
    return partial


def publish_dir(built: Path, final: Path, complete_marker: str) -> Path:
    """Rename a fully built folder to ``final``. If another process published a complete one first, keep theirs;
    a leftover without ``complete_marker`` (an interrupted build) is replaced."""
    if final.exists() and not (final / complete_marker).exists():
        shutil.rmtree(final)
    try:
        built.rename(final)
    except OSError:  # final appeared meanwhile: another builder won the race
        shutil.rmtree(built, ignore_errors=True)
    return final


def aarch64_wheel_dir() -> Path:
    """Downloaded aarch64 wheels, kept so a rebuilt rootfs or runner needs no network."""
    return cache_dir("emulator", "wheels")


def download_aarch64_wheels(requirements: list[str], *, with_deps: bool = True) -> Path:
    """``pip download`` aarch64 wheels for ``requirements`` into :func:`aarch64_wheel_dir` (a no-op when cached)."""
    dest = aarch64_wheel_dir()
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", *AARCH64_WHEEL_FLAGS,
               "--find-links", str(dest), "-d", str(dest), *requirements]  # fmt: skip
    if not with_deps:
        command.insert(4, "--no-deps")
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RunnerError(
            f"could not download aarch64 wheels {requirements} (pip needs access to PyPI):\n{result.stderr[-2000:]}"
        )
    _log(f"aarch64 wheels {requirements} ready in {time.monotonic() - started:.1f} s ({dest})")
    return dest


def aarch64_executorch_dir() -> Path:
    """The aarch64 executorch wheel's ``include/`` and ``lib/``, unpacked once: what the cross build links against."""
    target = cache_dir("runner") / f"executorch-{EXECUTORCH_VERSION}-aarch64"
    if (target / "lib" / "libexecutorch.so").is_file():
        return target
    wheels = download_aarch64_wheels([f"executorch=={EXECUTORCH_VERSION}"], with_deps=False)
    wheel = next(wheels.glob(f"executorch-{EXECUTORCH_VERSION}-*aarch64.whl"), None)
    if wheel is None:
        raise RunnerError(f"no aarch64 executorch {EXECUTORCH_VERSION} wheel in {wheels} after pip download")
    unpacked = new_partial_dir(target)
    with zipfile.ZipFile(wheel) as archive:
        members = [n for n in archive.namelist() if n.startswith(("executorch/include/", "executorch/lib/lib"))]
        archive.extractall(unpacked, members)
    publish_dir(unpacked / "executorch", target, "lib/libexecutorch.so")
    shutil.rmtree(unpacked, ignore_errors=True)
    return target


def host_executorch_dir() -> Path:
    """The installed (host) executorch package folder, which holds include/ and lib/."""
    try:
        import executorch
    except ImportError as err:
        raise RunnerError(f"executorch is not installed: pip install executorch=={EXECUTORCH_VERSION}") from err
    root = Path(next(iter(executorch.__path__)))
    if not (root / "lib" / "libexecutorch.so").is_file() or not (root / "include").is_dir():
        raise RunnerError(f"{root} has no lib/libexecutorch.so or include/: this executorch wheel ships no C++ runtime")
    return root


def _compiler(arch: Arch) -> str:
    return "g++" if arch == "x86_64" else "aarch64-linux-gnu-g++"


def _source_key(arch: Arch, executorch_dir: Path) -> str:
    """Hash of everything that changes the binary: sources, build script, arch and the executorch libraries."""
    digest = hashlib.sha256(arch.encode())
    for name in RUNNER_SOURCES:
        digest.update(name.encode() + b"\0" + (RUNNER_DIR / name).read_bytes())
    version = importlib.metadata.version("executorch") if arch == "x86_64" else EXECUTORCH_VERSION
    digest.update(f"{executorch_dir}\0{version}".encode())
    return digest.hexdigest()[:16]


def build_runner(arch: Arch) -> Path:
    """Build (or reuse) pte_runner for ``arch``; cached under ``cache_dir("runner")`` by a hash of its sources.

    x86_64 runs on this host against the installed wheel; aarch64 is cross-built to run inside the emulator's rootfs,
    where it loads the executorch libraries from /opt/executorch/lib.
    """
    if arch not in ("x86_64", "aarch64"):
        raise ValueError(f"arch must be 'x86_64' or 'aarch64', not {arch!r}")
    if arch == "x86_64" and platform.machine() != "x86_64":
        raise RunnerError(f"the x86_64 runner builds only on an x86_64 host (this is {platform.machine()})")
    compiler = _compiler(arch)
    if shutil.which(compiler) is None:
        package = "g++" if arch == "x86_64" else "g++-aarch64-linux-gnu"
        raise RunnerError(f"{compiler} not found: install it with `sudo apt-get install -y {package}`")
    executorch_dir = host_executorch_dir() if arch == "x86_64" else aarch64_executorch_dir()
    rpath = str(executorch_dir / "lib") if arch == "x86_64" else DEVICE_EXECUTORCH_LIB
    binary = cache_dir("runner", f"{arch}-{_source_key(arch, executorch_dir)}") / "pte_runner"
    if binary.is_file():
        return binary
    _log(f"building the {arch} runner -> {binary}")
    started = time.monotonic()
    with atomic_path(binary) as tmp:
        command = ["sh", str(RUNNER_DIR / "build.sh"), arch, str(executorch_dir), str(tmp), rpath]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise RunnerError(f"building the {arch} runner failed:\n$ {' '.join(command)}\n{result.stderr[-4000:]}")
        tmp.chmod(0o755)
    _log(f"{arch} runner built in {time.monotonic() - started:.1f} s")
    return binary


def write_samples(inputs: list[np.ndarray], path: Path) -> int:
    """Write ``inputs`` (each with a leading sample axis N) in the runner's sample format; returns N.

    Sample n is ``inputs[0][n:n+1]``, ``inputs[1][n:n+1]``, ... as raw little-endian bytes: the programs have batch 1.
    """
    if not inputs:
        raise ValueError("inputs is empty: give one array per model input, each with a leading sample axis")
    num_samples = len(inputs[0])
    if any(len(a) != num_samples for a in inputs):
        raise ValueError(f"every input needs the same number of samples; got {[len(a) for a in inputs]}")
    arrays = [np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<")) for a in inputs]
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        for n in range(num_samples):
            for array in arrays:
                fh.write(array[n : n + 1].tobytes())
    return num_samples


def read_logits(path: Path, num_samples: int) -> np.ndarray:
    """The runner's output file as float32 logits [N, C]."""
    values = np.fromfile(path, dtype="<f4")
    if num_samples == 0 or values.size % num_samples:
        raise RunnerError(f"{path} holds {values.size} floats, not a whole number for {num_samples} samples")
    return values.reshape(num_samples, -1).astype(np.float32)


def _error_text(result: subprocess.CompletedProcess) -> str:
    """The runner's own error line(s) and input description, without executorch's info logging."""
    lines = (result.stdout + result.stderr).splitlines()
    useful = [line for line in lines if line.startswith(("input ", "pte_runner")) or "error" in line.lower()]
    return "\n".join(useful[-8:] or lines[-10:])


def run_pte_with_runner(
    pte: Path, inputs: list[np.ndarray], runner: Path | None = None, method: str | None = None
) -> np.ndarray:
    """Run ``pte``'s ``method`` (default: its only one) on the host with the C++ runner; ``inputs[i]`` has a leading
    sample axis N. Returns logits [N, C].

    ``runner`` defaults to the host build (:func:`build_runner`). The program itself has batch 1: sample n is
    ``inputs[i][n:n+1]``, in the program's input order.
    """
    pte = Path(pte)
    if not pte.is_file():
        raise FileNotFoundError(f"no .pte file at {pte}")
    runner = runner or build_runner("x86_64")
    with tempfile.TemporaryDirectory(prefix="pte-runner-") as work:
        inputs_path, outputs_path = Path(work, "inputs.bin"), Path(work, "outputs.bin")
        num_samples = write_samples(inputs, inputs_path)
        command = [str(runner), str(pte), str(inputs_path), str(outputs_path), str(num_samples)]
        if method:
            command += ["1", method]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise RunnerError(f"pte_runner failed on {pte} (exit code {result.returncode}):\n{_error_text(result)}")
        return read_logits(outputs_path, num_samples)
