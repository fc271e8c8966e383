"""Pruning and low-rank factorisation routes on tiny students: exactness, importance, export stays dense."""

import numpy as np
import pytest
import torch

from toolkit.prune import ROUTES, estimate_importance, factorise, prune_student, steps_between, top
from toolkit.student import LowRankLinear, StudentConfig, XLNetStudent


def tiny_student(seed: int = 0, **overrides) -> XLNetStudent:
    torch.manual_seed(seed)
    config = StudentConfig(**{**dict(vocab_size=50, d_model=32, n_layer=2, n_head=4, d_inner=64, num_labels=3,
                                     seq_len=16, dropout=0.0), **overrides})  # fmt: skip
    model = XLNetStudent(config).init_like_xlnet(0.2)
    for layer in model.layers:  # non-trivial norms, so slicing them is tested too
        for norm in (layer.attn.layer_norm, layer.ff.layer_norm):
            torch.nn.init.normal_(norm.weight, 1.0, 0.3)
            torch.nn.init.normal_(norm.bias, 0.0, 0.3)
    return model.eval()


def batch(seed: int = 1, size: int = 4, length: int = 12):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(9, 50, (size, length), generator=g)
    mask = torch.ones(size, length, dtype=torch.int64)
    mask[0, :4] = 0  # one left-padded row
    return ids, mask


def gated_logits(model: XLNetStudent, head_gates, neuron_gates, ids, mask):
    """The model with per-layer gates on head contexts and FFN activations (0 = that structure masked)."""
    config = model.config
    handles = []
    for index, layer in enumerate(model.layers):
        def heads_hook(_m, args, index=index):
            shape = args[0].shape
            return (args[0].reshape(*shape[:-1], config.n_head, config.d_head) * head_gates[index][:, None]).reshape(shape),
        handles.append(layer.attn.o.register_forward_pre_hook(heads_hook))
        handles.append(layer.ff.layer_2.register_forward_pre_hook(lambda _m, a, index=index: (a[0] * neuron_gates[index],)))
    try:
        with torch.no_grad():
            return model(ids, mask)
    finally:
        for h in handles:
            h.remove()


def test_pruned_heads_and_neurons_equal_the_masked_model():
    model = tiny_student()
    ids, mask = batch()
    heads, neurons = [[0, 2], [1, 3]], [list(range(0, 64, 2)), list(range(10, 42))]
    head_gates = torch.zeros(2, 4)
    neuron_gates = torch.zeros(2, 64)
    for layer in range(2):
        head_gates[layer, heads[layer]] = 1
        neuron_gates[layer, neurons[layer]] = 1
    pruned = prune_student(model, heads, neurons, list(range(32))).eval()
    assert (pruned.config.n_head, pruned.config.head_dim, pruned.config.d_inner) == (2, 8, 32)
    assert pruned.num_parameters() < model.num_parameters()
    with torch.no_grad():
        got = pruned(ids, mask)
    assert torch.allclose(got, gated_logits(model, head_gates, neuron_gates, ids, mask), atol=1e-5)


def test_pruned_width_slices_every_tensor_on_the_kept_dimensions():
    model = tiny_student()
    dims = [d for d in range(32) if d % 4 != 1]  # 24 of 32
    pruned = prune_student(model, [[0, 1, 2, 3]] * 2, [list(range(64))] * 2, dims)
    config = pruned.config
    assert (config.d_model, config.pos_dim, config.inner) == (24, 32, 32)
    kept = torch.tensor(dims)
    assert torch.equal(pruned.word_embedding.weight, model.word_embedding.weight[:, kept])
    assert torch.equal(pruned.layers[1].attn.q.weight, model.layers[1].attn.q.weight[:, kept])
    assert torch.equal(pruned.layers[1].attn.o.weight, model.layers[1].attn.o.weight[kept])
    assert torch.equal(pruned.layers[0].ff.layer_norm.weight, model.layers[0].ff.layer_norm.weight[kept])
    assert torch.equal(pruned.layers[0].attn.r.weight, model.layers[0].attn.r.weight)  # position table: unchanged
    assert torch.equal(pruned.summary.weight, model.summary.weight[kept][:, kept])
    ids, mask = batch()
    with torch.no_grad():
        assert torch.isfinite(pruned(ids, mask)).all()


def test_importance_is_zero_for_structures_that_do_nothing():
    model = tiny_student()
    with torch.no_grad():
        model.layers[0].attn.o.weight[:, 8:16] = 0  # head 1 of layer 0 writes nothing
        model.layers[1].ff.layer_2.weight[:, 5] = 0  # neuron 5 of layer 1 writes nothing
    ids, mask = batch()
    targets = torch.tensor([0, 1, 2, 0])
    loss_of = lambda m, b: torch.nn.functional.cross_entropy(m(*b), targets)  # noqa: E731
    importance = estimate_importance(model, [(ids, mask), batch(2)[0:2]], loss_of)
    assert importance.heads.shape == (2, 4) and importance.neurons.shape == (2, 64) and importance.hidden.shape == (32,)
    assert importance.heads[0, 1] == 0 and importance.heads[0].sum() > 0
    assert importance.neurons[1, 5] == 0 and importance.neurons[1].sum() > 0
    assert (importance.hidden > 0).all()
    assert top(importance.heads[0], 3) == sorted(top(importance.heads[0], 3)) and 1 not in top(importance.heads[0], 3)
    # Estimating leaves the model as it was: no hooks, same outputs, same mode.
    with torch.no_grad():
        assert torch.equal(model(ids, mask), model(ids, mask))
    assert not any(layer.attn.o._forward_pre_hooks for layer in model.layers)


