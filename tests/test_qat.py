"""Quantization-aware training on tiny students: fake quantization, the int8 grid, resume, and the full-int8 export."""

import numpy as np
import pytest
import torch
import yaml

from toolkit.distill import DistillSettings, distill
from toolkit.qat import QuantAware
from toolkit.student import StudentConfig, XLNetStudent, load_student


def tiny() -> XLNetStudent:
    torch.manual_seed(0)
    config = StudentConfig(vocab_size=50, d_model=32, n_layer=2, n_head=4, d_inner=64, num_labels=2, seq_len=16,
                           dropout=0.0)  # fmt: skip
    return XLNetStudent(config).init_like_xlnet(0.2)


def on_per_channel_grid(weight: torch.Tensor) -> bool:
    """Every row is integers in [-127, 127] times that row's scale (max |w| / 127)."""
    scale = weight.abs().amax(dim=1, keepdim=True) / 127
    steps = weight / scale
    return bool(torch.allclose(steps, steps.round(), atol=1e-3) and steps.abs().max() <= 127.001)


def test_fake_quantization_trains_the_same_parameters_and_snapshots_on_the_grid():
    model = tiny()
    before = {id(p) for p in model.parameters()}
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    qat = QuantAware(model)
    assert {id(p) for p in model.parameters()} == before  # an optimizer made before keeps training them
    ids, mask = torch.randint(9, 50, (4, 12)), torch.ones(4, 12, dtype=torch.int64)
    qat.calibrate([(ids[i : i + 1], mask[i : i + 1]) for i in range(4)])
    assert len(qat.activations) > 50  # every op output of 2 layers: linears, products, adds, softmax, norms...
    model(ids, mask).sum().backward()
    assert model.layers[0].attn.q.weight.grad.abs().sum() > 0  # straight-through
    with torch.no_grad():
        fake = model(ids, mask)
        plain = tiny()(ids, mask)
    assert 0 < (fake - plain).abs().max() < 0.5  # quantization noise, not another function
    seen = {}
    model.layers[0].attn.layer_norm.register_forward_hook(lambda _m, _a, out: seen.update(norm=out))
    model.layers[0].ff.activation.register_forward_hook(lambda _m, _a, out: seen.update(act=out))
    model.layers[0].attn.probs.register_forward_hook(lambda _m, _a, out: seen.update(probs=out))
    model.layers[0].attn.logits.register_forward_hook(lambda _m, _a, out: seen.update(logits=out))
    model.layers[0].attn.k.register_forward_hook(lambda _m, _a, out: seen.update(keys=out))
    with torch.no_grad():
        model(ids, mask)
    for name, out in seen.items():  # full-int8 rounds these tensors: at most 256 levels each
        assert out.unique().numel() <= 256, name
    ranges = qat.state_dict()
    restored = QuantAware(tiny())
    restored.load_state_dict(ranges)  # a checkpoint's ranges come back into a fresh model's QAT
    assert all(torch.equal(v, ranges[k]) for k, v in restored.state_dict().items())
    snapshot = qat.snapshot()
    assert set(snapshot.state_dict()) == set(weights)
    assert on_per_channel_grid(snapshot.layers[1].ff.layer_1.weight.detach())
    assert not on_per_channel_grid(weights["layers.1.ff.layer_1.weight"])
    assert set(qat.plain_state_dict()) == set(weights)
    qat.detach()
    plain_copy = type(model)(model.config).eval()
    plain_copy.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.equal(model.eval()(ids, mask), plain_copy(ids, mask))  # float again


