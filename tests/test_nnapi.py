"""NNAPI coverage analyser on hand-made graphs with known answers, and the NNAPI-friendly student."""

import numpy as np
import pytest
import torch
from torch import nn

from toolkit.export_tflite import convert_fp32, quantize
from toolkit.nnapi import analyse_coverage, shares_by_op
from toolkit.student import StudentConfig, XLNetStudent, model_inputs


def convert(module: nn.Module, *shape: int) -> bytes:
    import litert_torch

    return bytes(litert_torch.convert(module.eval(), (torch.randn(*shape),)).model_content())


def test_fc_relu_only_is_fully_delegated_in_one_partition():
    model = convert(nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4)), 1, 16)
    report = analyse_coverage(model, android_api_level=30)
    assert report.share == 1.0 and report.partitions == 1 and len(report.subsets) == 1


def test_gelu_between_two_fcs_splits_the_graph():
    model = convert(nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 4)), 1, 16)
    report = analyse_coverage(model, android_api_level=30)
    assert [v.op for v in report.nodes] == ["FULLY_CONNECTED", "GELU", "FULLY_CONNECTED"]
    assert report.accepted_nodes == 2 and report.partitions == 2 and len(report.subsets) == 3
    (gelu,) = [r for r in report.rows() if not r["accepted"]]
    assert gelu["op"] == "GELU" and "not mapped" in gelu["reason"]


def test_api_level_rules():
    """3-D SOFTMAX: 2D/4D only before API 29; FC keeping 3 dims: API 30+; nothing below API 27."""
    model = convert(nn.Sequential(nn.Linear(16, 16), nn.Softmax(dim=-1)), 1, 8, 16)
    assert analyse_coverage(model, 30).share == 1.0
    reasons = {r["op"]: r["reason"] for r in analyse_coverage(model, 28).rows()}
    assert "2D/4D" in reasons["SOFTMAX"] and "API 30" in reasons["FULLY_CONNECTED"]
    assert analyse_coverage(model, 26).accepted_nodes == 0


def test_int8_rsqrt_is_refused_but_float_is_not():
    class Norm(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(16, 16)

        def forward(self, x):
            y = self.fc(x)
            return y * torch.rsqrt((y * y).mean(-1, keepdim=True) + 1.0)

    model = convert(Norm(), 1, 8, 16)
    assert shares_by_op(analyse_coverage(model, 30))["RSQRT"] == 1.0
    calibration = [np.random.default_rng(0).normal(size=(8, 8, 16)).astype(np.float32)]
    report = analyse_coverage(quantize(model, "full-int8", calibration), 30)
    (rsqrt,) = [v for v in report.nodes if v.op == "RSQRT"]
    assert not rsqrt.accepted and "INT8" in rsqrt.reasons[0]


def _student(**kw) -> XLNetStudent:
    torch.manual_seed(0)
    config = StudentConfig(vocab_size=120, d_model=32, n_layer=2, n_head=4, d_inner=64, num_labels=3, seq_len=16, **kw)
    return XLNetStudent(config).eval()


def _calibration(config: StudentConfig) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    ids = rng.integers(9, 120, (16, config.seq_len)).astype(np.int32)
    mask = np.ones_like(ids)
    mask[:, :4] = 0
    return model_inputs(config, ids, mask)


@pytest.fixture(scope="module")
def stock_and_friendly():
    stock = _student()
    friendly = _student(activation="relu", normalisation="l2norm", mask_input="additive_bias")
    return {
        "stock": analyse_coverage(quantize(convert_fp32(stock), "full-int8", _calibration(stock.config)), 30),
        "friendly": analyse_coverage(
            quantize(convert_fp32(friendly, nnapi=True), "full-int8", _calibration(friendly.config)), 30
        ),
    }


def test_stock_student_falls_back_to_cpu_in_many_pieces(stock_and_friendly):
    report = stock_and_friendly["stock"]
    refused = {r["op"] for r in report.rows() if not r["accepted"]}
    assert {"BATCH_MATMUL", "GELU", "RSQRT", "SQUARED_DIFFERENCE", "MEAN"} <= refused
    assert report.share < 0.9 and report.partitions > 3


def test_friendly_student_is_one_nnapi_partition(stock_and_friendly):
    report = stock_and_friendly["friendly"]
    assert report.share >= 0.95 and report.partitions == 1, report.table()
