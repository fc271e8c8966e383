"""ExecuTorch export: the student as a ``.pte`` program lowered to XNNPACK, and its host check.

The flow (ExecuTorch 1.5.1, see /work/shared/notes/export-facts.md):

    torch.export  ->  [quantize]  ->  to_edge_transform_and_lower(XNNPACK)  ->  to_executorch  ->  .pte

Recipes (``Artifact.recipe`` for ``format: pte``), each registered with ``@register_recipe`` below:

* ``fp32``: no quantization.
* ``int8-dynamic``: int8 per-channel weights and int8 activations quantized per token at run time on every
  ``nn.Linear`` (torchao ``Int8DynamicActivationIntxWeightConfig(int8, PerAxis(0))``). No calibration data needed.
* ``int8-static``: int8 per-channel weights and int8 activations with ranges fixed by calibrating on real inputs
  (PT2E ``XNNPACKQuantizer`` static config): linears, adds and muls run in int8; attention matmuls, softmax, GELU and
  LayerNorm stay float between dequantize/quantize pairs.
* ``8da4w``: int8 dynamic activations and int4 weights (in groups of 128/64/32 that tile every row, else per
  channel) on every ``nn.Linear``, via torchao, as optimum-executorch's ``8da4w`` recipe; XNNPACK runs it.
* ``int8-static-histogram``: ``int8-static`` with the activation ranges PT2E's histogram observer fits (rounding
  against clipping error), the LayerNorms' inner ops in float (an int8 variance can round to 0) and the classifier
  head (pooled projection and logits) in float: an int8 logit grid makes near-tie margins exact ties, which argmax
  gives to the first label. On the two bench students where ``int8-static`` agreed least with fp32 (98.3 %, 98.9 %
  of dev) it agrees on 99.7 % and 99.4 %; on three others 0 to 0.5 point less (BENCHMARKS.md "int8-static vs
  int8-static-histogram vs int8-static-qat").
* ``int8-static-qat``: ``int8-static-histogram`` whose activation ranges were then trained quantization-aware
  (PT2E fake-quantizers on the exact graph, each range's scale learned, weights fixed; ``toolkit/pt2e_qat.py``) on
  the calibration samples and sentence-like joins of them, used for every length bucket. Measured beside the others
  in BENCHMARKS.md "int8-static vs int8-static-histogram vs int8-static-qat" and "QAT variants".
* ``int8-static-embedding``: ``int8-static`` plus the word-embedding table stored as uint8 rows (per-row scale),
  looked up by ExecuTorch's quantized ``embedding_byte`` kernel. Shrinks the file by ~3/4 of the table size.

Dynamic int8 goes through torchao rather than PT2E's dynamic ``XNNPACKQuantizer``: on the 3-layer d96 SST-2
student the torchao program made 2 XNNPACK calls instead of 6 and ran 10% faster (0.65x vs 0.72x ONNX Runtime int8,
one run), with the same agreement. The embedding's uint8 rows still come from PT2E's ``EmbeddingQuantizer``.
Not used, on purpose: torchao int8 weight-only linears (wrong after XNNPACK lowering, cosine 0.27); torchao's
``Int8DynamicActivationInt8WeightConfig`` does not lower (``aten._int_mm``).

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
from typing import Iterable, Sequence

import numpy as np
import torch
from torch import nn

from toolkit.buckets import at_length, method_name
from toolkit.errors import ToolkitError
from toolkit.files import atomic_write_bytes
from toolkit.profiles import Artifact
from toolkit.registry import Backend, get_recipe, recipe_names, register_backend, register_recipe
from toolkit.student import FixedLengthClassifier, XLNetStudent, example_inputs


# Graph nodes that are bookkeeping, not kernels: left out of the "runs on portable kernels" count.
_NOT_KERNELS = {"executorch_call_delegate", "getitem", "alloc"}


class PteExportError(ToolkitError, RuntimeError):
    """The .pte could not be built as asked (bad recipe, missing calibration data, ...)."""


# ---------------------------------------------------------------------------------------------------------------
# Quantization recipes: each turns the exported float program into the program to lower
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class Prepared:
    """An exported program ready to lower, and what the recipe did to it (for the manifest)."""

    program: torch.export.ExportedProgram
    quantization: dict
    fuse_quantized_ops: bool = False  # the quantized embedding needs ExecuTorch's quant-fusion pass


def _xnnpack_static_quantizer():
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )

    config = _with_min_max_activations(get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False))
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

    _check_calibration(calibration, n_inputs)
    count = len(calibration[0])
    return tqdm((_sample(calibration, i) for i in range(count)), total=count, desc="calibrating int8", unit="sample")


def _check_calibration(calibration: list[np.ndarray] | None, n_inputs: int) -> None:
    if not calibration or not len(calibration[0]):
        raise PteExportError(
            "static int8 needs calibration data: pass calibration=model_inputs(config, ...) of a sample of real "
            "training texts (a few hundred is plenty)"
        )
    if len(calibration) != n_inputs:
        raise PteExportError(f"calibration has {len(calibration)} arrays, the program takes {n_inputs} inputs")


class _Int64IndexEmbedding(nn.Module):
    """The word embedding, indexed with int64: ExecuTorch's ``embedding_byte`` kernel only accepts Long indices.

    The program's ``input_ids`` input stays int32; the cast happens inside the graph.
    """

    def __init__(self, embedding: nn.Embedding) -> None:
        super().__init__()
        self.embedding = embedding

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.embedding(input_ids.to(torch.int64))


@register_recipe("pte", "fp32", compute="float", exact=True)
def _prepare_fp32(module, example, calibration) -> Prepared:
    """No quantization: the float32 program."""
    return Prepared(torch.export.export(module, example), {"scheme": "none (float32)"})


DYNAMIC_DETAILS = {
    "scheme": "int8 dynamic activations, int8 weights (torchao Int8DynamicActivationIntxWeightConfig, int8)",
    "weights": "int8 symmetric per output channel",
    "activations": "int8 asymmetric per token, range computed at run time",
    "quantized": "nn.Linear",
}


def _quantize_linears(module: nn.Module, weight_dtype: torch.dtype, granularity) -> None:
    """Every nn.Linear of ``module`` (in place): int8 activations quantized per token at run time, weights of
    ``weight_dtype`` (torchao; XNNPACK runs the result as its dynamically quantized fully-connected op)."""
    from torchao.quantization import Int8DynamicActivationIntxWeightConfig, quantize_

    quantize_(module, Int8DynamicActivationIntxWeightConfig(weight_dtype=weight_dtype, weight_granularity=granularity))


@register_recipe("pte", "int8-dynamic", compute="int8")
def _prepare_int8_dynamic(module, example, calibration) -> Prepared:
    """int8 weights per channel, int8 activations quantized per token at run time, on every nn.Linear (torchao)."""
    from torchao.quantization.granularity import PerAxis

    module = copy.deepcopy(module)
    _quantize_linears(module, torch.int8, PerAxis(0))
    return Prepared(torch.export.export(module, example), dict(DYNAMIC_DETAILS))


@register_recipe("pte", "int8-static", compute="int8", calibrates=True,
                 alternatives=("int8-static-histogram", "int8-static-qat"))
def _prepare_int8_static(module, example, calibration) -> Prepared:
    """int8 weights and activations with ranges calibrated on training samples (PT2E, XNNPACK)."""
    samples = _calibration_samples(calibration, len(example))
    program = _pt2e_quantize(module, example, _xnnpack_static_quantizer(), samples)
    return Prepared(program, _static_details(len(calibration[0])))


def _float_norm_quantizer(config):
    """The XNNPACK quantizer with ``config`` everywhere but inside the LayerNorms (``MeanPoolLayerNorm``), whose
    subtract, square, mean and rsqrt stay float: a per-tensor int8 variance can round to 0 (rsqrt: inf), which
    made quantization-aware training diverge on a bench student."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer

    from toolkit.student import MeanPoolLayerNorm

    return XNNPACKQuantizer().set_global(config).set_module_type(MeanPoolLayerNorm, None)


