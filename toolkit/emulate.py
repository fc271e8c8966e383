"""The emulated ARM device: run .pte and .tflite artifacts on a profile's CPU under qemu user-mode.

What "the device" is here:
- qemu-aarch64 (the DYNAMIC build from Debian's qemu-user: the static one cannot load plugins) with
  ``-cpu <device.qemu_cpu>``; never ``max``, which exposes features no real device has (SVE, ...).
- A Debian bookworm arm64 root filesystem (``mmdebstrap --variant=extract``, no emulation needed to build it) with the
  guest's python3, the aarch64 wheels of ai-edge-litert and of tflite-runtime (each in its own site folder: they need
  different numpy majors) and the executorch shared libraries the cross-built pte_runner loads.
- A per-device view of that rootfs whose /proc/cpuinfo and /sys/devices/system/cpu describe the profile's CPU (part
  number, features, cores, clock). qemu's ``-L ROOT`` looks up every absolute path the guest opens under ROOT first,
  and in qemu 7.2 that includes /proc/cpuinfo, so neither root, chroot, bind mounts nor binfmt_misc are needed.
  Without it the guest sees the host's x86 cpuinfo: XNNPACK's cpuinfo then crashes or picks the wrong kernels.
- Instruction counting: a TCG plugin (toolkit/runner/insn_count_plugin.c) counts the guest instructions executed
  between the marker syscalls the runner makes around each inference. Counts repeat to the instruction; they are
  instructions, not cycles: :func:`estimate_latency_ms` turns them into a stated-assumption latency estimate.
- Cycle estimate (``profile_cycles=True``): the same plugin also records the last inference's translated blocks with
  their execution counts per thread and simulates the profile's data caches; :func:`estimate_cycles` times the
  blocks with llvm-mca (toolkit/cycles.py). Still an estimate, calibrated against published device timings.

``python -m toolkit.emulate`` checks the setup and builds everything (rootfs, plugin, runner) ahead of time.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from tqdm import tqdm

from toolkit.cycles import CycleEstimate, WindowProfile, estimate_from_profile, plugin_cache_args, read_profile
from toolkit.errors import ToolkitError
from toolkit.files import atomic_path, build_lock, cache_dir, sha256_file
from toolkit.profiles import Device
from toolkit.pte_runner import (
    DEVICE_EXECUTORCH_LIB,
    RUNNER_DIR,
    RUNNER_LIBRARIES,
    aarch64_executorch_dir,
    aarch64_wheel_dir,
    build_runner,
    download_aarch64_wheels,
    new_partial_dir,
    publish_dir,
    read_logits,
    write_samples,
)
from toolkit.quiet import detail, transient_bar_position

TfliteRuntime = Literal["ai-edge-litert", "tflite-runtime"]

QEMU = "qemu-aarch64"
INSTALL_SCRIPT = "sudo scripts/install-emulator-deps.sh"
# qemu 7.2's plugin API header, which Debian packages nowhere: install-emulator-deps.sh copies it out of Debian's qemu
# source package (GPL-2.0-or-later) to this path. A plugin must be built against its own qemu's API version.
QEMU_PLUGIN_HEADER = Path(os.environ.get("XLNET_EDGE_QEMU_PLUGIN_H", "/usr/local/include/qemu-plugin/qemu-plugin.h"))

DEBIAN_SUITE = "bookworm"  # python3.11 (matches the cp311 wheels) and glibc 2.36 (tflite-runtime 2.14 needs >= 2.34)
ROOTFS_PACKAGES = ("python3", "libstdc++6", "libgcc-s1", "libgomp1")
# Each runtime gets its own site folder in the rootfs: tflite-runtime 2.14 needs numpy < 2, ai-edge-litert numpy 2.
RUNTIME_SITES: dict[str, tuple[str, list[str]]] = {
    "ai-edge-litert": ("/opt/ai-edge-litert/site", ["ai-edge-litert==2.3.0", "numpy>=2,<3"]),
    "tflite-runtime": ("/opt/tflite-runtime/site", ["tflite-runtime==2.14.0", "numpy<2"]),
}

# Arm's MIDR fields for the cores qemu 7.2 emulates: (part number, variant, revision). Implementer 0x41 = Arm.
ARM_IMPLEMENTER = 0x41
CPU_PARTS: dict[str, tuple[int, int, int]] = {
    "cortex-a35": (0xD04, 0x0, 2),
    "cortex-a53": (0xD03, 0x0, 4),
    "cortex-a57": (0xD07, 0x1, 3),
    "cortex-a72": (0xD08, 0x0, 3),  # Raspberry Pi 4 (BCM2711): r0p3
    "cortex-a76": (0xD0B, 0x4, 1),  # Raspberry Pi 5 (BCM2712): r4p1
    "neoverse-n1": (0xD0C, 0x3, 1),
}


class EmulatorSetupError(ToolkitError, RuntimeError):
    """Something the emulator needs is missing; the message lists each thing with the command that installs it."""


class EmulatorRunError(RuntimeError):
    """The emulated run failed; the message carries the guest's error output."""


