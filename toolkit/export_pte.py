"""ExecuTorch export: the student as a ``.pte`` program lowered to XNNPACK, and its host check.

The flow (ExecuTorch 1.5.1, see /work/shared/notes/export-facts.md):

    torch.export  ->  [quantize]  ->  to_edge_transform_and_lower(XNNPACK)  ->  to_executorch  ->  .pte

Recipes (``Artifact.recipe`` for ``format: pte``):

* ``fp32``: no quantization.
* ``int8-dynamic``: int8 per-channel weights and int8 activations quantized at run time on every ``nn.Linear``
  (PT2E ``XNNPACKQuantizer`` dynamic config). No calibration data needed.
* ``int8-static``: int8 per-channel weights and int8 activations with ranges fixed by calibrating on real inputs
  (PT2E ``XNNPACKQuantizer`` static config): linears, adds and muls run in int8; attention matmuls, softmax, GELU and
  LayerNorm stay float between dequantize/quantize pairs.
* ``int8-static-embedding``: ``int8-static`` plus the word-embedding table stored as uint8 rows (per-row scale),
  looked up by ExecuTorch's quantized ``embedding_byte`` kernel. Shrinks the file by ~3/4 of the table size.

Not used, on purpose: torchao int8 weight-only linears (wrong after XNNPACK lowering, cosine 0.27). torchao's
``Int8DynamicActivationIntxWeightConfig(int8, PerAxis(0))`` also lowers correctly for ``int8-dynamic`` (measured:
~5% faster, 9 vs 25 XNNPACK calls, same accuracy on a 2-layer d256 student); PT2E is kept so every int8 recipe
goes through one quantizer. torchao's ``Int8DynamicActivationInt8WeightConfig`` does not lower (``aten._int_mm``).

Every export records where each op runs: how many subgraphs/ops XNNPACK took, and which ops stayed on ExecuTorch's
portable kernels (an op that falls out of the delegate is the usual cause of a slow program).
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from toolkit.checks import EXACT_FLOAT_RECIPES, CheckResult, ToleranceError, compare_logits, gate_against_student
from toolkit.errors import ToolkitError
from toolkit.files import atomic_write_bytes
from toolkit.manifest import ArtifactRecord
from toolkit.profiles import Artifact, Tolerances
from toolkit.student import (
    FixedLengthClassifier,
    XLNetStudent,
    eager_logits,
    example_inputs,
    input_specs,
)


# Graph nodes that are bookkeeping, not kernels: left out of the "runs on portable kernels" count.
_NOT_KERNELS = {"executorch_call_delegate", "getitem", "alloc"}


class PteExportError(ToolkitError, RuntimeError):
    """The .pte could not be built as asked (bad recipe, missing calibration data, ...)."""


class PteToleranceError(ToleranceError):
    """A .pte failed its host check. ``record`` is the (invalid) artifact record, for the manifest."""

    def __init__(self, message: str, record: ArtifactRecord) -> None:
        super().__init__(message)
        self.record = record


# ---------------------------------------------------------------------------------------------------------------
# Quantization recipes: each turns the exported float program into the program to lower
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class Prepared:
    """An exported program ready to lower, and what the recipe did to it (for the manifest)."""

    program: torch.export.ExportedProgram
    quantization: dict
    fuse_quantized_ops: bool = False  # the quantized embedding needs ExecuTorch's quant-fusion pass


def _xnnpack_quantizer(dynamic: bool):
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )

    config = get_symmetric_quantization_config(is_per_channel=True, is_dynamic=dynamic)
    if not dynamic:
        config = _with_min_max_activations(config)
    return XNNPACKQuantizer().set_global(config)


def _with_min_max_activations(config):
    """Static activation ranges = the full range seen in calibration (MinMaxObserver) instead of a histogram fit.

    The histogram observer trims range tails to minimise rounding error, which suits CNN activations; in this
    transformer the tails are real (long sentences, the pooled position), and clipping them cost 2% argmax
    agreement with fp32 on the SST-2 student (97.8% -> 99.9% with min/max ranges).
    """
    from torchao.quantization.pt2e.observer import MinMaxObserver

    spec = dataclasses.replace(config.input_activation, observer_or_fake_quant_ctr=MinMaxObserver.with_args(eps=2**-12))
    return dataclasses.replace(config, input_activation=spec, output_activation=spec)


def _pt2e_quantize(
    module: nn.Module, example: tuple[torch.Tensor, ...], quantizer, samples: Iterable[tuple[torch.Tensor, ...]]
) -> torch.export.ExportedProgram:
    """PT2E: export, insert observers, run ``samples`` through them, convert to quantize/dequantize pairs, re-export."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    prepared = prepare_pt2e(torch.export.export(module, example).module(), quantizer)
    with torch.no_grad():
        for sample in samples:
            prepared(*sample)
    return torch.export.export(convert_pt2e(prepared), example)


