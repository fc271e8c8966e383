"""A cycle ESTIMATE for one emulated inference: translated blocks x llvm-mca's core model + a simulated cache.

The qemu plugin (toolkit/runner/insn_count_plugin.c, ``profile=``) records, for one measured window (a steady-state
inference), every translated block that ran, its instruction bytes and how often each thread ran it, plus per-thread
load-miss counts from a small set-associative LRU cache simulation with a stride prefetcher and the profile's cache
geometry. Here:

* each distinct block is disassembled (``llvm-mc --disassemble``) and timed by ``llvm-mca`` with the scheduling
  model that stands in for the profile's core (``device.core.mca_cpu``): cycles per iteration of the block repeated
  100 times (its steady-state reciprocal throughput, dependencies included). Results are cached by the block's bytes,
  so a later run only times blocks it has not seen;
* core cycles = sum over blocks of (executions x cycles per execution);
* memory stall cycles = demand load misses per level x that level's latency beyond an L1 hit (llvm-mca charges every
  load an L1 hit) x the profile's exposed share (out-of-order cores overlap misses with other work);
* latency = (core + memory stall cycles) / clock, times the per-core calibration factor fitted against published
  device timings (targets/cost_models.json, written by bench/latency_calibration.py), whose error is reported with it.

What llvm-mca does not model (branch mispredictions, instruction fetch, TLB misses, DRAM bandwidth) is in the
calibration error, not in the figure. Which scheduling model LLVM really uses matters: LLVM 14-19 map cortex-a72 AND
cortex-a76 to the Cortex-A57 model (one 128-bit FMA per cycle); LLVM >= 17 has a Neoverse-N1 model (two per cycle,
like the A76 it derives from), so the shipped A76 profiles time with ``mca_cpu: neoverse-n1``. :func:`mca_tool` says
which tool and model were used, and the estimate records it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from toolkit.files import PROJECT_ROOT, atomic_write_json, cache_dir

COST_MODELS = PROJECT_ROOT / "targets" / "cost_models.json"
MCA_ITERATIONS = 100
# Every A-profile feature the emulated cores can execute: disassembly must decode whatever qemu ran.
DISASSEMBLY_ATTRS = "+v8.2a,+dotprod,+fullfp16,+rcpc,+aes,+sha2,+crc,+lse,+rdm,+fp16fml"
# Tools in order of preference: a Neoverse-N1 scheduling model needs LLVM >= 17.
LLVM_CANDIDATES = ("19", "18", "17", "16", "15", "14", "")
PROFILE_FORMAT = 1


class CycleModelError(RuntimeError):
    """The cycle estimate cannot be made (llvm-mca missing, a malformed profile); the message says what to do."""


# ------------------------------------------------------------------------------------------------- the profile


@dataclass
class Block:
    vaddr: int
    n_insns: int
    code: bytes
    counts: dict[int, int]  # vCPU (thread) -> executions inside the profiled window

    @property
    def key(self) -> str:
        return hashlib.sha1(self.code).hexdigest()


@dataclass
class CacheStats:
    loads: int = 0  # line-granular accesses (consecutive accesses to one line count once)
    stores: int = 0
    l1_miss: int = 0  # demand LOAD misses per level (stores retire into the store buffer)
    l2_miss: int = 0
    l3_miss: int = 0  # 0 when the core has no L3: then l2_miss are the DRAM accesses
    prefetches: int = 0


@dataclass
class WindowProfile:
    """One measured window as the plugin recorded it."""

    window: int
    main_vcpu: int
    blocks: list[Block]
    caches: dict[int, CacheStats]

    def threads(self) -> list[int]:
        return sorted({v for b in self.blocks for v in b.counts})

    def instructions(self, vcpu: int | None = None) -> int:
        """Instructions the thread ran in the window (default: the thread that made the markers)."""
        vcpu = self.main_vcpu if vcpu is None else vcpu
        return sum(b.n_insns * b.counts.get(vcpu, 0) for b in self.blocks)


def read_profile(path: Path) -> WindowProfile:
    """Parse the plugin's profile file; a file without its end line (guest crashed mid-write) is refused."""
    blocks, caches = [], {}
    window = main = None
    complete = False
    for line in Path(path).read_text().splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "P" and int(rest) != PROFILE_FORMAT:
            raise CycleModelError(f"{path}: profile format {rest}, expected {PROFILE_FORMAT}: rebuild the plugin")
        elif kind == "W":
            window, main = (int(x) for x in rest.split())
        elif kind == "B":
            vaddr, n_insns, code, *counts = rest.split()
            pairs = dict(c.split(":") for c in counts)
            blocks.append(Block(int(vaddr, 16), int(n_insns), bytes.fromhex(code), {int(v): int(n) for v, n in pairs.items()}))
        elif kind == "C":
            vcpu, *numbers = (int(x) for x in rest.split())
            caches[vcpu] = CacheStats(*numbers)
        elif kind == "E":
            complete = True
    if not complete or window is None or main is None:
        raise CycleModelError(f"{path}: incomplete block profile (the guest stopped before the profiled window ended)")
    return WindowProfile(window, main, blocks, caches)