@dataclass
class EmulatedRun:
    """The result of running one artifact on the emulated device."""

    logits: np.ndarray  # [N, C] float32
    # One count per sample, empty when not counted. The first includes one-time work (XNNPACK sets up on the first
    # execute), so steady-state figures should use the later ones, e.g. the median.
    instructions_per_inference: list[int] = field(default_factory=list)
    wall_seconds: float = 0.0  # the whole emulated process, start-up included
    cpu: str = ""  # qemu -cpu name
    runtime: str = ""  # executorch, ai-edge-litert or tflite-runtime
    threads: int = 1  # inference threads the runtime was given
    profile: WindowProfile | None = None  # the last inference's blocks and cache statistics (profile_cycles=True)


def _log(message: str) -> None:
    detail(f"[emulator] {message}")  # set-up steps: the log (prepare_device says one line on the console)


# --------------------------------------------------------------------------------------------------------- setup


def _missing_tools() -> list[str]:
    """Host tools the emulator needs, each missing one with the command that installs it."""
    missing = []
    qemu = shutil.which(QEMU)
    if qemu is None:
        missing.append(f"{QEMU} (dynamic qemu user-mode emulator): sudo apt-get install -y qemu-user")
    else:
        help_text = subprocess.run([qemu, "-h"], capture_output=True, text=True).stdout
        if "-plugin" not in help_text:
            missing.append(f"{qemu} cannot load plugins (a static build?): sudo apt-get install -y qemu-user")
    for tool, package in [("mmdebstrap", "mmdebstrap"), ("gcc", "gcc"), ("g++", "g++"),
                          ("aarch64-linux-gnu-g++", "g++-aarch64-linux-gnu")]:  # fmt: skip
        if shutil.which(tool) is None:
            missing.append(f"{tool}: sudo apt-get install -y {package}")
    if not QEMU_PLUGIN_HEADER.is_file():
        missing.append(
            f"{QEMU_PLUGIN_HEADER} (qemu's plugin API header, from Debian's qemu source package): {INSTALL_SCRIPT}"
        )
    return missing


def check_setup() -> list[str]:
    """Everything missing for emulation, each entry naming the thing and the exact command that provides it.

    binfmt_misc is not needed: qemu is always started explicitly. An empty list means ready.
    """
    missing = _missing_tools()
    if not _rootfs_ready(_rootfs_path()):
        missing.append(f"the arm64 rootfs ({_rootfs_path()}): python -m toolkit.emulate  (~20 s, cached)")
    return missing


def _setup_error(missing: list[str]) -> EmulatorSetupError:
    lines = "\n".join(f"  - {m}" for m in missing)
    return EmulatorSetupError(
        f"the ARM emulator is not set up; missing:\n{lines}\nor install all of it: {INSTALL_SCRIPT}"
    )


