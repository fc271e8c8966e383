"""PT2E quantization-aware training of the exact int8-static graph (toolkit/pt2e_qat.py, recipe int8-static-qat).

A tiny student: the training must lower its distillation loss by moving the activation ranges only (the weights stay
the student's), the sentence-like samples it trains on must be made of the calibration texts' tokens in XLNet's
layout, and the recipe must train once for every length bucket (one set of ranges in the .pte).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from toolkit.buckets import at_length, method_name
from toolkit.export_pte import _prepare, export_pte, run_pte
from toolkit.profiles import Artifact
from toolkit.pt2e_qat import joined_inputs
from toolkit.student import (
    FixedLengthClassifier,
    StudentConfig,
    XLNetStudent,
    eager_logits,
    example_inputs,
    model_inputs,
)

CONFIG = StudentConfig(vocab_size=300, d_model=32, n_layer=1, n_head=2, d_inner=64, num_labels=2, seq_len=16,
                       dropout=0.0)  # fmt: skip


def inputs(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = rng.integers(9, CONFIG.vocab_size, (n, CONFIG.seq_len)).astype(np.int32)
    mask = np.ones_like(ids)
    for row in range(n):
        pads = int(rng.integers(0, CONFIG.seq_len - 4))
        ids[row, :pads], mask[row, :pads] = 5, 0
    ids[:, -2:] = [4, 3]
    return model_inputs(CONFIG, ids, mask)


def student() -> XLNetStudent:
    torch.manual_seed(0)
    return XLNetStudent(CONFIG).init_like_xlnet(std=0.2).eval()  # larger weights: logits that differ per text


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict:
    """One int8-static-qat export (buckets 8 and 16) with its training recorded: the student, the .pte, the export
    details, how many trainings ran, the module handed to training (and its weights before), the trained module and
    its losses per epoch."""
    import toolkit.pt2e_qat

    train = toolkit.pt2e_qat.trained_quantization_aware
    seen: dict = {"trainings": 0}

    def recording(module, *args, **kwargs):
        seen.update(trainings=seen["trainings"] + 1, input=module, losses=[],
                    before={name: p.detach().clone() for name, p in module.named_parameters()})  # fmt: skip
        seen["trained"] = train(module, *args, losses=seen["losses"], epochs=2, **kwargs)
        seen["untrained"] = train(module, *args, epochs=0, **kwargs)  # the histogram ranges it starts from
        return seen["trained"]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(toolkit.pt2e_qat, "trained_quantization_aware", recording)
        patch.setattr(toolkit.pt2e_qat, "JOINED", 128)  # a tiny student needs no more
        model = student()
        path = tmp_path_factory.mktemp("qat") / "qat.pte"
        details = export_pte(model, Artifact(format="pte", recipe="int8-static-qat", runtime="executorch",
                                             delegate="xnnpack"), path, calibration=inputs(32, seed=1), lengths=[8, 16])  # fmt: skip
    return {**seen, "student": model, "path": path, "details": details}


def test_training_lowers_the_loss_by_moving_the_ranges_and_keeps_the_weights(exported):
    losses, module, before, trained = (exported[k] for k in ("losses", "input", "before", "trained"))
    assert len(losses) == 3 and losses[-1] < losses[0], losses  # before training, after each of 2 epochs
    assert all(torch.equal(p, before[name]) for name, p in module.named_parameters()), "the input module is untouched"
    assert all(torch.equal(p, before[name]) for name, p in trained.named_parameters()), "the weights are the student's"
    ranges, start = trained.activation_ranges, exported["untrained"].activation_ranges
    assert ranges and set(ranges) == set(start) and all(low <= 0 <= high for low, high in ranges.values())
    moved = [name for name in ranges if not np.allclose(ranges[name], start[name], rtol=1e-4)]
    assert len(moved) > len(ranges) // 2, "training moved the activation ranges"


def test_joined_samples_are_calibration_tokens_in_xlnets_layout():
    source = inputs(8, seed=5)
    joined = joined_inputs(CONFIG, source, count=20, seed=0)
    ids, mask = joined[0], joined[1]
    assert ids.shape == (20, CONFIG.seq_len) and mask.dtype == source[1].dtype
    assert (ids[:, -2:] == [4, 3]).all(), "one <sep> <cls> at the end"
    words = set(source[0][source[1] == 1].tolist()) - {4, 3}
    for row, real in zip(ids, mask == 1):
        assert not real[: int(np.argmax(real))].any() and real[int(np.argmax(real)) :].all(), "left padding"
        assert set(row[~real].tolist()) <= {5} and set(row[real][:-2].tolist()) <= words
        assert 4 not in row[real][:-2].tolist(), "the joined texts' own <sep>s are dropped"
    assert mask.sum(1).mean() > source[1].sum(1).mean(), "longer than the texts they are made of"


def test_joined_pairs_keep_each_segment_together():
    config = StudentConfig(vocab_size=300, d_model=32, n_layer=1, n_head=2, d_inner=64, num_labels=2, seq_len=24,
                           uses_pairs=True)  # fmt: skip
    ids = np.full((3, 24), 5, dtype=np.int32)
    types = np.full((3, 24), 3, dtype=np.int32)
    for row, (a, b) in enumerate([([10, 11], [20]), ([12], [21, 22]), ([13, 14], [23])]):
        tokens, kinds = a + [4] + b + [4, 3], [0] * (len(a) + 1) + [1] * (len(b) + 1) + [2]
        ids[row, -len(tokens):], types[row, -len(tokens):] = tokens, kinds
    source = model_inputs(config, ids, (ids != 5).astype(np.int32), types)
    joined = joined_inputs(config, source, count=10, seed=1)
    for row, kinds, real in zip(joined[0], joined[2], joined[1] == 1):
        tokens, kinds = row[real].tolist(), kinds[real].tolist()
        first_b = kinds.index(1)
        assert kinds == sorted(kinds) and kinds[-1] == 2 and tokens[-1] == 3
        assert tokens[first_b - 1] == 4 and tokens[-2] == 4 and tokens.count(4) == 2, tokens
        assert set(tokens[: first_b - 1]) <= {10, 11, 12, 13, 14} and set(tokens[first_b:-2]) <= {20, 21, 22, 23}


def test_recipe_trains_once_for_every_bucket_and_each_bucket_stays_close(exported):
    model, path, details = exported["student"], exported["path"], exported["details"]
    assert exported["trainings"] == 1, "one training for both buckets: every method shares its weights and ranges"
    assert "quantization-aware" in details["quantization"]["scheme"]
    check = inputs(12, seed=3)
    reference = eager_logits(model, check)
    bound = 0.1 * np.abs(reference).max()
    assert np.abs(run_pte(path, check, method_name(16)) - reference).max() <= bound
    fits = np.asarray(check[1]).sum(axis=1) <= 8  # texts that fit the short bucket
    assert fits.sum() >= 2
    short = run_pte(path, at_length([a[fits] for a in check], 8), method_name(8))
    assert np.abs(short - reference[fits]).max() <= bound


@pytest.mark.emulator
def test_the_trained_program_runs_on_the_emulated_cpu_as_on_the_host(exported):
    from toolkit import emulate
    from toolkit.profiles import load_profile

    if emulate._missing_tools():
        pytest.skip("emulator not installed: sudo scripts/install-emulator-deps.sh")
    emulate.ensure_rootfs()
    path = exported["path"]
    check = inputs(6, seed=4)
    host = run_pte(path, check, method_name(16))
    run = emulate.run_pte_emulated(load_profile("raspberry-pi-5").device, path, check, method=method_name(16))
    # int8 kernels on ARM and x86 may round one step apart inside the layers (the head and logits are float).
    np.testing.assert_allclose(run.logits, host, rtol=0, atol=3 * np.ptp(host) / 255)


def _linears_reading_int8(program, module_name: str) -> list[bool]:
    """For each linear of ``module_name`` in ``program``: does its input come dequantized from int8?"""
    linears = [node for node in program.graph.nodes if node.target == torch.ops.aten.linear.default
               and any(path.endswith(module_name) for path, _ in node.meta.get("nn_module_stack", {}).values())]
    return ["dequantize" in str(node.args[0].target) for node in linears]


@pytest.mark.parametrize("recipe", ["int8-static-histogram", "int8-static-qat"])
def test_the_classifier_head_stays_float_and_the_layers_run_int8(recipe, exported):
    """A quantized head puts the logits on an int8 grid, where near-tie margins become ties argmax settles for
    label 0; the head runs once per text, so it stays float while the layers' linears read int8."""
    module = FixedLengthClassifier(student().with_op_variants(xnnpack=True)).eval()
    if recipe == "int8-static-qat":
        module.activation_ranges = exported["trained"].activation_ranges  # what its training returns
    program = _prepare(recipe, module, example_inputs(CONFIG, 16), inputs(8, seed=2)).program
    assert _linears_reading_int8(program, "summary") == [False]
    assert _linears_reading_int8(program, "logits_proj") == [False]
    assert _linears_reading_int8(program, "ff.layer_1") == [True] and _linears_reading_int8(program, "attn.o") == [True]
