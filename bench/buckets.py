"""Length buckets vs one fixed length, side by side, for finished bundles (``toolkit export`` with the emulator).

For every artifact of each bundle: the file with one method per length bucket (as shipped) against the same
student exported at the longest length only (re-exported here with the same recipe), and

* size: bucketed bytes / single-length bytes (goal <= 1.15x: weights are stored once for all lengths);
* accuracy on the whole dev set on the host runtime: every text in its bucket (the bundle's host check) vs every
  text at the longest length (the single-length file), and how many predictions differ;
* estimated latency on the profile's emulated core (from the bundle's emulator stage): the longest bucket (what
  every text costs at one fixed length; the same graph as the single-length file) and the expected latency over the
  dev set's length distribution (goal: >= 3x lower).

    python bench/buckets.py out/raspberry-pi-4 out/arm64-cpu

Writes the "Length buckets" section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import machine_line, write_section  # noqa: E402
from toolkit.data import load_labelled  # noqa: E402
from toolkit.manifest import ArtifactRecord  # noqa: E402
from toolkit.pipeline import CALIBRATION_SAMPLES, Distilled, calibration_inputs, default_data  # noqa: E402
from toolkit.profiles import Artifact, Profile  # noqa: E402
from toolkit.registry import get_backend, get_recipe  # noqa: E402


def bundle_rows(bundle: Path) -> tuple[Profile, list[list[str]]]:
    manifest = json.loads((bundle / "manifest.json").read_text())
    profile = Profile.model_validate(manifest["profile"])
    train, _ = default_data()
    dev = load_labelled(Path(manifest["data"]["eval"]["path"]), label_names=train.label_names)
    work = bundle / "work"
    distilled = Distilled.load(work / "student", dev, work)
    labels = np.asarray(dev.labels)
    calibration = calibration_inputs(distilled.student, distilled.encoder, train, profile.validation.seed)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for entry in manifest["artifacts"]:
            record = ArtifactRecord(**entry)
            artifact = Artifact(format=record.format, recipe=record.recipe, runtime=record.runtime,
                                delegate=record.delegate)  # fmt: skip
            backend = get_backend(record.format)
            single = Path(tmp) / f"{record.name}.{backend.suffix}"
            uses = calibration if get_recipe(record.format, record.recipe).calibrates else None
            backend.export(distilled.student, artifact, single, uses, [profile.sequence_length])
            fixed_logits = backend.run_on_host(single, distilled.dev_inputs, record.runtime)
            host = next(c for c in record.checks if c["kind"] == "host")
            bucketed_correct = np.unpackbits(np.frombuffer(bytes.fromhex(host["details"]["correct_bits"]), np.uint8))
            bucketed_correct = bucketed_correct[: len(labels)].astype(bool)
            fixed_correct = fixed_logits.argmax(1) == labels
            run = record.emulator or {}
            fixed_ms, expected_ms = run.get("estimated_latency_ms"), run.get("expected_latency_ms")
            rows.append([
                profile.name, record.name, f"{single.stat().st_size / 1e6:.2f}", f"{record.bytes / 1e6:.2f}",
                f"{record.bytes / single.stat().st_size:.3f}x",
                f"{fixed_correct.mean():.4f}", f"{host['accuracy']:.4f}",
                f"{int((fixed_correct != bucketed_correct).sum())}",
                f"{fixed_ms:.2f}" if fixed_ms else "–", f"{expected_ms:.2f}" if expected_ms else "–",
                f"{fixed_ms / expected_ms:.2f}x" if fixed_ms and expected_ms else "–",
            ])  # fmt: skip
            print(" | ".join(rows[-1]), flush=True)
    return profile, rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("bundles", nargs="+", type=Path, help="finished bundle folders (out/<profile>)")
    args = parser.parse_args()
    header = ["profile", "artifact", "single-length MB", "bucketed MB", "size ratio", "acc. fixed length",
              "acc. bucketed", "predictions that differ", "est. ms fixed length", "est. ms expected (dev lengths)",
              "fixed ÷ expected"]  # fmt: skip
    rows, notes = [], []
    for bundle in args.bundles:
        profile, found = bundle_rows(bundle)
        rows += found
        manifest = json.loads((bundle / "manifest.json").read_text())
        buckets = next((a["emulator"]["buckets"] for a in manifest["artifacts"] if (a.get("emulator") or {}).get("buckets")), [])
        shares = ", ".join(f"{b['sequence_length']}: {b['eval_share']:.1%}" for b in buckets)
        notes.append(f"- {profile.name}: buckets {list(profile.lengths)}, share of the {manifest['data']['eval']['examples']} "
                     f"dev texts an app runs in each: {shares}; emulated {profile.device.qemu_cpu}, 1 thread.")
    table = "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                      + ["| " + " | ".join(r) + " |" for r in rows])
    text = "\n".join([
        "## Length buckets: one artifact, one method per length",
        "",
        "Each text runs at the shortest length bucket that holds it (`.pte`: one method per length, `.tflite`: one "
        "signature per length; weights stored once). Single-length = the same student and recipe exported at the "
        "longest length only (what every bundle shipped before). Accuracy: host runtime on the whole dev set. "
        "Latency: the emulator's ESTIMATE on the profile's core; fixed length = the longest bucket (same graph as the "
        "single-length file), expected = sum over buckets of the share of dev texts run in it x its estimate.",
        "",
        table,
        "",
        *notes,
        f"- Machine: {machine_line()}; calibration (static recipes): {CALIBRATION_SAMPLES} seeded training samples.",
        "",
        "Reproduce: `./toolkit.sh export --target raspberry-pi-4 && ./toolkit.sh export --target arm64-cpu && "
        "python bench/buckets.py out/raspberry-pi-4 out/arm64-cpu`",
    ])
    write_section("buckets", text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