def test_factorised_layers_are_the_truncated_svd_and_two_plain_linears():
    model = tiny_student()
    factored = factorise(model, 8)
    assert factored.config.linear_rank == 8
    low_rank = [m for m in factored.modules() if isinstance(m, LowRankLinear)]
    assert len(low_rank) == 2 * 6  # q, k, v, o, layer_1, layer_2 per layer
    for name, module in factored.named_modules():
        if isinstance(module, LowRankLinear):
            dense = model.get_submodule(name).weight.double()
            s = torch.linalg.svdvals(dense)
            error = torch.linalg.norm(dense - module.weight.double())
            assert error.item() == pytest.approx(torch.sqrt((s[8:] ** 2).sum()).item(), rel=1e-4)
            assert isinstance(module.up, torch.nn.Linear) and isinstance(module.down, torch.nn.Linear)
    assert factored.num_parameters() < model.num_parameters()
    # At a rank that saves nothing the projections stay dense, and the function is unchanged.
    same = factorise(model, 22)  # 22·(32+64) > 32·64 and 22·(32+32) > 32·32
    ids, mask = batch()
    with torch.no_grad():
        assert torch.allclose(same(ids, mask), model(ids, mask), atol=1e-5)


def test_steps_between_end_at_the_target():
    assert steps_between(12, 3, 3) == [8, 5, 3]
    assert steps_between(4, 4, 3) == [4, 4, 4]  # one plan length for every structure
    assert steps_between(10, 2, 1) == [2]


def test_pruned_and_factorised_students_export_dense_and_equal_to_eager(tmp_path, short_profile):
    """The exporters take the pruned / factorised shapes as they are (ordinary GEMMs), equal to eager fp32."""
    from toolkit.export_workers import export_artifact
    from toolkit.manifest import run_on_host
    from toolkit.student import eager_logits, model_inputs

    model = tiny_student(seq_len=32)
    student = factorise(prune_student(model, [[0, 3], [1, 2]], [list(range(40))] * 2, list(range(24))), 8)
    ids, mask = batch(length=32)
    inputs = [np.asarray(a) for a in model_inputs(student.config, ids.numpy().astype(np.int32), mask.numpy())]
    reference = eager_logits(student, inputs)
    artifacts = {a.name: a for a in short_profile.artifacts}
    for name in ("pte-fp32", "tflite-fp32"):
        artifact = artifacts[name]
        path = tmp_path / f"{name}.{artifact.format}"
        record = export_artifact(student, artifact, path, [], tmp_path, short_profile.lengths)
        got = run_on_host(record.to_json(), path, inputs)
        assert np.abs(got - reference).max() < 1e-4, name


def test_prune_route_distils_to_the_target_shape_and_resumes_exactly(tiny_teacher_dir, small_data, short_profile,
                                                                     tmp_path, monkeypatch):
    from toolkit.distill import DistillSettings, distill
    from toolkit.student import load_student

    monkeypatch.setenv("XLNET_EDGE_CACHE", str(tmp_path / "cache"))
    train, dev = small_data
    settings = DistillSettings(epochs=2, batch_size=32, patience=5, route="prune", prune_steps=2)
    kwargs = dict(n_layer=2, d_model=16, max_param_ratio=None, log=lambda *_: None)
    straight = distill(tiny_teacher_dir, train, dev, short_profile, tmp_path / "a", settings, **kwargs)
    shape = straight.report["shape"]
    # The tiny teacher: 4 heads of 8, FFN 64, width 32 -> 2 heads of 8 (16 head channels for width 16), width 16.
    assert (shape["n_head"], shape["head_dim"], shape["d_model"], shape["pos_dim"]) == (2, 8, 16, 32)
    assert straight.report["init"]["scheme"] == "copy" and straight.report["init"]["route"] == "prune"
    steps = straight.report["init"]["pruning"]
    assert [s["d_model"] for s in steps] == [23, 16] and all("dev_accuracy" in s for s in steps)
    student = load_student(tmp_path / "a")
    assert student.num_parameters() == straight.report["student_parameters"]
    distill(tiny_teacher_dir, train, dev, short_profile, tmp_path / "b", settings, stop_after_epochs=1, **kwargs)
    resumed = distill(tiny_teacher_dir, train, dev, short_profile, tmp_path / "b", settings, resume=True, **kwargs)
    assert resumed.report["history"] == straight.report["history"]
    assert resumed.report["init"]["pruning"] == steps  # the pruning steps stay in the report of a resumed run
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)["student"]
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["student"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="route 'snip'"):
        distill(tiny_teacher_dir, train, dev, short_profile, tmp_path / "c", DistillSettings(route="snip"), **kwargs)


def test_a_profile_names_exactly_the_routes_distillation_knows():
    from typing import get_args

    from toolkit.profiles import StudentConstraints, load_profile, shipped_profile_paths

    assert get_args(StudentConstraints.model_fields["route"].annotation) == ROUTES
    assert all(load_profile(name).student.route in ROUTES for name in shipped_profile_paths())