def require_setup() -> None:
    """Raise :class:`EmulatorSetupError` listing what is missing and how to install it."""
    missing = check_setup()
    if missing:
        raise _setup_error(missing)


def require_tools() -> None:
    """Raise :class:`EmulatorSetupError` if a host tool is missing (the rootfs can still be built later)."""
    missing = _missing_tools()
    if missing:
        raise _setup_error(missing)


def prepare_device() -> Path:
    """What the main job calls: the host tools must be installed; the rootfs, the instruction-count plugin and the
    ExecuTorch runners (host and device builds) are built here once if not cached, before the emulator stage runs
    artifacts side by side (which would otherwise each build them)."""
    require_tools()
    with build_lock("emulated-device"):  # the main job starts this in the background; a stage waits for it here
        return _prepare_device()


def _prepare_device() -> Path:
    started = time.time()
    if not _rootfs_ready(_rootfs_path()):
        print("[emulator] first run: building the emulated device (a Debian arm64 root filesystem from ~30 MB of "
              ".debs, the runtimes, the ExecuTorch runners; once, cached in .cache/emulator)", file=sys.stderr)
    root = ensure_rootfs()
    build_insn_plugin()
    for arch in ("x86_64", "aarch64"):
        build_runner(arch)
    if time.time() - started > 2:
        print(f"[emulator] device ready in {time.time() - started:.0f} s", file=sys.stderr)
    return root


# -------------------------------------------------------------------------------------------------------- rootfs


def _rootfs_recipe() -> dict:
    return {
        "suite": DEBIAN_SUITE,
        "packages": list(ROOTFS_PACKAGES),
        "sites": RUNTIME_SITES,
        "executorch_libs": list(RUNNER_LIBRARIES),
        "executorch_lib_dir": DEVICE_EXECUTORCH_LIB,
        "recipe_version": 1,  # bump when ensure_rootfs changes what it puts in the tree
    }


def _rootfs_path() -> Path:
    """Cache folder of the rootfs, keyed by its recipe so a changed recipe builds a new one."""
    key = hashlib.sha256(json.dumps(_rootfs_recipe(), sort_keys=True).encode()).hexdigest()[:12]
    return cache_dir("emulator") / f"rootfs-{DEBIAN_SUITE}-arm64-{key}"


def _rootfs_ready(root: Path) -> bool:
    return (root / ".complete").is_file()


def _pip_install_aarch64(site: Path, requirements: list[str]) -> None:
    """Install aarch64 wheels into ``site`` on this (x86) host, without emulation: pure file extraction."""
    download_aarch64_wheels(requirements)
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-index",
               "--find-links", str(aarch64_wheel_dir()), "--no-compile", "--target", str(site),
               "--platform", "manylinux_2_17_aarch64", "--platform", "manylinux_2_27_aarch64",
               "--platform", "manylinux_2_28_aarch64", "--platform", "manylinux_2_34_aarch64",
               "--platform", "manylinux2014_aarch64", "--python-version", "3.11", "--implementation", "cp",
               "--only-binary=:all:", *requirements]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise EmulatorSetupError(f"installing {requirements} into the rootfs failed:\n{result.stderr[-2000:]}")


def ensure_rootfs() -> Path:
    """The cached arm64 Debian rootfs with python3, both LiteRT runtimes and the executorch libraries; built once.

    Built in a temporary folder and renamed into place, so an interrupted build never leaves a half rootfs.
    """
    root = _rootfs_path()
    if _rootfs_ready(root):
        return root
    if shutil.which("mmdebstrap") is None:
        raise _setup_error(["mmdebstrap: sudo apt-get install -y mmdebstrap"])
    partial = new_partial_dir(root)
    started = time.monotonic()
    _log(f"building the arm64 {DEBIAN_SUITE} rootfs in {root} (downloads ~30 MB of .debs and ~50 MB of wheels)")
    try:
        _build_rootfs(partial)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    publish_dir(partial, root, ".complete")
    _log(f"rootfs ready in {time.monotonic() - started:.1f} s: {root}")
    return root