QUANTIZED_OUTSIDE_NORMS_AND_HEAD = ("nn.Linear, add, mul outside the LayerNorms and the classifier head; matmul, "
                                    "softmax, GELU, LayerNorm and the head stay float")
FLOAT_HEAD = ("student.summary", "student.logits_proj")  # FixedLengthClassifier's path to the classifier head


def _float_norm_and_head_quantizer(config):
    """:func:`_float_norm_quantizer` with the classifier head (the pooled vector's projection and the logits) in
    float too. Quantized, the logits sit on an int8 grid (a step of 0.008 on the sst2-1k 1/10 bench student), so a
    near-tie margin becomes an exact tie, which argmax gives to the first label: 17 of that student's 54 flips on
    10,000 unseen texts under the histogram ranges (BENCHMARKS.md "QAT variants"). The head runs once per text,
    not per token, so in float it costs two tiny GEMMs."""
    from torchao.quantization.pt2e.quantizer import get_module_name_filter

    head = [get_module_name_filter(name) for name in FLOAT_HEAD]
    return _float_norm_quantizer(config).set_filter_function(lambda node: not any(inside(node) for inside in head))


def _histogram_static_config():
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import get_symmetric_quantization_config

    return get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False)  # histogram activation ranges


def _train_quantization_aware(module, example, calibration) -> nn.Module:
    """The module with its activation ranges trained quantization-aware on the calibration samples and sentence-like
    joins of them (toolkit/pt2e_qat.py)."""
    from toolkit.pt2e_qat import trained_quantization_aware, training_inputs

    _check_calibration(calibration, len(example))
    samples = [_sample(calibration, i) for i in range(len(calibration[0]))]
    arrays = training_inputs(module.student.config, calibration)
    training = [_sample(arrays, i) for i in range(len(arrays[0]))]
    return trained_quantization_aware(module, example, samples, _histogram_static_config(),
                                      _float_norm_and_head_quantizer, training=training)


