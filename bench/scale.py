"""Real-scale teachers through the main job, as a newcomer runs it (issue: a user's real fine-tuned XLNet).

For each teacher shape (xlnet-base: 12 x 768, 117 M parameters; xlnet-large: 24 x 1024, 360 M) a randomly
initialised ``XLNetForSequenceClassification`` is written with transformers' own ``save_pretrained`` (no tokenizer
files, default ``LABEL_0``/``LABEL_1`` names: what a fine-tuned checkpoint looks like without its tokenizer), then

    toolkit export --target PROFILE --teacher T --out OUT --overwrite

runs as a subprocess on the bundled 20,000-text SST-2 sample, with the emulator. Measured: whole wall time, peak
RSS (sampled with psutil every 0.5 s: the largest single process, with its command and the moment it peaked, and the
whole process tree's sum), the teacher-logits time
and texts/s (from the distillation report), and every stage's seconds (from the manifest). The teacher-logits cache
is emptied first so the logits are really computed. Writes the ``scale`` section of BENCHMARKS.md.

    python bench/scale.py [--shapes base large] [--target arm64-cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine_line, write_section  # noqa: E402

from toolkit.files import PROJECT_ROOT, cache_dir  # noqa: E402

SHAPES = {
    "base": {"n_layer": 12, "d_model": 768, "n_head": 12, "d_inner": 3072},
    "large": {"n_layer": 24, "d_model": 1024, "n_head": 16, "d_inner": 4096},
}
TARGETS = {"base": {"minutes": 12, "rss_gb": 2.5}, "large": {"minutes": 30, "rss_gb": 5.0}}


def write_teacher(shape: str, folder: Path) -> Path:
    """A random xlnet-<shape>-shaped classifier saved by transformers (cached: same seed, same bytes)."""
    if (folder / "config.json").is_file():
        return folder
    import torch
    from transformers import XLNetConfig, XLNetForSequenceClassification

    torch.manual_seed(0)
    model = XLNetForSequenceClassification(XLNetConfig(vocab_size=32000, num_labels=2, **SHAPES[shape]))
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial, safe_serialization=True)
    partial.rename(folder)
    return folder


class RssSampler(threading.Thread):
    """Peak resident memory of a process tree: the largest single process (which one, when) and the tree's sum."""

    def __init__(self, pid: int, interval: float = 0.5):
        super().__init__(daemon=True)
        self.pid, self.interval, self.started = pid, interval, time.time()
        self.peak_single = (0, "", 0.0)  # bytes, command, seconds after start
        self.peak_tree = (0, 0.0)
        self.stopped = threading.Event()

    def run(self) -> None:
        import psutil

        try:
            root = psutil.Process(self.pid)
        except psutil.Error:
            return
        while not self.stopped.wait(self.interval):
            try:
                processes = [root, *root.children(recursive=True)]
            except psutil.Error:
                return
            total, now = 0, time.time() - self.started
            for process in processes:
                try:
                    rss = process.memory_info().rss
                    if rss > self.peak_single[0]:
                        self.peak_single = (rss, " ".join(process.cmdline()[:4])[:120], now)
                except psutil.Error:
                    continue
                total += rss
            if total > self.peak_tree[0]:
                self.peak_tree = (total, now)