def _build_rootfs(tree: Path) -> None:
    step = time.monotonic()
    command = ["mmdebstrap", "--quiet", "--arch=arm64", "--variant=extract",
               f"--include={','.join(ROOTFS_PACKAGES)}", DEBIAN_SUITE, str(tree)]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise EmulatorSetupError(f"mmdebstrap failed (it needs the Debian mirror):\n$ {' '.join(command)}\n"
                                 f"{result.stderr[-3000:]}")  # fmt: skip
    _log(f"debian packages extracted in {time.monotonic() - step:.1f} s")

    for runtime, (site, requirements) in RUNTIME_SITES.items():
        step = time.monotonic()
        _pip_install_aarch64(tree / site.lstrip("/"), requirements)
        _log(f"{runtime} installed into {site} in {time.monotonic() - step:.1f} s")

    lib_dir = tree / DEVICE_EXECUTORCH_LIB.lstrip("/")
    lib_dir.mkdir(parents=True)
    for name in RUNNER_LIBRARIES:
        shutil.copy2(aarch64_executorch_dir() / "lib" / name, lib_dir / name)
    (tree / ".complete").write_text(json.dumps(_rootfs_recipe(), indent=2) + "\n")


# ------------------------------------------------------------------------------------------------ the fake CPU


def _cpu_list(cores: int) -> str:
    return "0" if cores == 1 else f"0-{cores - 1}"


def fake_cpuinfo(device: Device) -> str:
    """/proc/cpuinfo as an arm64 Linux kernel prints it for ``device``'s cores."""
    if device.qemu_cpu not in CPU_PARTS:
        raise ValueError(f"no CPU part number known for qemu cpu '{device.qemu_cpu}'; add it to CPU_PARTS")
    part, variant, revision = CPU_PARTS[device.qemu_cpu]
    blocks = [
        f"processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: {' '.join(device.features)}\n"
        f"CPU implementer\t: 0x{ARM_IMPLEMENTER:02x}\nCPU architecture: 8\nCPU variant\t: 0x{variant:x}\n"
        f"CPU part\t: 0x{part:03x}\nCPU revision\t: {revision}\n"
        for i in range(device.cores)
    ]
    return "\n".join(blocks) + "\n"


def fake_sys_cpu_files(device: Device) -> dict[str, str]:
    """The /sys/devices/system/cpu files cpuinfo (XNNPACK, LiteRT) and glibc read, as relative path -> content.

    One cluster of identical cores: big.LITTLE is not modelled. Every file a reader looks for must exist here, or
    qemu falls back to the host's /sys and the guest sees x86 topology.
    """
    part, variant, revision = CPU_PARTS[device.qemu_cpu]
    midr = (ARM_IMPLEMENTER << 24) | (variant << 20) | (0xF << 16) | (part << 4) | revision
    all_cpus = _cpu_list(device.cores)
    khz = str(int(device.clock_ghz * 1_000_000))
    files = {name: all_cpus + "\n" for name in ("possible", "present", "online")}
    files["kernel_max"] = f"{device.cores - 1}\n"
    files["offline"] = "\n"
    for i in range(device.cores):
        cpu = f"cpu{i}"
        files |= {
            f"{cpu}/online": "1\n",
            f"{cpu}/cpufreq/cpuinfo_max_freq": khz + "\n",
            f"{cpu}/cpufreq/cpuinfo_min_freq": khz + "\n",  # unknown: the profile states one clock
            f"{cpu}/regs/identification/midr_el1": f"0x{midr:016x}\n",
            f"{cpu}/topology/physical_package_id": "0\n",
            f"{cpu}/topology/cluster_id": "0\n",
            f"{cpu}/topology/core_id": f"{i}\n",
            f"{cpu}/topology/cluster_cpus_list": all_cpus + "\n",
            f"{cpu}/topology/core_siblings_list": all_cpus + "\n",
            f"{cpu}/topology/package_cpus_list": all_cpus + "\n",
            f"{cpu}/topology/thread_siblings_list": f"{i}\n",
            f"{cpu}/topology/core_cpus_list": f"{i}\n",
        }
    return files


