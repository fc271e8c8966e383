"""The C++ ExecuTorch runner on the host: same logits as executorch's Python runtime, clear errors on bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from toolkit.pte_runner import RunnerError, build_runner, run_pte_with_runner

SEQ = 16
VOCAB = 100


class TinyClassifier(torch.nn.Module):
    """Embedding + linear + mean pooling: the op mix of the real student at toy size (int32 ids, float mask)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = torch.nn.Embedding(VOCAB, 32)
        self.hidden = torch.nn.Linear(32, 32)
        self.classify = torch.nn.Linear(32, 3)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.embed(ids) * mask.unsqueeze(-1)
        h = torch.relu(self.hidden(h)).mean(dim=1)
        return self.classify(h)


def example_args() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.zeros(1, SEQ, dtype=torch.int32), torch.ones(1, SEQ)


def sample_inputs(n: int = 3) -> list[np.ndarray]:
    """n samples with a leading sample axis; one has a padded tail so the mask matters."""
    rng = np.random.default_rng(0)
    ids = rng.integers(0, VOCAB, size=(n, SEQ), dtype=np.int32)
    mask = np.ones((n, SEQ), dtype=np.float32)
    mask[1, 10:] = 0
    return [ids, mask]


def export_pte(path: Path, *, int8: bool = False) -> Path:
    """Export the tiny model to .pte with the XNNPACK partitioner; int8 = PT2E static quantization."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    model, args = TinyClassifier().eval(), example_args()
    if int8:
        from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
            XNNPACKQuantizer,
            get_symmetric_quantization_config,
        )
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

        quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config())
        prepared = prepare_pt2e(torch.export.export(model, args).module(), quantizer)
        for ids, mask in zip(*sample_inputs(), strict=True):
            prepared(torch.from_numpy(ids[None]), torch.from_numpy(mask[None]))
        model = convert_pt2e(prepared)
    program = to_edge_transform_and_lower(torch.export.export(model, args), partitioner=[XnnpackPartitioner()])
    path.write_bytes(program.to_executorch().buffer)
    return path


def python_runtime_logits(pte: Path, inputs: list[np.ndarray]) -> np.ndarray:
    """The reference: executorch's own Python runtime, one batch-1 sample at a time."""
    from executorch.runtime import Runtime

    method = Runtime.get().load_program(pte).load_method("forward")
    rows = [method.execute([torch.from_numpy(a[n : n + 1]) for a in inputs])[0].numpy() for n in range(len(inputs[0]))]
    return np.concatenate(rows).astype(np.float32)


@pytest.fixture(scope="module")
def ptes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("pte")
    return {"fp32": export_pte(folder / "tiny.pte"), "int8": export_pte(folder / "tiny_int8.pte", int8=True)}


@pytest.mark.parametrize("variant", ["fp32", "int8"])
def test_host_runner_matches_python_runtime(ptes: dict[str, Path], variant: str) -> None:
    inputs = sample_inputs()
    got = run_pte_with_runner(ptes[variant], inputs)
    want = python_runtime_logits(ptes[variant], inputs)
    assert got.shape == (3, 3) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    assert not np.allclose(got[0], got[1]), "samples must not collapse to one output"


def test_build_is_cached() -> None:
    assert build_runner("x86_64") == build_runner("x86_64")


def test_aarch64_cross_build_is_an_arm_binary() -> None:
    header = build_runner("aarch64").read_bytes()[:20]
    assert header[:4] == b"\x7fELF" and int.from_bytes(header[18:20], "little") == 183  # EM_AARCH64


def test_corrupted_pte_fails_clearly(ptes: dict[str, Path], tmp_path: Path) -> None:
    data = bytearray(ptes["fp32"].read_bytes())
    data[4:8] = b"XXXX"  # the flatbuffer file identifier ("ET12")
    bad = tmp_path / "corrupted.pte"
    bad.write_bytes(bytes(data))
    with pytest.raises(RunnerError, match="cannot load .* as an ExecuTorch program .*corrupted"):
        run_pte_with_runner(bad, sample_inputs())


def test_truncated_pte_fails_clearly(ptes: dict[str, Path], tmp_path: Path) -> None:
    data = ptes["fp32"].read_bytes()
    bad = tmp_path / "truncated.pte"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(RunnerError, match="as an ExecuTorch program"):
        run_pte_with_runner(bad, sample_inputs())


def test_wrong_input_dtype_is_named(ptes: dict[str, Path]) -> None:
    ids, mask = sample_inputs(2)
    with pytest.raises(RunnerError, match=r"input 0: Int \[1, 16\]"):
        run_pte_with_runner(ptes["fp32"], [ids.astype(np.int64), mask])