@register_recipe("pte", "int8-static-histogram", compute="int8", calibrates=True)
def _prepare_int8_static_histogram(module, example, calibration) -> Prepared:
    """int8-static with histogram-fitted activation ranges, the LayerNorms' inner ops and the classifier head in
    float."""
    samples = _calibration_samples(calibration, len(example))
    program = _pt2e_quantize(module, example, _float_norm_and_head_quantizer(_histogram_static_config()), samples)
    details = _static_details(len(calibration[0]))
    details["activations"] = "int8 per tensor, ranges fitted by PT2E's histogram observer on the calibration samples"
    details["quantized"] = QUANTIZED_OUTSIDE_NORMS_AND_HEAD
    return Prepared(program, details)


@register_recipe("pte", "int8-static-qat", compute="int8", calibrates=True, trains=_train_quantization_aware)
def _prepare_int8_static_qat(module, example, calibration) -> Prepared:
    """int8-static with activation ranges trained quantization-aware from the histogram's (PT2E QAT, weights fixed)."""
    from toolkit.pt2e_qat import quantized_with_ranges

    _check_calibration(calibration, len(example))
    ranges = getattr(module, "activation_ranges", None)
    if ranges is None:
        raise PteExportError("int8-static-qat builds from the module its training returns (export_pte trains it)")
    quantizer = _float_norm_and_head_quantizer(_with_min_max_activations(_histogram_static_config()))  # ranges set
    try:
        program = quantized_with_ranges(module, example, quantizer, ranges)
    except ValueError as error:
        raise PteExportError(f"int8-static-qat: {error}; export this student with int8-static instead") from error
    details = _static_details(len(calibration[0]))
    details["scheme"] = "int8 static, activation ranges trained quantization-aware (PT2E QAT, weights fixed)"
    details["activations"] = ("int8 per tensor: histogram ranges over the calibration samples, then trained on "
                              "them and on sentence-like joins of them")
    details["quantized"] = QUANTIZED_OUTSIDE_NORMS_AND_HEAD
    return Prepared(program, details)


@register_recipe("pte", "int8-static-embedding", compute="int8", calibrates=True)
def _prepare_int8_static_embedding(module, example, calibration) -> Prepared:
    """int8-static plus a uint8 embedding table (per-row scale, ExecuTorch's embedding_byte kernel)."""
    from torchao.quantization.pt2e.quantizer import ComposableQuantizer
    from torchao.quantization.pt2e.quantizer.embedding_quantizer import EmbeddingQuantizer

    samples = _calibration_samples(calibration, len(example))
    module = copy.deepcopy(module)
    module.student.word_embedding = _Int64IndexEmbedding(module.student.word_embedding)
    quantizer = ComposableQuantizer([EmbeddingQuantizer(), _xnnpack_static_quantizer()])
    program = _pt2e_quantize(module, example, quantizer, samples)
    details = _static_details(len(calibration[0]))
    details["embedding"] = "uint8 per row (asymmetric), quantized_decomposed::embedding_byte on portable kernels"
    return Prepared(program, details, fuse_quantized_ops=True)


@register_recipe("pte", "int8-dynamic-embedding", compute="int8")
def _prepare_int8_dynamic_embedding(module, example, calibration) -> Prepared:
    """int8-dynamic linears plus a uint8 embedding table: the embedding is most of a small student's bytes."""
    from torchao.quantization.granularity import PerAxis
    from torchao.quantization.pt2e.quantizer.embedding_quantizer import EmbeddingQuantizer

    module = copy.deepcopy(module)
    module.student.word_embedding = _Int64IndexEmbedding(module.student.word_embedding)
    _quantize_linears(module, torch.int8, PerAxis(0))
    program = _pt2e_quantize(module, example, EmbeddingQuantizer(), [example])  # weights only: one pass places it
    details = dict(DYNAMIC_DETAILS)
    details["embedding"] = "uint8 per row (asymmetric), quantized_decomposed::embedding_byte on portable kernels"
    return Prepared(program, details, fuse_quantized_ops=True)