def device_root(device: Device) -> Path:
    """A view of the rootfs for one device: symlinks to the rootfs plus that device's /proc/cpuinfo and /sys cpu files.

    This is the folder passed to ``qemu-aarch64 -L``. Cheap to make (no copy), cached per device description.
    """
    rootfs = ensure_rootfs()
    key = hashlib.sha256(f"{rootfs}\n{device.model_dump_json()}".encode()).hexdigest()[:12]
    view = cache_dir("emulator", "devices") / f"{device.qemu_cpu}-{key}"
    if (view / ".complete").is_file():
        return view
    cpuinfo, sys_files = fake_cpuinfo(device), fake_sys_cpu_files(device)
    partial = new_partial_dir(view)
    for entry in rootfs.iterdir():
        if entry.name not in ("proc", "sys", ".complete"):
            (partial / entry.name).symlink_to(entry)
    (partial / "proc").mkdir()
    (partial / "proc" / "cpuinfo").write_text(cpuinfo)
    cpu_dir = partial / "sys" / "devices" / "system" / "cpu"
    for relative, content in sys_files.items():
        (cpu_dir / relative).parent.mkdir(parents=True, exist_ok=True)
        (cpu_dir / relative).write_text(content)
    (partial / ".complete").write_text(device.model_dump_json() + "\n")
    return publish_dir(partial, view, ".complete")


# ------------------------------------------------------------------------------------------- instruction plugin


def build_insn_plugin() -> Path:
    """Build (or reuse) the instruction-count TCG plugin, cached by a hash of its source and qemu's plugin header."""
    require_tools()
    sources = [RUNNER_DIR / "insn_count_plugin.c", RUNNER_DIR / "marker.h", QEMU_PLUGIN_HEADER]
    key = hashlib.sha256("".join(sha256_file(p) for p in sources).encode()).hexdigest()[:12]
    plugin = cache_dir("emulator", f"plugin-{key}") / "libinsn_count.so"
    if plugin.is_file():
        return plugin
    with atomic_path(plugin) as tmp:
        command = ["gcc", "-shared", "-fPIC", "-O2", "-Wall", f"-I{QEMU_PLUGIN_HEADER.parent}", f"-I{RUNNER_DIR}",
                   str(RUNNER_DIR / "insn_count_plugin.c"), "-o", str(tmp)]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise EmulatorSetupError(f"building the qemu plugin failed:\n$ {' '.join(command)}\n{result.stderr}")
    _log(f"instruction-count plugin built: {plugin}")
    return plugin


# ------------------------------------------------------------------------------------------------------ running


def _guest_env(pythonpath: str | None = None) -> dict[str, str]:
    """A fixed, minimal environment: the host's (venv paths, locale, ...) must not leak into the guest, and an
    identical environment keeps instruction counts identical from run to run."""
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/tmp", "PYTHONHASHSEED": "0", "PYTHONNOUSERSITE": "1",
           "PYTHONDONTWRITEBYTECODE": "1"}  # fmt: skip
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    return env