def _calibration_samples(calibration: list[np.ndarray] | None, n_inputs: int) -> Iterable[tuple[torch.Tensor, ...]]:
    """Batch-1 tensors from the [N, L] arrays, behind a tqdm bar: observing ranges is the slow part of the export."""
    from tqdm import tqdm

    if not calibration or not len(calibration[0]):
        raise PteExportError(
            "static int8 needs calibration data: pass calibration=model_inputs(config, ...) of a sample of real "
            "training texts (a few hundred is plenty)"
        )
    if len(calibration) != n_inputs:
        raise PteExportError(f"calibration has {len(calibration)} arrays, the program takes {n_inputs} inputs")
    count = len(calibration[0])
    return tqdm((_sample(calibration, i) for i in range(count)), total=count, desc="calibrating int8", unit="sample")


class _Int64IndexEmbedding(nn.Module):
    """The word embedding, indexed with int64: ExecuTorch's ``embedding_byte`` kernel only accepts Long indices.

    The program's ``input_ids`` input stays int32; the cast happens inside the graph.
    """

    def __init__(self, embedding: nn.Embedding) -> None:
        super().__init__()
        self.embedding = embedding

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.embedding(input_ids.to(torch.int64))


def _prepare_fp32(module, example, calibration) -> Prepared:
    return Prepared(torch.export.export(module, example), {"scheme": "none (float32)"})


DYNAMIC_DETAILS = {
    "scheme": "int8 dynamic activations, int8 weights (PT2E XNNPACKQuantizer, dynamic)",
    "weights": "int8 symmetric per output channel",
    "activations": "int8, range computed per tensor at run time",
    "quantized": "nn.Linear",
}


def _prepare_int8_dynamic(module, example, calibration) -> Prepared:
    # Dynamic ranges are computed at run time: observers need one pass only to be placed, no real data.
    program = _pt2e_quantize(module, example, _xnnpack_quantizer(dynamic=True), [example])
    return Prepared(program, dict(DYNAMIC_DETAILS))


def _prepare_int8_static(module, example, calibration) -> Prepared:
    samples = _calibration_samples(calibration, len(example))
    program = _pt2e_quantize(module, example, _xnnpack_quantizer(dynamic=False), samples)
    return Prepared(program, _static_details(len(calibration[0])))


def _prepare_int8_static_embedding(module, example, calibration) -> Prepared:
    from torchao.quantization.pt2e.quantizer import ComposableQuantizer
    from torchao.quantization.pt2e.quantizer.embedding_quantizer import EmbeddingQuantizer

    samples = _calibration_samples(calibration, len(example))
    module = copy.deepcopy(module)
    module.student.word_embedding = _Int64IndexEmbedding(module.student.word_embedding)
    quantizer = ComposableQuantizer([EmbeddingQuantizer(), _xnnpack_quantizer(dynamic=False)])
    program = _pt2e_quantize(module, example, quantizer, samples)
    details = _static_details(len(calibration[0]))
    details["embedding"] = "uint8 per row (asymmetric), quantized_decomposed::embedding_byte on portable kernels"
    return Prepared(program, details, fuse_quantized_ops=True)


def _prepare_int8_dynamic_embedding(module, example, calibration) -> Prepared:
    """int8-dynamic linears plus a uint8 embedding table: the embedding is most of a small student's bytes."""
    from torchao.quantization.pt2e.quantizer import ComposableQuantizer
    from torchao.quantization.pt2e.quantizer.embedding_quantizer import EmbeddingQuantizer

    module = copy.deepcopy(module)
    module.student.word_embedding = _Int64IndexEmbedding(module.student.word_embedding)
    quantizer = ComposableQuantizer([EmbeddingQuantizer(), _xnnpack_quantizer(dynamic=True)])
    program = _pt2e_quantize(module, example, quantizer, [example])
    details = dict(DYNAMIC_DETAILS)
    details["embedding"] = "uint8 per row (asymmetric), quantized_decomposed::embedding_byte on portable kernels"
    return Prepared(program, details, fuse_quantized_ops=True)


def _static_details(calibration_samples: int) -> dict:
    return {
        "scheme": "int8 static (PT2E XNNPACKQuantizer, symmetric per-channel)",
        "weights": "int8 symmetric per output channel",
        "activations": "int8 per tensor, ranges from calibration",
        "calibration_samples": calibration_samples,
        "quantized": "nn.Linear, add, mul (XNNPACKQuantizer's patterns); matmul, softmax, GELU, LayerNorm stay float",
    }