@register_recipe("pte", "8da4w", compute="int8")
def _prepare_8da4w(module, example, calibration) -> Prepared:
    """int8 dynamic activations, int4 weights in groups on every nn.Linear (torchao; optimum-executorch's 8da4w)."""
    from torchao.quantization.granularity import PerAxis, PerGroup

    module = copy.deepcopy(module)
    widths = {m.in_features for m in module.modules() if isinstance(m, nn.Linear)}
    group = next((g for g in (128, 64, 32) if all(w % g == 0 for w in widths)), None)  # groups must tile every row
    _quantize_linears(module, torch.int4, PerGroup(group) if group else PerAxis(0))
    details = {
        "scheme": "int8 dynamic activations, int4 weights (torchao Int8DynamicActivationIntxWeightConfig: 8da4w)",
        "weights": f"int4 symmetric, {f'groups of {group}' if group else 'per output channel'}",
        "activations": "int8 asymmetric per token, range computed at run time",
        "quantized": "nn.Linear",
    }
    return Prepared(torch.export.export(module, example), details)


def _static_details(calibration_samples: int) -> dict:
    return {
        "scheme": "int8 static (PT2E XNNPACKQuantizer, symmetric per-channel)",
        "weights": "int8 symmetric per output channel",
        "activations": "int8 per tensor, ranges from calibration",
        "calibration_samples": calibration_samples,
        "quantized": "nn.Linear, add, mul (XNNPACKQuantizer's patterns); matmul, softmax, GELU, LayerNorm stay float",
    }


# ---------------------------------------------------------------------------------------------------------------
# Lowering and export
# ---------------------------------------------------------------------------------------------------------------


def _partitioners() -> list:
    """One XNNPACK partitioner for every precision: float ops and dynamically quantized linears land in the same
    few large partitions (6 delegate calls for a 3-layer int8-dynamic student instead of 29 when the dynamic-quant
    partitioner ran first and the float one took the gaps; 3-4% faster).

    That needs the student's XNNPACK op variants (``XLNetStudent.with_op_variants(xnnpack=True)``): with 4-D
    matmuls lowered to expand_copy + bmm, the shared quantize chain of q/k/v made partitions with dependency cycles
    ("Invalid partition, found dependency cycles") and the dynamic-quant partitioner had to run first.
    """
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

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


def _recipe(name: str):
    """The registered .pte recipe ``name``, or a clear error naming the ones there are."""
    if name not in recipe_names("pte"):
        raise PteExportError(f"unknown .pte recipe '{name}'; choose one of {recipe_names('pte')}")
    return get_recipe("pte", name)


def _prepare(recipe: str, module: nn.Module, example, calibration) -> Prepared:
    return _recipe(recipe).build(module, example, calibration)


def _lower_and_write(methods: dict[str, Prepared], out_path: Path) -> dict[str, dict]:
    """XNNPACK lowering of every method into one program, written atomically; the delegation summary per method.

    ExecuTorch stores a constant once per program, so methods that share weights (one per length bucket) cost only
    their own small constants.
    """
    from executorch.exir import ExecutorchBackendConfig, to_edge_transform_and_lower

    first = next(iter(methods.values()))  # every method went through the same recipe
    edge = to_edge_transform_and_lower({name: m.program for name, m in methods.items()},
                                       partitioner=_partitioners())
    program = edge.to_executorch(ExecutorchBackendConfig(do_quant_fusion_and_const_prop=first.fuse_quantized_ops))
    atomic_write_bytes(Path(out_path), program.buffer)
    return {name: delegation_summary(edge.exported_program(name), program.exported_program(name)) for name in methods}