def _run_guest(
    device: Device,
    program: list[str],
    work: Path,
    num_samples: int,
    env: dict[str, str],
    count_instructions: bool,
    label: str,
    profile_args: list[str] | None = None,
) -> tuple[float, list[int], WindowProfile | None]:
    """Run ``program`` (guest argv) under qemu in ``work``; stream its "sample n:" lines into a progress bar.

    Returns (wall seconds, per-inference instruction counts, the profiled window or None). Guest arguments are
    relative to ``work`` so the guest's argv and environment are byte-identical between runs. ``profile_args``: the
    plugin's profiling arguments (window, cache geometry), which imply counting.
    """
    command = [QEMU, "-cpu", device.qemu_cpu, "-L", str(device_root(device))]
    counts_path, profile_path = work / "instructions.txt", work / "profile.txt"
    count_instructions = count_instructions or profile_args is not None
    if count_instructions:
        plugin = f"{build_insn_plugin()},out={counts_path}"
        if profile_args is not None:
            plugin += "," + ",".join([f"profile={profile_path}", *profile_args])
        command += ["-plugin", plugin]
    command += program
    started = time.monotonic()
    with open(work / "stderr.txt", "w+") as stderr:
        process = subprocess.Popen(command, cwd=work, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True)
        input_lines = []  # the guest's description of the model inputs, for error messages
        with tqdm(total=num_samples, desc=label, unit="inference", leave=False, disable=num_samples < 2,
                  position=transient_bar_position()) as bar:
            assert process.stdout is not None
            for line in process.stdout:
                if line.startswith("sample "):
                    bar.update(1)
                elif line.startswith("input "):
                    input_lines.append(line.rstrip())
        returncode = process.wait()
        wall = time.monotonic() - started
        if returncode != 0:
            stderr.seek(0)
            tail = "\n".join(input_lines + stderr.read().splitlines()[-15:])
            raise EmulatorRunError(
                f"{label} failed under qemu (exit code {returncode}):\n$ {' '.join(command)}\n{tail}"
            )
    counts: list[int] = []
    if count_instructions:
        counts = [int(line) for line in counts_path.read_text().split()]
        if len(counts) != num_samples:
            raise EmulatorRunError(f"the plugin counted {len(counts)} inferences, expected {num_samples}")
    profile = read_profile(profile_path) if profile_args is not None else None
    return wall, counts, profile


def _profile_args(device: Device, num_samples: int, threads: int) -> list[str]:
    """Profile the LAST inference (steady state: the first one also does XNNPACK's one-time set-up)."""
    if device.core is None:
        raise EmulatorSetupError(f"profile device {device.cpu_model} has no core model (device.core): no cycle estimate")
    return [f"window={num_samples - 1}", *plugin_cache_args(device, threads)]


def _require_model(model: Path) -> None:
    if not Path(model).is_file():
        raise FileNotFoundError(f"no model file at {model}")


def run_pte_emulated(
    device: Device,
    model: Path,
    inputs: list[np.ndarray],
    *,
    count_instructions: bool = True,
    profile_cycles: bool = False,
    threads: int = 1,
    method: str | None = None,
) -> EmulatedRun:
    """Run a .pte's ``method`` (default: its only one) on the emulated device with the cross-built pte_runner
    (XNNPACK + quantized kernels).

    ``inputs[i]`` has a leading sample axis N; the program has batch 1 and takes sample n as ``inputs[i][n:n+1]``, in
    the program's input order. ``threads`` sizes ExecuTorch's thread pool (1: no pool); ``profile_cycles`` records
    the last inference for :func:`estimate_cycles`.
    """
    _require_model(model)
    require_tools()
    runner = build_runner("aarch64")
    with tempfile.TemporaryDirectory(prefix="emulated-pte-") as tmp:
        work = Path(tmp)
        (work / "model.pte").symlink_to(Path(model).resolve())
        num_samples = write_samples(inputs, work / "inputs.bin")
        label = f"executorch on {device.qemu_cpu}"
        program = [str(runner), "model.pte", "inputs.bin", "outputs.bin", str(num_samples)]
        if threads != 1 or method:
            program.append(str(threads))
        if method:
            program.append(method)
        profile_args = _profile_args(device, num_samples, threads) if profile_cycles else None
        wall, counts, profile = _run_guest(device, program, work, num_samples, _guest_env(), count_instructions, label,
                                           profile_args)  # fmt: skip
        logits = read_logits(work / "outputs.bin", num_samples)
    return EmulatedRun(logits, counts, wall, device.qemu_cpu, "executorch", threads, profile)