RECIPES: dict[str, Callable[..., Prepared]] = {
    "fp32": _prepare_fp32,
    "int8-dynamic": _prepare_int8_dynamic,
    "int8-dynamic-embedding": _prepare_int8_dynamic_embedding,
    "int8-static": _prepare_int8_static,
    "int8-static-embedding": _prepare_int8_static_embedding,
}
PTE_RECIPES = tuple(RECIPES)


# ---------------------------------------------------------------------------------------------------------------
# Lowering and export
# ---------------------------------------------------------------------------------------------------------------


def _partitioners(recipe: str) -> list:
    """XNNPACK partitioners for a recipe.

    Dynamic int8 needs a dynamic-quant pass FIRST: with the plain partitioner alone, the shared quantize chain of
    q/k/v (one activation, three linears) makes partitions with dependency cycles ("Invalid partition, found
    dependency cycles"). The second partitioner takes the float ops that remain.
    """
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import (
        XnnpackDynamicallyQuantizedPartitioner,
        XnnpackPartitioner,
    )

    if recipe.startswith("int8-dynamic"):
        return [XnnpackDynamicallyQuantizedPartitioner(), XnnpackPartitioner()]
    return [XnnpackPartitioner()]


def _kernel_name(target) -> str:
    """``aten.embedding.out`` for an operator; the bare name for Python helpers (``getitem``, ``alloc``)."""
    return target.__name__ if inspect.isfunction(target) or inspect.isbuiltin(target) else str(target)


def delegation_summary(edge_program, final_program) -> dict:
    """What XNNPACK took (from the lowered edge program) and which kernels run outside it (final program)."""
    from executorch.devtools.backend_debug import get_delegation_info

    info = get_delegation_info(edge_program.graph_module)
    delegated = {op: b.delegated for op, b in sorted(info.delegation_by_operator.items()) if b.delegated}
    portable = Counter(_kernel_name(n.target) for n in final_program.graph.nodes if n.op == "call_function")
    portable = {op: n for op, n in sorted(portable.items()) if op not in _NOT_KERNELS}
    return {
        "backend": "XnnpackBackend",
        "partitions": info.num_delegated_subgraphs,  # delegate calls at run time
        "delegated_nodes": info.num_delegated_nodes,
        "non_delegated_nodes": info.num_non_delegated_nodes,
        "delegated_linears": delegated.get("aten_linear_default", 0),
        "delegated_by_op": delegated,
        "portable_ops": portable,
    }


def export_pte(
    student: XLNetStudent,
    artifact: Artifact,
    out_path: Path,
    calibration: list[np.ndarray] | None = None,
    bundle_dir: Path | None = None,
) -> ArtifactRecord:
    """Export ``FixedLengthClassifier(student)`` with the artifact's recipe to ``out_path`` (written atomically).

    ``calibration``: the ``model_inputs`` arrays ([N, L] each) of real training texts, for the static recipes.
    Returns the artifact's record, NOT yet valid: run :func:`host_check_pte` (or use :func:`export_and_check_pte`).
    ``bundle_dir`` (default: the file's folder) is what the record's ``file`` path is relative to.
    """
    from executorch.exir import ExecutorchBackendConfig, to_edge_transform_and_lower

    if artifact.format != "pte":
        raise PteExportError(f"export_pte builds .pte files; artifact {artifact.name} is a {artifact.format}")
    if artifact.recipe not in RECIPES:
        raise PteExportError(f"unknown .pte recipe '{artifact.recipe}'; choose one of {list(RECIPES)}")
    if artifact.delegate != "xnnpack":
        raise PteExportError(f".pte artifacts are lowered to XNNPACK; artifact asks for delegate '{artifact.delegate}'")

    config = student.config
    module = FixedLengthClassifier(student).eval()
    example = example_inputs(config)
    prepared = RECIPES[artifact.recipe](module, example, calibration)

    edge = to_edge_transform_and_lower(prepared.program, partitioner=_partitioners(artifact.recipe))
    program = edge.to_executorch(ExecutorchBackendConfig(do_quant_fusion_and_const_prop=prepared.fuse_quantized_ops))
    out_path = Path(out_path)
    atomic_write_bytes(out_path, program.buffer)

    details = {
        "sequence_length": config.seq_len,
        "quantization": prepared.quantization,
        "delegation": delegation_summary(edge.exported_program(), program.exported_program()),
    }
    return ArtifactRecord.for_file(artifact, out_path, Path(bundle_dir or out_path.parent), config, details)