def run_export(teacher: Path, target: str, out: Path, log_path: Path) -> dict:
    """The export as a subprocess: wall seconds, peak RSS (largest process and whole tree), exit code."""
    shutil.rmtree(cache_dir("teacher-logits"), ignore_errors=True)  # compute the logits for real
    command = [str(PROJECT_ROOT / ".venv" / "bin" / "toolkit"), "export", "--target", target, "--teacher",
               str(teacher), "--out", str(out), "--overwrite"]
    started = time.time()
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=PROJECT_ROOT)
        sampler = RssSampler(process.pid)
        sampler.start()
        code = process.wait()
        sampler.stopped.set()
    wall = time.time() - started
    single, command_at_peak, single_at = sampler.peak_single
    return {"exit": code, "wall_s": wall, "peak_rss_gb": single / 1e9, "peak_process": command_at_peak,
            "peak_at_s": single_at, "peak_tree_gb": sampler.peak_tree[0] / 1e9, "peak_tree_at_s": sampler.peak_tree[1],
            "command": " ".join(command[1:])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", nargs="+", default=["base", "large"], choices=list(SHAPES))
    parser.add_argument("--target", default="arm64-cpu")
    parser.add_argument("--work", type=Path, default=Path("out/bench-scale"))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    results_path = args.work / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    for shape in args.shapes:
        teacher = write_teacher(shape, args.work / "teachers" / f"xlnet-{shape}")
        out = args.work / f"out-{shape}"
        run = run_export(teacher, args.target, out, args.work / f"export-{shape}.log")
        manifest_path = out / args.target / "manifest.json"
        row = {"shape": shape, **run}
        if manifest_path.is_file():
            manifest = json.loads(manifest_path.read_text())
            distilled = json.loads((out / args.target / "work" / "student" / "distill_report.json").read_text())
            logits = distilled["teacher_logits"]
            row.update(
                teacher_parameters=manifest["teacher"]["parameters"],
                teacher_mb=sum(p.stat().st_size for p in teacher.glob("*.safetensors")) / 1e6,
                logits_s=logits["seconds"],
                texts_per_s=logits["texts"] / max(logits["seconds"], 1e-9),
                texts=logits["texts"],
                stages={k: v["seconds"] for k, v in manifest["stages"].items()},
                student=f"{manifest['student']['config']['n_layer']} x d{manifest['student']['config']['d_model']}",
                student_parameters=manifest["student"]["parameters"],
                valid=sum(a["valid"] for a in manifest["artifacts"]),
                artifacts=len(manifest["artifacts"]),
            )
        results[shape] = row
        results_path.write_text(json.dumps(results, indent=2))
        print(json.dumps(row, indent=2), flush=True)
    write_section("scale", render(results, args.target))


def render(results: dict, target: str) -> str:
    lines = [
        "## Real-scale teachers through the main job (`bench/scale.py`)",
        "",
        f"`toolkit export --target {target} --teacher T` on the bundled 20,000-text SST-2 sample with the emulator, "
        "T a random xlnet-base/large-shaped `XLNetForSequenceClassification` written by transformers' "
        "`save_pretrained` (no tokenizer files, `LABEL_0/1`), teacher-logits cache emptied first. "
        f"Machine: {machine_line()}. Reproduce: `python bench/scale.py`.",
        "",
        "| teacher | params | safetensors MB | teacher logits: s (texts/s) | distill s (incl. logits) | "
        "export + host checks s | emulator s | whole export | peak RSS (when) | target | student | valid artifacts |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|",
    ]
    for shape, r in results.items():
        target_text = f"≤ {TARGETS[shape]['minutes']} min, ≤ {TARGETS[shape]['rss_gb']} GB"
        met = r["wall_s"] <= 60 * TARGETS[shape]["minutes"] and r["peak_rss_gb"] <= TARGETS[shape]["rss_gb"]
        if "stages" not in r:
            lines.append(f"| xlnet-{shape} | | | | | | | exit {r['exit']} after {r['wall_s'] / 60:.1f} min | "
                         f"{r['peak_rss_gb']:.2f} GB | {target_text} | | |")
            continue
        st = r["stages"]
        lines.append(
            f"| xlnet-{shape} ({SHAPES[shape]['n_layer']} × {SHAPES[shape]['d_model']}) | "
            f"{r['teacher_parameters'] / 1e6:.0f} M | {r['teacher_mb']:.0f} | {r['logits_s']:.0f} "
            f"({r['texts_per_s']:.0f}) | {st['distill']:.0f} | {st['export'] + st['host_checks']:.0f} | "
            f"{st['emulator']:.0f} | **{r['wall_s'] / 60:.1f} min** | **{r['peak_rss_gb']:.2f} GB** "
            f"({_stage_at(r.get('peak_at_s'), st)}) | {target_text}: "
            f"{'met' if met else 'MISSED'} | {r['student']} ({r['student_parameters'] / 1e6:.2f} M) | "
            f"{r['valid']}/{r['artifacts']} |"
        )
    return "\n".join(lines)


def _stage_at(seconds: float | None, stages: dict) -> str:
    """The stage running ``seconds`` after the start (stage durations in the manifest's order)."""
    if seconds is None:
        return "?"
    elapsed = 0.0
    for name in ("teacher", "distill", "export", "host_checks", "emulator", "bundle"):
        elapsed += stages.get(name, 0.0)
        if seconds <= elapsed:
            return f"{name}, {seconds:.0f} s in"
    return f"{seconds:.0f} s in"


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
