"""Cycle estimate (toolkit/cycles.py) and the student latency model (toolkit/latency_model.py).

Block counting is checked on a known loop in a tiny static aarch64 program and on the real runner with a tiny
model; the cost model is checked without the emulator (its fitted coefficients, and choose_shape on an
xlnet-base-shaped teacher for every shipped profile).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from toolkit import cycles, emulate
from toolkit.distill import choose_shape
from toolkit.latency_model import features, fit, load_models
from toolkit.profiles import list_profiles, load_profile

PI4 = load_profile("raspberry-pi-4").device
PI5 = load_profile("raspberry-pi-5").device
RUNNER_DIR = Path(emulate.RUNNER_DIR)
LOOP_SOURCE = r"""
#include <stdlib.h>
#include <unistd.h>
#include <sys/syscall.h>
#include "marker.h"
int main(int argc, char **argv) {
  long n = atol(argv[1]);
  for (int w = 0; w < 2; w++) {
    syscall(XEDGE_MARKER_SYSCALL, XEDGE_MARKER_MAGIC, XEDGE_MARKER_START);
    __asm__ volatile("mov x9, %0\n1:\n add x10, x10, #1\n subs x9, x9, #1\n b.ne 1b\n" : : "r"(n) : "x9", "x10", "cc");
    syscall(XEDGE_MARKER_SYSCALL, XEDGE_MARKER_MAGIC, XEDGE_MARKER_STOP);
  }
  return 0;
}
"""
LOOP_BODY = bytes.fromhex("4a050091" "290500f1" "c1ffff54")  # add x10, x10, #1; subs x9, x9, #1; b.ne <loop>


def mca_available(mcpu: str = "cortex-a72") -> bool:
    try:
        cycles.mca_tool(mcpu)
    except cycles.CycleModelError:
        return False
    return True


needs_mca = pytest.mark.skipif(not mca_available(), reason="llvm-mca not installed: sudo apt-get install -y llvm-19")


# ------------------------------------------------------------------------------------------- no emulator needed


def test_profile_parser_and_per_thread_instructions(tmp_path: Path) -> None:
    text = ("P 1\nW 3 0\nB 400724 3 4a050091290500f1c1ffff54 0:999 1:5\nB 400720 1 1f2003d5 0:1\n"
            "C 0 10 2 3 1 0 7\nE\n")  # fmt: skip
    (tmp_path / "p.txt").write_text(text)
    profile = cycles.read_profile(tmp_path / "p.txt")
    assert profile.window == 3 and profile.threads() == [0, 1]
    assert profile.instructions() == 3 * 999 + 1 and profile.instructions(1) == 15
    assert profile.caches[0].l1_miss == 3 and profile.caches[0].l2_miss == 1
    (tmp_path / "cut.txt").write_text(text[:-2])
    with pytest.raises(cycles.CycleModelError, match="incomplete"):
        cycles.read_profile(tmp_path / "cut.txt")


def test_memory_stalls_use_each_level_and_dram_in_ns() -> None:
    stats = cycles.CacheStats(loads=100, stores=0, l1_miss=10, l2_miss=4, l3_miss=1)
    core = PI5.core  # L1 4, L2 9, L3 31 cycles, DRAM 100 ns, half exposed
    expected = (6 * (9 - 4) + 3 * (31 - 4) + 1 * (100 * 2.4 - 4)) * core.exposed_miss_share
    assert cycles.memory_stall_cycles(stats, core, 2.4) == pytest.approx(expected)


@needs_mca
def test_llvm_mca_times_a_known_loop_and_says_which_model() -> None:
    a72, n1 = cycles.mca_tool("cortex-a72"), cycles.mca_tool("neoverse-n1")
    assert "Cortex-A57" in a72.scheduling_model  # LLVM has no A72 model: -mcpu=cortex-a72 is the A57 model
    if int(n1.version.split(".")[0]) >= 17:
        assert "Neoverse-N1" in n1.scheduling_model
    block = cycles.Block(0x400724, 3, LOOP_BODY, {0: 1000})
    timing = cycles.block_cycles([block], a72)[block.key]
    assert 0.9 <= timing["cycles"] <= 1.6 and timing["untimed"] == 0  # one iteration of a 1-cycle dependency chain
    fmla = bytes.fromhex("2010844f" * 8)  # 8 x fmla v0.4s, v1.4s, v4.s[0]: one accumulator, a dependent chain
    slow = cycles.block_cycles([cycles.Block(0, 8, fmla, {0: 1})], a72)
    assert list(slow.values())[0]["cycles"] > 8  # a dependent chain is slower than the throughput


def test_fit_reproduces_its_points() -> None:
    truth = np.array([0.25, 3.0, 20_000.0])
    shapes = [(1, 64), (1, 256), (4, 64), (4, 256)]
    from toolkit.distill import StudentConfig

    points = []
    for layers, width in shapes:
        config = StudentConfig(vocab_size=8000, d_model=width, n_layer=layers, n_head=4, d_inner=4 * width,
                               num_labels=2, seq_len=128)  # fmt: skip
        points.append((features(config), float(np.dot(truth, features(config)))))
    coefficients = fit(points)
    for f, y in points:
        assert np.dot(coefficients, f) == pytest.approx(y, rel=1e-6)


STORED = load_models()


@pytest.mark.skipif(not STORED, reason="targets/cost_models.json has no student_latency models yet")
def test_stored_models_reproduce_their_fit_points() -> None:
    from toolkit.distill import StudentConfig

    for key, entry in STORED.items():
        assert entry["max_fit_error"] < 0.15, key
        activation, normalisation, mask = key.split("|")[4:]
        for point in entry["points"]:
            config = StudentConfig(vocab_size=entry["fit_vocab"], d_model=point["d_model"], n_layer=point["n_layer"],
                                   n_head=4, d_inner=4 * point["d_model"], num_labels=2,
                                   seq_len=entry["sequence_length"], activation=activation,
                                   normalisation=normalisation, mask_input=mask)  # fmt: skip
            predicted = float(np.dot(entry["coefficients"], features(config)))
            assert predicted == pytest.approx(point["cycles"], rel=entry["max_fit_error"] + 1e-3), key


@pytest.mark.skipif(not STORED, reason="targets/cost_models.json has no student_latency models yet")
@pytest.mark.parametrize("profile", list_profiles(), ids=lambda p: p.name)
def test_xlnet_base_teacher_gets_a_student_that_uses_the_budget(profile) -> None:
    from transformers import XLNetConfig

    from toolkit.distill import MAX_PARAM_RATIO
    from toolkit.pipeline import xlnet_parameters

    teacher = XLNetConfig(vocab_size=32000, d_model=768, n_layer=12, n_head=12, d_inner=3072, num_labels=2)
    cap = int(xlnet_parameters(12, 768, 3072, 32000, 2) * MAX_PARAM_RATIO)
    config, cost = choose_shape(profile, teacher, vocab_size=10_000, max_parameters=cap)
    if "uncalibrated FLOP model" in cost.cost_model:
        pytest.skip(f"no fitted latency model for {profile.name} yet: {cost.cost_model}")
    share = cost.latency_ms_estimate / profile.budgets.latency_ms
    assert share <= 1.0
    assert share >= 0.7 or "size budget" in cost.binding_limit or "parameter cap" in cost.binding_limit, (
        f"{profile.name}: {config.n_layer} x d{config.d_model} predicted {cost.latency_ms_estimate:.1f} ms of "
        f"{profile.budgets.latency_ms} ms ({share:.0%}); limit: {cost.binding_limit}"
    )
    assert cost.binding_limit and set(cost.latency_ms_by_artifact) == {a.name for a in profile.artifacts}


def test_binding_limit_names_the_size_budget() -> None:
    from transformers import XLNetConfig

    profile = load_profile("raspberry-pi-5")
    tight = profile.model_copy(update={"budgets": profile.budgets.model_copy(update={"artifact_mb": 2.0})})
    teacher = XLNetConfig(vocab_size=32000, d_model=768, n_layer=12, n_head=12, d_inner=3072, num_labels=2)
    config, cost = choose_shape(tight, teacher, vocab_size=10_000)
    assert "size budget 2 MB" in cost.binding_limit and cost.bytes_int8 <= 2e6


# ------------------------------------------------------------------------------------------------ emulator


@pytest.fixture(scope="module")
def ready() -> None:
    missing = emulate._missing_tools()
    if missing:
        pytest.skip("emulator not installed: sudo scripts/install-emulator-deps.sh\n" + "\n".join(missing))
    if not mca_available():
        pytest.skip("llvm-mca not installed: sudo apt-get install -y llvm-19")
    emulate.ensure_rootfs()


@pytest.fixture(scope="module")
def loop_program(tmp_path_factory: pytest.TempPathFactory) -> Path:
    compiler = shutil.which("aarch64-linux-gnu-gcc")
    if compiler is None:
        pytest.skip("aarch64-linux-gnu-gcc not installed")
    folder = tmp_path_factory.mktemp("loop")
    (folder / "loop.c").write_text(LOOP_SOURCE)
    subprocess.run([compiler, "-O1", "-static", f"-I{RUNNER_DIR}", str(folder / "loop.c"), "-o", str(folder / "loop")],
                   check=True)  # fmt: skip
    return folder / "loop"


def run_loop(program: Path, n: int, work: Path) -> tuple[list[int], cycles.WindowProfile]:
    plugin = emulate.build_insn_plugin()
    args = ",".join([f"out={work / 'counts.txt'}", f"profile={work / 'profile.txt'}", "window=1",
                     *cycles.plugin_cache_args(PI4)])  # fmt: skip
    subprocess.run([emulate.QEMU, "-cpu", PI4.qemu_cpu, "-plugin", f"{plugin},{args}", str(program), str(n)],
                   check=True, cwd=work)  # fmt: skip
    counts = [int(x) for x in (work / "counts.txt").read_text().split()]
    return counts, cycles.read_profile(work / "profile.txt")


@pytest.mark.emulator
def test_known_loop_block_counts_and_cycles(ready: None, loop_program: Path, tmp_path: Path) -> None:
    estimates = []
    for n in (1000, 5000):
        work = tmp_path / str(n)
        work.mkdir()
        counts, profile = run_loop(loop_program, n, work)
        body = [b for b in profile.blocks if b.code == LOOP_BODY]
        assert len(body) == 1 and body[0].counts == {profile.main_vcpu: n - 1}  # the first pass runs in the entry block
        assert profile.instructions() == counts[1]  # sum of block instructions x executions == the plugin's count
        assert counts[0] == counts[1]
        estimates.append(cycles.estimate_from_profile(profile, PI4, calibrate=False).main.core_cycles)
    # 4000 more iterations of a ~1-cycle loop: the difference is the loop's cycles
    assert 0.9 * 4000 <= estimates[1] - estimates[0] <= 1.6 * 4000


@pytest.fixture(scope="module")
def tiny_pte(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from test_runner import export_pte

    return export_pte(tmp_path_factory.mktemp("pte") / "tiny_int8.pte", int8=True)


@pytest.mark.emulator
@pytest.mark.parametrize("device", [PI4, PI5], ids=lambda d: d.qemu_cpu)
def test_runner_blocks_sum_to_the_count_and_estimates_repeat(ready: None, tiny_pte: Path, device) -> None:
    from test_runner import sample_inputs

    runs = [emulate.run_pte_emulated(device, tiny_pte, sample_inputs(), profile_cycles=True) for _ in range(2)]
    estimates = [emulate.estimate_cycles(run, device) for run in runs]
    for run in runs:
        assert run.profile.window == 2 and run.profile.instructions() == run.instructions_per_inference[-1]
        assert run.profile.threads() == [run.profile.main_vcpu]  # one thread: no other thread ran in the window
    assert runs[0].instructions_per_inference[1:] == runs[1].instructions_per_inference[1:]
    a, b = (e.main.cycles for e in estimates)
    assert a == pytest.approx(b, rel=0.01)  # reproducible to 1 %
    record = cycles.latency_record(estimates[0], device)
    assert record["estimate_method"] == "cycles" and "ESTIMATE" in record["assumption"]
    assert record["estimated_latency_ms"] == pytest.approx(estimates[0].latency_ms())


@pytest.mark.emulator
def test_thread_pool_run_reports_every_thread(ready: None, tiny_pte: Path) -> None:
    from test_runner import sample_inputs

    one = emulate.estimate_cycles(emulate.run_pte_emulated(PI5, tiny_pte, sample_inputs(2), profile_cycles=True), PI5)
    run = emulate.run_pte_emulated(PI5, tiny_pte, sample_inputs(2), profile_cycles=True, threads=2)
    estimate = emulate.estimate_cycles(run, PI5)
    record = cycles.threads_record(estimate, one, requested=2)
    assert record["threads"] == 2  # what the runtime was given, whatever number of OS threads it started
    assert record["os_threads"] == len(estimate.threads) == len(record["per_thread_cycles"]) >= 1
    ratio = sum(t.instructions for t in estimate.threads) / one.main.instructions
    assert record["work_ratio"] == pytest.approx(ratio, abs=1e-3)
    if ratio <= cycles.SPIN_RATIO_LIMIT:  # measured: the slowest thread
        assert record["estimated_latency_ms"] == pytest.approx(estimate.latency_ms(estimate.critical_path))
        assert record["method"].startswith("measured")
    else:  # the pool's overhead/spinning dominates this tiny model: the stated model, said so
        assert record["estimated_latency_ms"] == pytest.approx(one.latency_ms() / record["threads"])
        assert record["method"].startswith("stated model")
    assert run.profile.instructions() == run.instructions_per_inference[-1]  # the main thread's count is unchanged


# ------------------------------------------------------------------------------------- manifest and report


def test_manifest_and_report_carry_the_estimate_sizing_and_threads() -> None:
    """The new optional fields validate, and the report shows budget, sizing prediction and emulator estimates."""
    import json

    from toolkit.manifest_schema import validate_manifest
    from toolkit.report import render_html, render_markdown

    m = json.loads((Path(__file__).parent / "data" / "sample_manifest.json").read_text(encoding="utf-8"))
    name = m["artifacts"][0]["name"]
    m["profile"] = load_profile("android-nnapi").model_dump(mode="json")  # threads and core present
    m["student"]["distill"]["sizing"] = {
        "cost_model": "tflite-full-int8 (slowest artifact): emulator-fitted model", "binding_limit": "size budget 8 MB",
        "predicted_latency_ms": 21.5, "predicted_by_artifact": {name: 21.5}, "latency_budget_ms": 30.0,
    }  # fmt: skip
    m["artifacts"][0]["emulator"].update({
        "estimate_method": "cycles", "estimated_latency_ms": 23.25, "instructions_estimate_ms": 17.01,
        "cycles": {"model": "llvm-mca 19.1.7 -mcpu=neoverse-n1 (scheduling model: Neoverse-N1 (N1Unit*))",
                   "cycles": 55_800_000, "estimated_latency_ms": 23.25, "calibration_factor": 1.0},
        "calibration": {"factor": 1.0, "held_out_ratio_median": 0.85, "held_out_ratio_range": [0.64, 1.17],
                        "held_out_rows": 9},
        "threads": {"threads": 4, "estimated_latency_ms": 7.9, "per_thread_cycles": [1, 2, 3, 4], "method": "x"},
    })  # fmt: skip
    validate_manifest(m)
    md, html = render_markdown(m, plots=[]), render_html(m, plots=[])
    for text in (md, html):
        assert "21.5" in text and "23.2" in text and "7.9" in text and "size budget 8 MB" in text
        assert "ESTIMATE" in text