def export_module_pte(
    module: nn.Module,
    example: tuple[torch.Tensor, ...],
    recipe: str,
    out_path: Path,
    calibration: list[np.ndarray] | None = None,
) -> dict:
    """Any ``module`` (e.g. the reference CNNs bench/latency_calibration.py rebuilds) through the same recipes and
    XNNPACK lowering as :func:`export_pte`; the ``-embedding`` recipes need the student and are refused here.
    Returns the delegation summary."""
    from executorch.exir import ExecutorchBackendConfig, to_edge_transform_and_lower

    if recipe not in RECIPES or recipe.endswith("-embedding"):
        raise PteExportError(f"recipe '{recipe}' cannot export a generic module; choose fp32, int8-dynamic or int8-static")
    prepared = RECIPES[recipe](module.eval(), example, calibration)
    edge = to_edge_transform_and_lower(prepared.program, partitioner=_partitioners(recipe))
    program = edge.to_executorch(ExecutorchBackendConfig(do_quant_fusion_and_const_prop=prepared.fuse_quantized_ops))
    atomic_write_bytes(Path(out_path), program.buffer)
    return delegation_summary(edge.exported_program(), program.exported_program())


# ---------------------------------------------------------------------------------------------------------------
# Running a .pte on the host, and checking it against the eager student
# ---------------------------------------------------------------------------------------------------------------


def _sample(arrays: Sequence[np.ndarray], index: int) -> tuple[torch.Tensor, ...]:
    """Sample ``index`` of each [N, ...] array as a batch-1 tensor."""
    return tuple(torch.from_numpy(np.ascontiguousarray(a[index : index + 1])) for a in arrays)


def load_pte_method(path: Path):
    """The ``forward`` method of a .pte, loaded once, with the quantized kernels registered."""
    import executorch.kernels.quantized  # noqa: F401  registers embedding_byte & co. for quantized programs
    from executorch.runtime import Runtime

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no .pte at {path}")
    return Runtime.get().load_program(path).load_method("forward")


def set_pte_threads(num_threads: int) -> None:
    """Size ExecuTorch's shared threadpool (XNNPACK runs on it); benchmarks use 1."""
    from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool

    _unsafe_reset_threadpool(num_threads)


def run_pte(path: Path, inputs: list[np.ndarray]) -> np.ndarray:
    """Logits [N, C] of a .pte run with ExecuTorch's runtime, one sample at a time (the program takes batch 1)."""
    if not inputs or any(len(a) != len(inputs[0]) for a in inputs):
        raise ValueError("inputs must be the program's input arrays, all with the same number of samples N")
    method = load_pte_method(path)
    rows = [method.execute(list(_sample(inputs, i)))[0].numpy() for i in range(len(inputs[0]))]
    return np.concatenate(rows, axis=0)


def host_check_pte(
    path: Path,
    student: XLNetStudent,
    inputs: list[np.ndarray],
    labels: np.ndarray | None,
    tolerances: Tolerances,
    is_float: bool,
    reference: np.ndarray | None = None,
) -> CheckResult:
    """Run the WHOLE set through the .pte and gate it against the fp32 eager student (or a given ``reference``)."""
    expected = len(input_specs(student.config))
    if len(inputs) != expected:
        raise ValueError(f"the program takes {expected} inputs, got {len(inputs)} arrays")
    if reference is None:
        reference = eager_logits(student, inputs)
    result = compare_logits(f"host:{Path(path).name}", reference, run_pte(path, inputs), labels)
    return gate_against_student(result, tolerances, is_float)


def export_and_check_pte(
    student: XLNetStudent,
    artifact: Artifact,
    out_path: Path,
    check_inputs: list[np.ndarray],
    labels: np.ndarray | None,
    tolerances: Tolerances,
    calibration: list[np.ndarray] | None = None,
    bundle_dir: Path | None = None,
) -> ArtifactRecord:
    """Export, host-check on ``check_inputs``, and return a record marked valid only if the check passed.

    On failure raises :class:`PteToleranceError` carrying the invalid record (the caller writes it to the
    manifest with ``valid: false`` and exits non-zero). The .pte file stays on disk for inspection.
    """
    record = export_pte(student, artifact, out_path, calibration, bundle_dir)
    check = host_check_pte(out_path, student, check_inputs, labels, tolerances, artifact.recipe in EXACT_FLOAT_RECIPES)
    record.checks.append(check.to_json())
    if not check.passed:
        raise PteToleranceError(f"{artifact.name} is not valid: {check.summary()}", record)
    record.valid = True
    return record