def test_qat_epochs_follow_distillation_reproduce_the_float_student_and_resume_exactly(
    tiny_teacher_dir, small_data, short_profile, tmp_path, monkeypatch
):
    from toolkit.distill import QAT_REFERENCE, student_logits
    from toolkit.tokenizer import XLNetTextEncoder

    monkeypatch.setenv("XLNET_EDGE_CACHE", str(tmp_path / "cache"))
    train, dev = small_data
    settings = DistillSettings(epochs=2, batch_size=32, patience=5, qat_epochs=2)
    kwargs = dict(n_layer=1, d_model=16, max_param_ratio=None, log=lambda *_: None)
    straight = distill(tiny_teacher_dir, train, dev, short_profile, tmp_path / "a", settings, **kwargs)
    assert straight.report["qat_from_epoch"] == 3 and straight.report["epochs_run"] == 4  # 2 distilled + 2 QAT
    assert straight.report["student_best_epoch"] >= 3 and 0 <= straight.report["agreement_with_float"] <= 1
    assert all("agreement_with_float" in h for h in straight.report["history"][2:])
    student = load_student(tmp_path / "a")
    assert on_per_channel_grid(student.layers[0].attn.o.weight.detach())
    # Stopped after distillation, then after the first QAT epoch, then finished: the same history and student.
    distill(tiny_teacher_dir, train, dev, short_profile, tmp_path / "b", settings, stop_after_epochs=2, **kwargs)
    float_student = load_student(tmp_path / "b")  # the best distilled epoch: what QAT starts from
    encoder = XLNetTextEncoder.from_pretrained(tmp_path / "a")
    distill(tiny_teacher_dir, train, dev, short_profile, tmp_path / "b", settings, stop_after_epochs=3, resume=True,
            **kwargs)  # fmt: skip
    # The QAT target: the best distilled student's own logits (cached for the resumed epochs).
    reference = torch.load(tmp_path / "b" / QAT_REFERENCE, weights_only=True)
    assert np.allclose(reference["dev"].numpy(), student_logits(float_student, encoder, dev), atol=1e-5)
    resumed = distill(tiny_teacher_dir, train, dev, short_profile, tmp_path / "b", settings, resume=True, **kwargs)
    assert resumed.report["history"] == straight.report["history"]
    a, b = load_student(tmp_path / "a").state_dict(), load_student(tmp_path / "b").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="qat epochs -1"):
        distill(tiny_teacher_dir, train, dev, short_profile, tmp_path / "c", DistillSettings(epochs=3, qat_epochs=-1),
                **kwargs)  # fmt: skip


@pytest.mark.slow
@pytest.mark.emulator
def test_qat_student_passes_the_host_and_emulator_checks_of_full_int8(tiny_teacher_dir, small_data, tmp_path):
    from toolkit.pipeline import RunSpec, export_bundle
    from toolkit.profiles import load_profile, shipped_profile_paths

    data = yaml.safe_load(shipped_profile_paths()["arm64-cpu"].read_text())
    data.update(name="tiny-qat", sequence_length=32, sequence_lengths=[32])
    data["artifacts"] = [
        {"format": "pte", "recipe": "int8-static", "runtime": "executorch", "delegate": "xnnpack"},
        {"format": "tflite", "recipe": "full-int8", "runtime": "ai-edge-litert", "delegate": "xnnpack"},
    ]
    data["validation"]["emulator_samples"] = 6
    data["validation"]["tolerances"].update({"max_accuracy_drop_points": 60, "min_argmax_agreement": 0.5})
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(data))
    profile = load_profile(tmp_path / "p.yaml")
    train, dev = small_data
    spec = RunSpec(profile, train, dev, tiny_teacher_dir, DistillSettings(epochs=2, batch_size=32, qat_epochs=1))
    manifest = export_bundle(spec, tmp_path / "out", log=lambda *_: None)
    assert manifest["validation"]["passed"]
    assert manifest["student"]["distill"]["settings"]["qat_epochs"] == 1
    for artifact in manifest["artifacts"]:
        assert artifact["valid"] and [c["kind"] for c in artifact["checks"]] == ["host", "emulator"]


def test_a_failing_static_int8_artifact_points_to_qat():
    from toolkit.manifest import ArtifactRecord
    from toolkit.pipeline import qat_hint

    def record(recipe: str) -> ArtifactRecord:
        return ArtifactRecord(f"pte-{recipe}", f"models/pte-{recipe}.pte", "pte", recipe, "executorch", "xnnpack",
                              "0" * 64, 1, [], [])  # fmt: skip

    static = record("int8-static")
    failed, passed = {"passed": False}, {"passed": True}
    assert "--qat-epochs 1" in qat_hint(static, failed, DistillSettings())
    assert "`int8-static-histogram` or `int8-static-qat`" in qat_hint(static, failed, DistillSettings())
    assert "int8-static-qat" not in qat_hint(record("int8-static-embedding"), failed, DistillSettings())  # none yet
    assert qat_hint(static, passed, DistillSettings()) is None
    assert qat_hint(static, failed, DistillSettings(qat_epochs=1)) is None  # already quantization-aware
    assert qat_hint(record("int8-dynamic"), failed, DistillSettings()) is None  # no calibrated ranges to train for
