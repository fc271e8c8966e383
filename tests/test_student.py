"""The export-friendly student computes exactly transformers' XLNet on the same weights."""

import numpy as np
import pytest
import torch
from transformers import XLNetConfig, XLNetForSequenceClassification

from toolkit.student import (
    FixedLengthClassifier,
    StudentConfig,
    XLNetStudent,
    example_inputs,
    load_student,
    model_inputs,
    save_student,
    student_from_xlnet,
)


def tiny_xlnet(seed: int = 0, **kw) -> XLNetForSequenceClassification:
    torch.manual_seed(seed)
    config = XLNetConfig(
        vocab_size=120, d_model=32, n_layer=3, n_head=4, d_inner=64, num_labels=3, mem_len=None, use_mems_eval=False, **kw
    )
    return XLNetForSequenceClassification(config).eval()


def xlnet_batch(length: int, pads=(0, 3, 7, 10), pair: bool = False):
    """Left-padded batch with XLNet's conventions: ... <sep> <cls>, pad id 5, token types 0/1, 2 for <cls>, 3 pad."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(9, 120, (len(pads), length), generator=g)
    mask = torch.ones(len(pads), length, dtype=torch.long)
    types = torch.zeros(len(pads), length, dtype=torch.long)
    for row, n in enumerate(pads):
        ids[row, :n], mask[row, :n], types[row, :n] = 5, 0, 3
    ids[:, -2], ids[:, -1], types[:, -1] = 4, 3, 2
    if pair:
        types[:, -6:-1] = 1
    return ids, mask, types


@pytest.mark.parametrize("pair", [False, True])
@pytest.mark.parametrize("length", [16, 11])
def test_student_matches_transformers_xlnet(pair, length):
    hf = tiny_xlnet()
    ids, mask, types = xlnet_batch(length, pair=pair)
    with torch.no_grad():
        reference = hf(input_ids=ids, attention_mask=mask, token_type_ids=types, use_mems=False, return_dict=False)[0]
        student = student_from_xlnet(hf, seq_len=16).eval()
        # Single-text tasks need no token_type_ids input: the constant segment pattern stands in for it.
        logits = student(ids, mask, types if pair else None)
    assert (reference - logits).abs().max().item() <= 1e-5


def test_relu_variant_matches_transformers_relu():
    hf = tiny_xlnet(ff_activation="relu")
    ids, mask, types = xlnet_batch(16)
    with torch.no_grad():
        reference = hf(input_ids=ids, attention_mask=mask, token_type_ids=types, use_mems=False, return_dict=False)[0]
        logits = student_from_xlnet(hf, seq_len=16).eval()(ids, mask)
    assert (reference - logits).abs().max().item() <= 1e-5


def test_l2norm_variant_is_layernorm_rewritten():
    hf = tiny_xlnet()
    ids, mask, _ = xlnet_batch(16)
    with torch.no_grad():
        layer = student_from_xlnet(hf, seq_len=16).eval()(ids, mask)
        l2 = student_from_xlnet(hf, seq_len=16, normalisation="l2norm").eval()(ids, mask)
    assert (layer - l2).abs().max().item() <= 1e-4


def test_xnnpack_variant_computes_the_same_function():
    """3-D bmm attention and LayerNorm as means (what ExecuTorch's XNNPACK partitioner takes): same logits, and the
    training student is left as it was."""
    student = student_from_xlnet(tiny_xlnet(), seq_len=16).eval()
    variant = student.with_op_variants(xnnpack=True)
    assert any(isinstance(m, torch.nn.LayerNorm) for m in student.modules())
    assert not any(isinstance(m, torch.nn.LayerNorm) for m in variant.modules())
    ids, mask, _ = xlnet_batch(16)
    with torch.no_grad():
        for row in range(len(ids)):  # the variant runs one sample at a time, as exported
            reference = student(ids[row : row + 1], mask[row : row + 1])
            assert (variant(ids[row : row + 1], mask[row : row + 1]) - reference).abs().max().item() <= 1e-5
        with pytest.raises(ValueError, match="one sample at a time"):
            variant(ids, mask)


def test_padding_does_not_change_logits():
    """XLNet pools the last position and masks padding keys, so more left padding leaves logits unchanged."""
    student = student_from_xlnet(tiny_xlnet(), seq_len=32).eval()
    ids, mask, _ = xlnet_batch(12, pads=(2,))
    pad = torch.full((1, 20), 5), torch.zeros(1, 20, dtype=torch.long)
    with torch.no_grad():
        short = student(ids, mask)
        long = student(torch.cat([pad[0], ids], 1), torch.cat([pad[1], mask], 1))
    assert (short - long).abs().max().item() <= 1e-5


def test_additive_bias_input_equals_attention_mask_input():
    config = StudentConfig(vocab_size=50, d_model=16, n_layer=1, n_head=2, d_inner=32, num_labels=2, seq_len=8)
    torch.manual_seed(0)
    student = XLNetStudent(config).eval()
    biased = XLNetStudent(StudentConfig(**{**config.__dict__, "mask_input": "additive_bias"})).eval()
    biased.load_state_dict(student.state_dict())
    ids = np.array([[5, 5, 5, 11, 12, 13, 4, 3]])
    mask = np.array([[0, 0, 0, 1, 1, 1, 1, 1]])
    a = [torch.from_numpy(x) for x in model_inputs(config, ids, mask)]
    b = [torch.from_numpy(x) for x in model_inputs(biased.config, ids, mask)]
    assert b[1].dtype == torch.float32 and b[1][0, 0].item() == -config.mask_value
    with torch.no_grad():
        assert torch.allclose(student(*a), biased(*b))


def test_save_and_load_round_trip(tmp_path):
    student = student_from_xlnet(tiny_xlnet(), seq_len=16, layer_ids=[0, 2]).eval()
    save_student(student, tmp_path)
    loaded = load_student(tmp_path)
    inputs = example_inputs(student.config)
    with torch.no_grad():
        assert torch.equal(FixedLengthClassifier(student)(*inputs), FixedLengthClassifier(loaded)(*inputs))
    assert loaded.config.n_layer == 2 and loaded.config.labels == student.config.labels


def test_load_student_names_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="student_config.json"):
        load_student(tmp_path)


def test_atomic_writes_are_readable_and_keep_the_executable_bit(tmp_path):
    import os
    import stat

    from toolkit.files import atomic_path, atomic_write_text

    data = atomic_write_text(tmp_path / "a.json", "{}")
    assert stat.S_IMODE(os.stat(data).st_mode) & 0o644 == 0o644
    with atomic_path(tmp_path / "tool") as tmp:
        tmp.write_text("#!/bin/sh\n")
        os.chmod(tmp, 0o700)
    assert os.access(tmp_path / "tool", os.X_OK) and stat.S_IMODE(os.stat(tmp_path / "tool").st_mode) == 0o755
