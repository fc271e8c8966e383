"""Distillation stage on tiny configs: loss, initialisation, vocabulary trimming, sizing, resume."""

import numpy as np
import pytest
import torch

from toolkit.distill import (
    DistillSettings,
    choose_shape,
    distill,
    init_from_teacher,
    kd_loss,
    spread_layers,
    trim_vocabulary,
)
from toolkit.student import XLNetStudent, load_student, student_config_like
from toolkit.teacher import load_teacher
from toolkit.tokenizer import XLNetTextEncoder


def test_kd_loss_decreases_on_a_small_batch():
    torch.manual_seed(0)
    teacher_logits = torch.randn(16, 3) * 3
    labels = teacher_logits.argmax(1)
    student = torch.nn.Linear(8, 3)
    x = torch.randn(16, 8)
    optimizer = torch.optim.SGD(student.parameters(), lr=0.5)
    losses = []
    for _ in range(30):
        loss = kd_loss(student(x), teacher_logits, labels, temperature=2.0, kd_weight=0.7)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    # At equal logits the soft term vanishes and only the hard-label term is left.
    same = kd_loss(teacher_logits, teacher_logits, labels, 2.0, 1.0)
    assert same.item() == pytest.approx(0.0, abs=1e-6)


def test_spread_layers():
    assert spread_layers(6, 2) == [0, 5]
    assert spread_layers(6, 3) == [0, 2, 5] or spread_layers(6, 3) == [0, 3, 5]
    assert spread_layers(12, 1) == [0]


def test_layer_selection_copies_exactly_the_intended_tensors(tiny_teacher_dir, small_data):
    teacher, encoder = load_teacher(tiny_teacher_dir)
    vocab_map = trim_vocabulary(encoder, small_data[0])
    config = student_config_like(teacher.config, 32, n_layer=2, vocab_size=len(vocab_map))
    student, record = init_from_teacher(teacher, config, vocab_map)
    assert record["teacher_layers"] == [0, 3]
    hf = teacher.state_dict()
    st = student.state_dict()
    assert torch.equal(st["word_embedding.weight"], hf["transformer.word_embedding.weight"][vocab_map.kept_ids])
    for s_index, t_index in enumerate([0, 3]):
        q = hf[f"transformer.layer.{t_index}.rel_attn.q"]
        assert torch.equal(st[f"layers.{s_index}.attn.q.weight"], q.reshape(q.shape[0], -1).t())
        assert torch.equal(st[f"layers.{s_index}.ff.layer_1.weight"], hf[f"transformer.layer.{t_index}.ff.layer_1.weight"])
        assert not torch.equal(st[f"layers.{s_index}.ff.layer_1.weight"], hf["transformer.layer.1.ff.layer_1.weight"])
    assert torch.equal(st["logits_proj.weight"], hf["logits_proj.weight"])


def test_narrower_student_uses_the_documented_projection(tiny_teacher_dir, small_data):
    teacher, encoder = load_teacher(tiny_teacher_dir)
    vocab_map = trim_vocabulary(encoder, small_data[0])
    config = student_config_like(teacher.config, 32, n_layer=1, d_model=16, n_head=4, d_inner=32,
                                 vocab_size=len(vocab_map))
    student, record = init_from_teacher(teacher, config, vocab_map)
    assert record["scheme"] == "rotated-pca-projection"
    assert student.word_embedding.weight.shape == (len(vocab_map), 16)
    # The rows are the teacher's seen through its top-16 principal directions (a rotation keeps every inner
    # product), but no single coordinate carries the dominant direction: per-coordinate spread is balanced.
    embedding = teacher.state_dict()["transformer.word_embedding.weight"][torch.tensor(vocab_map.kept_ids)]
    _, _, v = torch.linalg.svd(embedding - embedding.mean(0, keepdim=True), full_matrices=False)
    unrotated = embedding @ v[:16].t()
    rotated = student.word_embedding.weight.detach()
    assert torch.allclose(rotated @ rotated.t(), unrotated @ unrotated.t(), atol=1e-5)
    spread = lambda e: (e.std(0).max() / e.std(0).median()).item()  # noqa: E731
    assert spread(rotated) < spread(unrotated) and spread(rotated) < 1.5


def test_trimming_round_trips_ids_and_keeps_logits(tiny_teacher_dir, small_data):
    """On text made of kept tokens, the trimmed student gives the full-vocabulary model's logits exactly."""
    teacher, encoder = load_teacher(tiny_teacher_dir)
    train = small_data[0]
    vocab_map = trim_vocabulary(encoder, train)
    assert len(vocab_map) < 2000 < encoder.vocab_size
    trimmed_encoder = encoder.with_vocab_map(vocab_map)
    texts = train.texts[:16]
    full = encoder.encode(texts, seq_len=32)
    trimmed = trimmed_encoder.encode(texts, seq_len=32)
    # student id -> original id recovers the full-vocabulary ids
    assert np.array_equal(np.asarray(vocab_map.kept_ids)[trimmed.input_ids], full.input_ids)
    full_config = student_config_like(teacher.config, 32, n_layer=4)
    from toolkit.student import student_from_xlnet

    reference = student_from_xlnet(teacher, 32).eval()
    config = student_config_like(teacher.config, 32, n_layer=4, vocab_size=len(vocab_map))
    student, _ = init_from_teacher(teacher, config, vocab_map)
    student.eval()
    with torch.no_grad():
        a = reference(torch.from_numpy(full.input_ids), torch.from_numpy(full.attention_mask))
        b = student(torch.from_numpy(trimmed.input_ids), torch.from_numpy(trimmed.attention_mask))
    assert full_config.vocab_size == 32000
    assert torch.allclose(a, b, atol=1e-6)


