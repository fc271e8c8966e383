"""Automatic quantization-aware training: the pipeline retrains a student whose post-training static int8 artifact
fails its host check (its own file, so pytest-xdist runs it beside the other QAT tests)."""

import json

import pytest
import torch
import yaml

from test_qat import on_per_channel_grid
from toolkit.distill import DistillSettings
from toolkit.student import load_student


def test_a_failing_static_int8_artifact_is_retrained_quantization_aware(tiny_teacher_dir, small_data, tmp_path,
                                                                          monkeypatch):
    """Post-training static int8 outside the profile's tolerances: the pipeline trains one more epoch
    quantization-aware (profile ``student.auto_qat``) and exports every artifact again from that student; when
    that round fails as often, the bundle goes back to the post-training student and its artifacts.

    The first host check is made to fail: a stand-in for int8 losing agreement, which a tiny random teacher's
    near-constant student cannot be made to do reliably. Everything after it is the real pipeline. Then the same run,
    resumed with the quantization-aware round's check undone, is made to fail that check too.
    """
    import toolkit.pipeline as pipeline
    from toolkit.profiles import load_profile, shipped_profile_paths

    real_check, calls, failing = pipeline.host_check, [], {1}

    def chosen_checks_fail(*args, **kwargs):
        result = real_check(*args, **kwargs)
        calls.append(result)
        if len(calls) in failing:
            result.update(passed=False, failures=["stand-in: post-training int8 lost agreement"])
        return result

    monkeypatch.setattr(pipeline, "host_check", chosen_checks_fail)
    data = yaml.safe_load(shipped_profile_paths()["arm64-cpu"].read_text())
    data.update(name="tiny-auto-qat", sequence_length=32, sequence_lengths=[32])
    data["student"]["max_layers"] = 1  # lowering time grows with the graph: one layer halves each of three exports
    data["artifacts"] = [{"format": "pte", "recipe": "int8-static", "runtime": "executorch", "delegate": "xnnpack"}]
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(data))
    profile = load_profile(tmp_path / "p.yaml")
    train, dev = small_data
    train = train.subset(list(range(64)))  # 64 texts: each round's int8 calibration runs on all of them
    lines = []
    spec = pipeline.RunSpec(profile, train, dev, tiny_teacher_dir, DistillSettings(epochs=2, batch_size=32),
                            emulate=False)  # fmt: skip
    bundle = tmp_path / "out" / "tiny-auto-qat"
    manifest = pipeline.export_bundle(spec, tmp_path / "out", log=lines.append)
    assert len(calls) == 2 and manifest["validation"]["passed"]
    assert any("training the student one more epoch quantization-aware" in str(line) for line in lines)
    assert manifest["stages"]["qat"]["kept"] is True
    distilled = manifest["student"]["distill"]
    assert distilled["qat_from_epoch"] == 3 and distilled["epochs_run"] == 3  # the extra, quantization-aware epoch
    assert 0 <= distilled["agreement_with_float"] <= 1  # the int8-simulated student against its float self
    qat_student = load_student(bundle / "work" / "student-qat")
    assert on_per_channel_grid(qat_student.layers[0].ff.layer_1.weight.detach())
    assert [p.relative_to(bundle).as_posix() for p in bundle.glob("*/*.pte")] == ["models/pte-int8-static.pte"]
    report = (bundle / "report.html").read_text()
    assert "Quantization-aware from epoch 3 (added by the pipeline" in report and "reproduce its float self" in report

    # The quantization-aware round fails as often: undo its check (and the finished manifest), fail it, resume.
    first = json.loads((bundle / "work" / "records" / "pte-int8-static.json").read_text())
    assert not first["valid"] and (bundle / "work" / "unchecked" / "pte-int8-static.pte").is_file()  # kept aside
    for path in [bundle / "manifest.json", bundle / "models" / "pte-int8-static.pte",
                 *(bundle / "work" / "qat" / "records").glob("*.json")]:  # fmt: skip
        path.unlink()
    failing.add(3)
    lines.clear()
    with pytest.raises(pipeline.ExportFailed):
        pipeline.export_bundle(spec, tmp_path / "out", log=lines.append)
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert len(calls) == 3 and not manifest["validation"]["passed"]
    assert any("keeps the post-training student" in str(line) for line in lines)
    assert manifest["stages"]["qat"]["kept"] is False and not manifest["student"]["distill"]["qat_from_epoch"]
    (artifact,) = manifest["artifacts"]
    assert artifact["sha256"] == first["sha256"] and (bundle / artifact["file"]).is_file()  # the first round's file
    assert "whose artifacts failed as often" in (bundle / "report.html").read_text()


def test_auto_qat_waits_for_the_profile_and_an_explicit_choice():
    from toolkit.manifest import ArtifactRecord
    from toolkit.pipeline import RunSpec, qat_candidates
    from toolkit.profiles import load_profile

    def record(recipe: str, valid: bool) -> ArtifactRecord:
        return ArtifactRecord(f"pte-{recipe}", f"models/pte-{recipe}.pte", "pte", recipe, "executorch", "xnnpack",
                              "0" * 64, 1, [], [], valid=valid)  # fmt: skip

    profile = load_profile("arm64-cpu")
    records = [record("int8-static", False), record("int8-dynamic", False), record("fp32", True)]
    spec = RunSpec(profile, None, None)
    assert qat_candidates(records, spec) == ["pte-int8-static"]  # only a calibrated artifact can train for its ranges
    assert qat_candidates([record("int8-static", True)], spec) == []
    assert qat_candidates(records, RunSpec(profile, None, None, settings=DistillSettings(qat_epochs=1))) == []
    off = profile.model_copy(update={"student": profile.student.model_copy(update={"auto_qat": False})})
    assert qat_candidates(records, RunSpec(off, None, None)) == []