# ----------------------------------------------------------------------------------------------------- llvm-mca


@dataclass(frozen=True)
class McaTool:
    mca: str
    mc: str
    version: str  # "19.1.7"
    mcpu: str
    scheduling_model: str  # from the resource names llvm-mca prints, e.g. "Cortex-A57 (A57Unit*)"

    def describe(self) -> str:
        return f"llvm-mca {self.version} -mcpu={self.mcpu} (scheduling model: {self.scheduling_model})"


_MODEL_NAMES = {"A57": "Cortex-A57", "N1": "Neoverse-N1", "A53": "Cortex-A53", "A55": "Cortex-A55",
                "A510": "Cortex-A510", "V1": "Neoverse-V1", "N2": "Neoverse-N2", "A64FX": "A64FX"}  # fmt: skip


def _tool_version(mca: str) -> str:
    text = subprocess.run([mca, "--version"], capture_output=True, text=True).stdout
    match = re.search(r"LLVM version (\d+\.\d+\.\d+)", text)
    return match.group(1) if match else "unknown"


def mca_tool(mcpu: str) -> McaTool:
    """The newest installed llvm-mca/llvm-mc pair and the scheduling model it really uses for ``mcpu``."""
    for suffix in LLVM_CANDIDATES:
        mca, mc = shutil.which(f"llvm-mca-{suffix}" if suffix else "llvm-mca"), None
        if mca:
            mc = shutil.which(f"llvm-mc-{suffix}" if suffix else "llvm-mc")
        if mca and mc:
            break
    else:
        raise CycleModelError("llvm-mca and llvm-mc are needed for the cycle estimate: sudo apt-get install -y llvm-19 "
                              "(Debian 12; llvm-14 also works but times Cortex-A76 with the Cortex-A57 model)")
    result = subprocess.run([mca, "-mtriple=aarch64", f"-mcpu={mcpu}", "-iterations=1", "-instruction-info=false"],
                            input="add x0, x0, #1\n", capture_output=True, text=True)  # fmt: skip
    if result.returncode != 0:
        raise CycleModelError(f"{mca} does not know -mcpu={mcpu}: {result.stderr.strip()[:300]}")
    units = re.findall(r"\[\d+(?:\.\d+)?\]\s+-\s+([A-Za-z0-9]+?)Unit", result.stdout)
    prefix = units[0] if units else "?"
    model = f"{_MODEL_NAMES.get(prefix, prefix)} ({prefix}Unit*)"
    return McaTool(mca, mc, _tool_version(mca), mcpu, model)


def _mca_cache_path(tool: McaTool) -> Path:
    return cache_dir("emulator", "mca") / f"llvm-{tool.version}-{tool.mcpu}-it{MCA_ITERATIONS}.json"


