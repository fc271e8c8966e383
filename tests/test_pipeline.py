"""The main job end to end on a tiny teacher: every stage, the bundle, resume, and failing checks that fail."""

import json

import numpy as np
import pytest
import yaml

from toolkit.distill import DistillSettings
from toolkit.pipeline import ExportFailed, OutputFolderError, RunSpec, export_bundle, validate_existing_bundle
from toolkit.profiles import load_profile, shipped_profile_paths


def tiny_profile(tmp_path, name="raspberry-pi-4", **tolerances):
    """A shipped profile at sequence length 32 with a one-layer student and a few emulated samples; loose tolerances for a random teacher."""
    data = yaml.safe_load(shipped_profile_paths()[name].read_text())
    data["name"] = f"tiny-{name}"
    data["sequence_length"], data["sequence_lengths"] = 32, [16, 32]
    data["validation"]["emulator_samples"] = 6
    data["student"]["max_layers"] = 1  # lowering and emulation time grow with the graph; no stage here needs depth
    data["validation"]["tolerances"].update(
        {"max_accuracy_drop_points": 60, "min_argmax_agreement": 0.5, **tolerances}
    )
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_profile(path)


@pytest.mark.emulator
def test_export_bundle_end_to_end_and_resume(tiny_teacher_dir, small_data, tmp_path):
    train, dev = small_data
    profile = tiny_profile(tmp_path)
    # One artifact per format (the pi-4 profile's int8 ones: ExecuTorch and tflite-runtime 2.14); both fp32 ones go
    # through the pipeline in test_tolerance_failure_fails_the_export and the kill tests.
    profile = profile.model_copy(update={"artifacts": [a for a in profile.artifacts if a.recipe != "fp32"]})
    assert {a.format for a in profile.artifacts} == {"pte", "tflite"}
    spec = RunSpec(profile, train, dev, tiny_teacher_dir, DistillSettings(epochs=1, batch_size=32))
    logs = []
    manifest = export_bundle(spec, tmp_path / "out", log=logs.append)
    bundle = tmp_path / "out" / profile.name
    assert manifest["validation"]["passed"]
    assert [a["name"] for a in manifest["artifacts"]] == [a.name for a in profile.artifacts]
    for artifact in manifest["artifacts"]:
        assert artifact["valid"] and (bundle / artifact["file"]).is_file()
        kinds = [c["kind"] for c in artifact["checks"]]
        assert kinds == ["host", "emulator"]
        assert artifact["emulator"]["cpu"] == "cortex-a72" and artifact["emulator"]["instructions_per_inference"] > 0
    for name in ("manifest.json", "labels.json", "tokenizer.json", "report.html", "report.md"):
        assert (bundle / name).is_file(), name
    assert json.loads((bundle / "labels.json").read_text()) == ["negative", "positive"]

    # A finished bundle is not overwritten by a second run.
    with pytest.raises(OutputFolderError, match="already holds a finished bundle.*--overwrite"):
        export_bundle(spec, tmp_path / "out", log=logs.append)

    # A run stopped before its last write resumes: nothing is distilled, exported or emulated again.
    saved_manifest = (bundle / "manifest.json").read_bytes()
    (bundle / "manifest.json").unlink()
    logs.clear()
    export_bundle(spec, tmp_path / "out", log=logs.append)
    text = "\n".join(map(str, logs))
    assert "already distilled" in text and "already exported" in text and "dev samples on emulated" not in text
    assert json.loads((bundle / "manifest.json").read_bytes())["artifacts"] == json.loads(saved_manifest)["artifacts"]

    # An unfinished run with other settings in the same folder is refused rather than mixed in.
    (bundle / "manifest.json").unlink()
    other = RunSpec(profile, train, dev, tiny_teacher_dir, DistillSettings(epochs=2))
    with pytest.raises(OutputFolderError, match="different profile, data, teacher or settings.*--overwrite"):
        export_bundle(other, tmp_path / "out", log=logs.append)
    (bundle / "manifest.json").write_bytes(saved_manifest)

    # A corrupted artifact fails validation and is moved out of models/.
    victim = next(a for a in manifest["artifacts"] if a["format"] == "tflite")
    path = bundle / victim["file"]
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2 : len(blob) // 2 + 64] = bytes(64)
    path.write_bytes(bytes(blob))
    revalidated = validate_existing_bundle(bundle, profile, None, log=logs.append)
    assert not revalidated["validation"]["passed"]
    bad = next(a for a in revalidated["artifacts"] if a["name"] == victim["name"])
    assert not bad["valid"] and bad["file"].startswith("rejected/")
    assert "sha256" in " ".join(bad["checks"][-1]["failures"])


def test_tolerance_failure_fails_the_export(tiny_teacher_dir, small_data, tmp_path):
    """An impossible float tolerance rejects every fp32 artifact and the export raises after writing the manifest."""
    train, dev = small_data
    profile = tiny_profile(tmp_path, fp32_max_abs_logit_diff=1e-12)
    profile = profile.model_copy(update={"artifacts": [a for a in profile.artifacts if a.recipe == "fp32"]})
    spec = RunSpec(profile, train, dev, tiny_teacher_dir, DistillSettings(epochs=1), emulate=False)
    with pytest.raises(ExportFailed, match="failed their checks"):
        export_bundle(spec, tmp_path / "out")
    bundle = tmp_path / "out" / profile.name
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert not manifest["validation"]["passed"]
    assert all(not a["valid"] and a["file"].startswith("rejected/") for a in manifest["artifacts"])
    assert not list((bundle / "models").glob("*"))