def export_pte(
    student: XLNetStudent,
    artifact: Artifact,
    out_path: Path,
    calibration: list[np.ndarray] | None = None,
    lengths: Sequence[int] | None = None,
) -> dict:
    """Export ``FixedLengthClassifier(student)`` with the artifact's recipe to ``out_path`` (written atomically):
    one method per length in ``lengths`` (default: the student's longest), named by ``buckets.method_name``.

    ``calibration``: the ``model_inputs`` arrays ([N, L_max] each) of real training texts, for the static recipes;
    each method is calibrated on them at its own length. Returns the details the manifest records (quantization,
    where each op runs); checking is the pipeline's job.
    """
    if artifact.format != "pte":
        raise PteExportError(f"export_pte builds .pte files; artifact {artifact.name} is a {artifact.format}")
    if artifact.delegate != "xnnpack":
        raise PteExportError(f".pte artifacts are lowered to XNNPACK; artifact asks for delegate '{artifact.delegate}'")
    config = student.config
    lengths = sorted(lengths or [config.seq_len])
    module = FixedLengthClassifier(student.with_op_variants(xnnpack=True)).eval()  # every op inside XNNPACK
    trains = _recipe(artifact.recipe).trains
    if trains is not None:  # once, at the longest length: every method shares the trained weights
        module = trains(module, example_inputs(config, lengths[-1]), None if calibration is None else
                        at_length(calibration, lengths[-1])).eval()  # fmt: skip
    methods = {
        method_name(n): _prepare(artifact.recipe, module, example_inputs(config, n),
                                 None if calibration is None else at_length(calibration, n))
        for n in lengths
    }
    delegation = _lower_and_write(methods, out_path)
    longest = method_name(lengths[-1])
    return {
        "sequence_length": lengths[-1],
        "quantization": methods[longest].quantization,
        "delegation": delegation[longest],  # the longest method's; every method's partition count below
        "partitions_by_method": {name: summary["partitions"] for name, summary in delegation.items()},
    }


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
    if recipe.endswith("-embedding"):
        raise PteExportError(f"recipe '{recipe}' needs the student's embedding; it cannot export a generic module")
    methods = {"forward": _prepare(recipe, module.eval(), example, calibration)}
    return _lower_and_write(methods, out_path)["forward"]


# ---------------------------------------------------------------------------------------------------------------
# Running a .pte on the host
# ---------------------------------------------------------------------------------------------------------------


def _sample(arrays: Sequence[np.ndarray], index: int) -> tuple[torch.Tensor, ...]:
    """Sample ``index`` of each [N, ...] array as a batch-1 tensor."""
    return tuple(torch.from_numpy(np.ascontiguousarray(a[index : index + 1])) for a in arrays)


def load_pte_method(path: Path, method: str | None = None):
    """A method of a .pte (default: its only one), loaded once, with the quantized kernels registered."""
    import executorch.kernels.quantized  # noqa: F401  registers embedding_byte & co. for quantized programs
    from executorch.runtime import Runtime

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no .pte at {path}")
    program = Runtime.get().load_program(path)
    if method is None:
        if len(program.method_names) != 1:
            raise ValueError(f"{path} has methods {sorted(program.method_names)}: name the one to run")
        method = next(iter(program.method_names))
    if method not in program.method_names:
        raise ValueError(f"{path} has no method '{method}' (it has {sorted(program.method_names)})")
    return program.load_method(method)


def set_pte_threads(num_threads: int) -> None:
    """Size ExecuTorch's shared threadpool (XNNPACK runs on it); benchmarks use 1."""
    from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool

    _unsafe_reset_threadpool(num_threads)


def run_pte(path: Path, inputs: list[np.ndarray], method: str | None = None) -> np.ndarray:
    """Logits [N, C] of a .pte method run with ExecuTorch's runtime, one sample at a time (batch 1)."""
    if not inputs or any(len(a) != len(inputs[0]) for a in inputs):
        raise ValueError("inputs must be the program's input arrays, all with the same number of samples N")
    loaded = load_pte_method(path, method)
    rows = [loaded.execute(list(_sample(inputs, i)))[0].numpy() for i in range(len(inputs[0]))]
    return np.concatenate(rows, axis=0)


@register_backend
class ExecuTorchBackend(Backend):
    """``.pte`` programs lowered to XNNPACK, run by ExecuTorch (Python bindings on the host, the C++ runner on the
    emulated device and as its host reference)."""

    format = "pte"
    suffix = "pte"
    runtimes = ("executorch",)

    def export(self, student, artifact, path, calibration, lengths):
        return export_pte(student, artifact, path, calibration, lengths)

    def run_on_host(self, path, inputs, runtime, method=None):
        return run_pte(path, inputs, method)

    def run_host_build(self, path, inputs, runtime, method=None):
        from toolkit.pte_runner import run_pte_with_runner

        return run_pte_with_runner(path, inputs, method=method)

    def run_emulated(self, device, artifact, path, inputs, method=None, **options):
        from toolkit.emulate import run_pte_emulated

        return run_pte_emulated(device, path, inputs, method=method, **options)