def read_json(path: Path) -> dict:
    """A JSON object from ``path``; {} when it is missing or unreadable (caches, targets/cost_models.json)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def disassemble(words: list[bytes], tool: McaTool) -> dict[bytes, str]:
    """Assembly text of each 4-byte instruction word; words llvm-mc cannot decode are left out."""
    if not words:
        return {}
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as fh:
        for w in words:
            fh.write(" ".join(f"0x{b:02x}" for b in w) + "\n")
        name = fh.name
    try:
        result = subprocess.run([tool.mc, "--disassemble", "-triple=aarch64", f"-mattr={DISASSEMBLY_ATTRS}",
                                 "-show-encoding", name], capture_output=True, text=True)  # fmt: skip
    finally:
        os.unlink(name)
    texts = {}
    for line in result.stdout.splitlines():
        asm, sep, comment = line.partition("// encoding: [")
        if not sep:
            continue
        word = bytes(int(x, 16) for x in comment.rstrip("]").split(","))
        texts[word] = " ".join(asm.split())
    return texts


_REGION = re.compile(r"\[(\d+)\] Code Region - b(\d+)\s+Iterations:\s+(\d+)\s+Instructions:\s+(\d+)\s+"
                     r"Total Cycles:\s+(\d+)", re.S)  # fmt: skip
_SKIPPED = re.compile(r"note: instruction:\s*(.+)")


def _run_mca(regions: list[list[str]], tool: McaTool) -> tuple[list[float], set[str]]:
    """Cycles per iteration of each region (a list of instruction texts), and the instructions llvm-mca skipped."""
    source = []
    for i, lines in enumerate(regions):
        source += [f"# LLVM-MCA-BEGIN b{i}", *lines, "# LLVM-MCA-END"]
    skipped: set[str] = set()
    for _ in range(50):  # LLVM < 19 has no skip option: drop what it refuses and retry
        text = "\n".join(line for line in source if line.strip() not in skipped) + "\n"
        command = [tool.mca, "-mtriple=aarch64", f"-mcpu={tool.mcpu}", f"-iterations={MCA_ITERATIONS}",
                   "-instruction-info=false", "-resource-pressure=false"]  # fmt: skip
        if int(tool.version.split(".")[0] or 0) >= 19:
            command.append("-skip-unsupported-instructions=any")
        result = subprocess.run(command, input=text, capture_output=True, text=True)
        refused = {m.strip() for m in _SKIPPED.findall(result.stderr)}
        if result.returncode == 0:
            skipped |= refused
            break
        if not refused - skipped:
            raise CycleModelError(f"llvm-mca failed: {result.stderr.strip()[-600:]}")
        skipped |= refused
    else:
        raise CycleModelError("llvm-mca kept refusing instructions")
    cycles = [0.0] * len(regions)
    for _, name, iterations, _, total in _REGION.findall(result.stdout):
        cycles[int(name)] = int(total) / int(iterations)
    return cycles, skipped


def block_cycles(blocks: list[Block], tool: McaTool, batch: int = 2000) -> dict[str, dict]:
    """Per distinct block (by bytes): cycles per execution and how many of its instructions were not timed.

    Cached on disk per tool version and -mcpu; only blocks not seen before are disassembled and timed.
    """
    path = _mca_cache_path(tool)
    cache = read_json(path)
    todo = {b.key: b for b in blocks if b.key not in cache}
    if todo:
        words = sorted({b.code[i : i + 4] for b in todo.values() for i in range(0, len(b.code), 4)})
        texts = disassemble(words, tool)
        keys = list(todo)
        for start in range(0, len(keys), batch):
            chunk = keys[start : start + batch]
            regions, undecoded = [], []
            for key in chunk:
                code = todo[key].code
                lines = [texts.get(code[i : i + 4]) for i in range(0, len(code), 4)]
                undecoded.append(sum(t is None for t in lines))
                regions.append([t for t in lines if t is not None] or ["nop"])
            cycles, skipped = _run_mca(regions, tool)
            for key, lines, c, bad in zip(chunk, regions, cycles, undecoded, strict=True):
                untimed = bad + sum(line in skipped for line in lines)
                cache[key] = {"cycles": c, "untimed": untimed}
        fresh = read_json(path)  # another process may have added entries meanwhile
        fresh.update(cache)
        atomic_write_json(path, fresh)
        cache = fresh
    return {b.key: cache[b.key] for b in blocks}


# ------------------------------------------------------------------------------------------------ the estimate


@dataclass
class ThreadEstimate:
    vcpu: int
    instructions: int
    core_cycles: float
    memory_stall_cycles: float
    untimed_instructions: int  # llvm-mca could not time them: each counted as 1 cycle
    cache: dict

    @property
    def cycles(self) -> float:
        return self.core_cycles + self.memory_stall_cycles


@dataclass
class CycleEstimate:
    """The cycle estimate of one profiled inference; ``latency_ms`` is calibrated when a factor is known."""

    tool: str
    clock_ghz: float
    threads: list[ThreadEstimate]
    main_vcpu: int
    calibration_factor: float = 1.0
    calibration: dict = field(default_factory=dict)

    @property
    def main(self) -> ThreadEstimate:
        return next(t for t in self.threads if t.vcpu == self.main_vcpu)

    @property
    def critical_path(self) -> ThreadEstimate:
        return max(self.threads, key=lambda t: t.cycles)

    def raw_ms(self, thread: ThreadEstimate | None = None) -> float:
        thread = thread or self.main
        return thread.cycles / (self.clock_ghz * 1e6)

    def latency_ms(self, thread: ThreadEstimate | None = None) -> float:
        return self.raw_ms(thread) * self.calibration_factor

    def to_json(self) -> dict:
        main = self.main
        return {
            "model": self.tool,
            "instructions": main.instructions,
            "core_cycles": round(main.core_cycles),
            "memory_stall_cycles": round(main.memory_stall_cycles),
            "cycles": round(main.cycles),
            "untimed_instructions": main.untimed_instructions,
            "clock_ghz": self.clock_ghz,
            "uncalibrated_ms": round(self.raw_ms(), 4),
            "calibration_factor": self.calibration_factor,
            "estimated_latency_ms": round(self.latency_ms(), 4),
            "cache": main.cache,
        }


def memory_stall_cycles(stats: CacheStats, core, clock_ghz: float) -> float:
    """Exposed stall cycles of the demand load misses: each level's latency beyond an L1 hit x the exposed share.

    DRAM latency is stated in ns (it does not scale with the core clock), the cache levels in core cycles.
    """
    l1 = core.l1d.latency_cycles
    cycles = (stats.l1_miss - stats.l2_miss) * (core.l2.latency_cycles - l1)
    if core.l3 is not None:
        cycles += (stats.l2_miss - stats.l3_miss) * (core.l3.latency_cycles - l1)
        dram = stats.l3_miss
    else:
        dram = stats.l2_miss
    cycles += dram * (core.dram_latency_ns * clock_ghz - l1)
    return cycles * core.exposed_miss_share


def estimate_from_profile(profile: WindowProfile, device, calibrate: bool = True) -> CycleEstimate:
    """Cycles per thread of the profiled window on ``device`` (a toolkit.profiles.Device with a ``core`` model)."""
    core = device.core
    if core is None:
        raise CycleModelError(f"profile device {device.cpu_model} has no core model (device.core): no cycle estimate")
    tool = mca_tool(core.mca_cpu)
    timing = block_cycles(profile.blocks, tool)
    threads = []
    for vcpu in profile.threads():
        core_cycles, untimed, instructions = 0.0, 0, 0
        for b in profile.blocks:
            n = b.counts.get(vcpu, 0)
            if n:
                t = timing[b.key]
                core_cycles += n * (t["cycles"] + t["untimed"])
                untimed += n * t["untimed"]
                instructions += n * b.n_insns
        stats = profile.caches.get(vcpu, CacheStats())
        stall = memory_stall_cycles(stats, core, device.clock_ghz)
        threads.append(ThreadEstimate(vcpu, instructions, core_cycles, stall, untimed, asdict(stats)))
    estimate = CycleEstimate(tool.describe(), device.clock_ghz, threads, profile.main_vcpu)
    if calibrate:
        entry = calibration_for(core.mca_cpu)
        if entry:
            estimate.calibration_factor = entry["factor"]
            estimate.calibration = entry
    return estimate


def calibration_for(mca_cpu: str) -> dict | None:
    """The fitted factor and held-out error for a scheduling-model core, from targets/cost_models.json."""
    data = read_json(COST_MODELS)
    return (data.get("latency_calibration") or {}).get(mca_cpu)


def plugin_cache_args(device, threads: int = 1) -> list[str]:
    """The plugin's cache-geometry arguments for ``device``'s core; a shared level is split between ``threads``."""
    core = device.core
    args = [f"line={core.line_bytes}", f"prefetch={core.prefetch_degree}"]
    for name, level in (("l1", core.l1d), ("l2", core.l2), ("l3", core.l3)):
        if level is None:
            continue
        size = level.size_kb * 1024
        if level.shared and threads > 1:  # each thread's share: power-of-two sets are needed by the plugin
            size = _floor_pow2_sets(size // threads, level.ways, core.line_bytes)
        args.append(f"{name}={size}:{level.ways}")
    return args


def _floor_pow2_sets(size: int, ways: int, line: int) -> int:
    sets = max(1, size // (ways * line))
    return (1 << (sets.bit_length() - 1)) * ways * line


# ------------------------------------------------------------------------------------------ manifest records


def cycle_model_problem(device) -> str | None:
    """Why no cycle estimate can be made for ``device`` (None: it can)."""
    if device.core is None:
        return f"the profile gives no core model (device.core) for {device.cpu_model}"
    try:
        mca_tool(device.core.mca_cpu)
    except CycleModelError as err:
        return str(err)
    return None


def describe_calibration(calibration: dict) -> str:
    if not calibration:
        return "uncalibrated (no published timings fitted for this core model yet: bench/latency_calibration.py)"
    lo, hi = calibration["held_out_ratio_range"]
    return (
        f"calibration factor {calibration['factor']:.3f} fitted on {calibration['fit_rows']} published single-thread "
        f"timings; on {calibration['held_out_rows']} held-out ones estimate / published = median "
        f"{calibration['held_out_ratio_median']:.2f}, range {lo:.2f}-{hi:.2f} (BENCHMARKS.md, latency calibration)"
    )


def latency_record(estimate: CycleEstimate, device) -> dict:
    """The emulator-entry fields of a cycle estimate (manifest ``artifacts[].emulator``)."""
    core = device.core
    levels = ", ".join(
        f"L{i} {lvl.size_kb} KB {lvl.ways}-way {lvl.latency_cycles:g} cycles" + (" shared" if lvl.shared else "")
        for i, lvl in ((1, core.l1d), (2, core.l2), (3, core.l3)) if lvl is not None
    )
    calibration = {k: estimate.calibration[k] for k in ("factor", "held_out_ratio_median", "held_out_ratio_range",
                                                        "held_out_rows") if k in estimate.calibration}  # fmt: skip
    return {
        "estimate_method": "cycles",
        "estimated_latency_ms": estimate.latency_ms(),
        "cycles": estimate.to_json(),
        "calibration": calibration,
        "assumption": (
            f"ESTIMATE, not a measurement: cycles of the last emulated inference on one {device.cpu_model} thread = "
            f"{estimate.tool} per translated block x its executions + simulated data-cache load misses ({levels}, "
            f"DRAM {core.dram_latency_ns:g} ns, {core.exposed_miss_share:.0%} of each miss exposed), / "
            f"{device.clock_ghz:g} GHz; {describe_calibration(estimate.calibration)}"
        ),
    }


# Pool threads that spin while waiting execute instructions that are not work; how many depends on host scheduling
# under emulation. Above this ratio of all threads' instructions to the one-thread run's, the per-thread counts are
# not trusted (XNNPACK's pool measured 1.01-1.04 on the calibration networks; ruy's spinning pool 2-10x).
SPIN_RATIO_LIMIT = 1.25


def threads_record(estimate: CycleEstimate, one_thread: CycleEstimate, requested: int) -> dict:
    """The multi-thread estimate of a run given ``requested`` inference threads: every thread's cycles in one
    inference, critical path = the slowest thread.

    When the threads together ran more than SPIN_RATIO_LIMIT x the one-thread run's instructions (spin-waiting pool
    threads), the measured critical path is not used: the stated model ``one-thread estimate / requested`` (perfect
    scaling over the threads the runtime was given, a lower bound) is reported instead, and the record says so.
    A runtime may start more OS threads than it was given (tflite-runtime: its ruy and XNNPACK pools side by side);
    they are all counted in ``per_thread_cycles`` but never divide the work further.
    """
    slowest = estimate.critical_path
    threads = requested
    ratio = sum(t.instructions for t in estimate.threads) / max(one_thread.main.instructions, 1)
    record = {
        "threads": threads,
        "os_threads": len(estimate.threads),
        "per_thread_cycles": [round(t.cycles) for t in sorted(estimate.threads, key=lambda t: t.vcpu)],
        "work_ratio": round(ratio, 3),
    }
    if ratio <= SPIN_RATIO_LIMIT:
        record["estimated_latency_ms"] = estimate.latency_ms(slowest)
        record["method"] = (
            f"measured: {threads} threads' cycles in one emulated inference with the runtime's pool at this size "
            f"(together {ratio:.2f}x the one-thread run's instructions); critical path = the slowest thread, times "
            "the single-thread calibration factor. Contention for shared caches and DRAM bandwidth and the pool's "
            "wake-ups are not modelled, so this is optimistic (0.67-1.02x published multi-thread timings, "
            "BENCHMARKS.md); per-thread counts move by ~1-3% between runs (work is handed out dynamically)"
        )
    else:
        record["estimated_latency_ms"] = one_thread.latency_ms() / threads
        record["method"] = (
            f"stated model, not measured: the pool's threads together ran {ratio:.1f}x the one-thread run's "
            "instructions (spin-waiting, whose amount depends on host scheduling under emulation), so the per-thread "
            f"counts are not used; one-thread estimate / {threads} (perfect scaling) is a lower bound, the "
            "one-thread estimate an upper bound"
        )
    return record