def test_profile_budgets_drive_the_shape(tiny_teacher_dir, short_profile):
    teacher, _ = load_teacher(tiny_teacher_dir)
    config, cost = choose_shape(short_profile, teacher.config, vocab_size=3000)
    assert config.n_layer == 2 and config.d_model == 32  # half the teacher's depth, the teacher's width
    assert cost.parameters == XLNetStudent(config).num_parameters()
    tight = short_profile.model_copy(update={
        "budgets": short_profile.budgets.model_copy(update={"artifact_mb": 0.08}),
        "student": short_profile.student.model_copy(update={"min_d_model": 16}),
    })
    config, cost = choose_shape(tight, teacher.config, vocab_size=3000)
    assert cost.bytes_int8 <= 0.08e6 and config.d_model < 32
    with pytest.raises(ValueError, match="no student shape fits"):
        choose_shape(tight, teacher.config, vocab_size=3000, max_parameters=10)


def test_resumed_run_matches_uninterrupted(tiny_teacher_dir, small_data, short_profile, tmp_path, monkeypatch):
    monkeypatch.setenv("XLNET_EDGE_CACHE", str(tmp_path / "cache"))
    train, dev = small_data
    settings = DistillSettings(epochs=2, batch_size=32, patience=5)
    kwargs = dict(n_layer=1, max_param_ratio=None, log=lambda *_: None)
    straight = distill(tiny_teacher_dir, train, dev, short_profile, tmp_path / "a", settings, **kwargs)
    (cached,) = (tmp_path / "cache" / "teacher-logits").glob("*.npy")
    written = cached.stat().st_mtime_ns
    distill(tiny_teacher_dir, train, dev, short_profile, tmp_path / "b", settings, stop_after_epochs=1, **kwargs)
    resumed = distill(tiny_teacher_dir, train, dev, short_profile, tmp_path / "b", settings, resume=True, **kwargs)
    assert resumed.report["history"] == straight.report["history"]
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)["student"]
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["student"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    student = load_student(tmp_path / "a")
    assert student.config.vocab_size == straight.report["vocab"]["student"]
    # The teacher logits were computed once (run a) and read back, not rewritten, by runs b and its resume.
    assert list((tmp_path / "cache" / "teacher-logits").glob("*.npy")) == [cached]
    assert cached.stat().st_mtime_ns == written
    assert XLNetTextEncoder.from_pretrained(tmp_path / "a").vocab_map is not None


def test_additive_bias_student_is_trained_with_the_bias_it_is_exported_with(tiny_teacher_dir, small_data, short_profile,
                                                                          tmp_path):
    """The NNAPI-style student takes an additive bias; distillation must hand it the bias, not the 1/0 mask."""
    from toolkit.distill import student_logits
    from toolkit.student import model_inputs

    train, dev = small_data
    profile = short_profile.model_copy(
        update={"student": short_profile.student.model_copy(update={"mask_input": "additive_bias"})}
    )
    result = distill(tiny_teacher_dir, train, dev, profile, tmp_path / "s", DistillSettings(epochs=1),
                     n_layer=1, max_param_ratio=None, log=lambda *_: None)
    student = load_student(tmp_path / "s")
    encoder = XLNetTextEncoder.from_pretrained(tmp_path / "s")
    assert student.config.mask_input == "additive_bias"
    eval_logits = student_logits(student, encoder, dev)  # padded to the longest in each batch
    batch = encoder.encode(dev.texts, seq_len=32)  # exported inputs: fixed length, bias prepared by model_inputs
    inputs = [torch.from_numpy(a) for a in model_inputs(student.config, batch.input_ids, batch.attention_mask)]
    with torch.no_grad():
        exported_logits = student(*inputs).numpy()
    assert np.abs(eval_logits - exported_logits).max() <= 1e-4
    assert result.report["student_dev_accuracy"] == pytest.approx(float((eval_logits.argmax(1) == dev.labels).mean()))


def test_scratch_route_takes_nothing_from_the_teachers_weights(tiny_teacher_dir, small_data, short_profile, tmp_path):
    """The benchmark baseline ("labels alone"): random init, so any gain of a recipe is the teacher's doing."""
    train, dev = small_data
    result = distill(tiny_teacher_dir, train, dev, short_profile, tmp_path / "s",
                     DistillSettings(epochs=1, route="scratch", kd_weight=0.0), n_layer=1, max_param_ratio=None,
                     log=lambda *_: None)  # fmt: skip
    assert result.report["init"]["scheme"] == "random"
    teacher, _ = load_teacher(tiny_teacher_dir)
    student = load_student(tmp_path / "s")
    kept = XLNetTextEncoder.from_pretrained(tmp_path / "s").vocab_map.kept_ids
    rows = teacher.state_dict()["transformer.word_embedding.weight"][torch.tensor(kept)]
    assert student.word_embedding.weight.shape == rows.shape
    assert not torch.allclose(student.word_embedding.weight, rows, atol=1e-2)