def run_tflite_emulated(
    device: Device,
    runtime: TfliteRuntime,
    model: Path,
    inputs: list[np.ndarray],
    *,
    count_instructions: bool = True,
    delegate: Literal["xnnpack", "cpu"] = "xnnpack",
    profile_cycles: bool = False,
    threads: int = 1,
    method: str | None = None,
) -> EmulatedRun:
    """Run a .tflite on the emulated device with ``runtime``'s Python interpreter in the guest's python3.

    ``inputs`` as for :func:`run_pte_emulated`, in the model's input order (``get_input_details()``). ``delegate``
    ``cpu`` runs the builtin kernels without the runtime's default XNNPACK delegate. ``threads``: the interpreter's
    ``num_threads`` (default 1); ``profile_cycles`` as for :func:`run_pte_emulated`; ``method``: the signature to run
    (default: the model's only one).
    """
    if runtime not in RUNTIME_SITES:
        raise ValueError(f"runtime must be one of {list(RUNTIME_SITES)}, not {runtime!r}")
    _require_model(model)
    require_tools()
    site, _ = RUNTIME_SITES[runtime]
    with tempfile.TemporaryDirectory(prefix="emulated-tflite-") as tmp:
        work = Path(tmp)
        (work / "model.tflite").symlink_to(Path(model).resolve())
        shutil.copy2(RUNNER_DIR / "tflite_guest.py", work / "tflite_guest.py")
        num_samples = write_samples(inputs, work / "inputs.bin")
        # qemu opens the program itself by its host path (-L covers only what the guest opens): the rootfs's python3.
        python3 = str(device_root(device) / "usr" / "bin" / "python3")
        program = [python3, "tflite_guest.py", runtime, "model.tflite", "inputs.bin", "outputs.bin",
                   str(num_samples), delegate]  # fmt: skip
        if threads != 1 or method:
            program.append(str(threads))
        if method:
            program.append(method)
        label = f"{runtime} on {device.qemu_cpu}"
        profile_args = _profile_args(device, num_samples, threads) if profile_cycles else None
        wall, counts, profile = _run_guest(device, program, work, num_samples, _guest_env(site), count_instructions,
                                           label, profile_args)  # fmt: skip
        logits = read_logits(work / "outputs.bin", num_samples)
    return EmulatedRun(logits, counts, wall, device.qemu_cpu, runtime, threads, profile)


def estimate_latency_ms(instructions: float, device: Device) -> float:
    """An ESTIMATE of one inference's latency: instructions / the profile's ``instructions_per_ns``.

    ``instructions_per_ns`` (clock x sustained IPC) is an assumption written in the profile, not a measurement; the
    instruction count is exact but cache misses, memory bandwidth and pipeline stalls are not modelled.
    """
    return instructions / device.instructions_per_ns / 1e6


def estimate_cycles(run: EmulatedRun, device: Device, calibrate: bool = True) -> CycleEstimate:
    """The cycle estimate of ``run``'s profiled (last) inference on ``device``'s core (see toolkit/cycles.py)."""
    if run.profile is None:
        raise ValueError("this run was not profiled: pass profile_cycles=True to the run function")
    return estimate_from_profile(run.profile, device, calibrate=calibrate)


def main() -> int:
    """Check the setup and build everything ahead of time: ``python -m toolkit.emulate``."""
    missing = _missing_tools()
    if missing:
        print(_setup_error(missing), file=sys.stderr)
        return 1
    started = time.monotonic()
    ensure_rootfs()
    build_insn_plugin()
    build_runner("aarch64")
    _log(f"emulator ready ({time.monotonic() - started:.1f} s)")
    from toolkit.cycles import CycleModelError, mca_tool
    from toolkit.profiles import list_profiles

    for mcpu in sorted({p.device.core.mca_cpu for p in list_profiles() if p.device.core}):
        try:
            _log(f"cycle estimate for -mcpu={mcpu}: {mca_tool(mcpu).describe()}")
        except CycleModelError as err:
            _log(f"no cycle estimate (latency falls back to instructions / instructions_per_ns): {err}")
            break
    return 0


if __name__ == "__main__":
    sys.exit(main())
