"""The TFLite (LiteRT) export stage: student -> litert-torch -> ai-edge-quantizer recipe -> checked ``.tflite``.

Flow of :func:`export_tflite`:

1. copy the student and, for an NNAPI artifact, switch on its NNAPI lowering (one FULLY_CONNECTED per head instead of
   BATCH_MATMUL, a single GATHER for the embedding, one L2_NORMALIZATION per l2norm);
2. convert ``FixedLengthClassifier`` with litert-torch (int32 inputs, static batch-1 shapes);
3. apply the profile's recipe with ai-edge-quantizer (``full-int8`` is calibrated on real training samples);
4. refuse graphs the target runtime cannot run: int64 tensors, STABLEHLO_* / custom ops, recipes and op versions
   that tflite-runtime 2.14 runs wrongly or cannot load;
5. optionally gate on the profile's tolerances against the fp32 eager student: the file only reaches ``out_path``
   when every check passed (a failure raises :class:`~toolkit.checks.ToleranceError`).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.nn import functional as F

from toolkit.buckets import at_length, method_name
from toolkit.errors import ToolkitError
from toolkit.files import atomic_path
from toolkit.profiles import Artifact
from toolkit.registry import Backend, get_recipe, recipe_names, register_backend, register_recipe
from toolkit.rules import artifact_problems
from toolkit.student import FixedLengthClassifier, XLNetStudent, example_inputs
from toolkit.tflite_graph import (
    compact,
    enum_names,
    list_operators,
    operator_code_name,
    operator_histogram,
    read_model,
    schema,
)


class TfliteExportError(ToolkitError, RuntimeError):
    """A model that must not ship: the message says what is wrong and what to change."""


# ---------------------------------------------------------------------------------------------------------------
# Ops the exporter lowers directly to TFLite builtins (registered with litert-torch on first use)
# ---------------------------------------------------------------------------------------------------------------

_LOWERINGS_REGISTERED = False


@torch.library.custom_op("xlnet_edge::l2_normalization", mutates_args=())
def tfl_l2_normalization(x: torch.Tensor) -> torch.Tensor:
    """``x / max(|x|, 1e-6)`` over the last axis: TFLite's L2_NORMALIZATION (NNAPI runs it)."""
    return F.normalize(x, dim=-1, eps=1e-6)


@tfl_l2_normalization.register_fake
def _(x: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(x)


@torch.library.custom_op("xlnet_edge::gather_rows", mutates_args=())
def tfl_gather_rows(table: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """``table[ids]`` for ids of any rank: one TFLite GATHER (axis 0), no int32 RESHAPE in front of it."""
    return table[ids.long()]


@tfl_gather_rows.register_fake
def _(table: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    return table.new_empty((*ids.shape, table.shape[1]))


def _register_lowerings() -> None:
    """Teach litert-torch to emit the two ops above as TFLite builtins (through its ``tfl.*`` custom-call carrier)."""
    global _LOWERINGS_REGISTERED
    if _LOWERINGS_REGISTERED:
        return
    from litert_converter.mlir import ir
    from litert_converter.mlir.dialects import stablehlo
    from litert_torch.backend.lowerings import registry
    from litert_torch.backend.lowerings import utils as lowering_utils

    def tfl_op(lctx, name: str, operands: list, attributes: dict):
        return stablehlo.custom_call(
            result=lowering_utils.node_meta_to_ir_types(lctx.node),
            inputs=operands,
            call_target_name=ir.StringAttr.get(name),
            has_side_effect=ir.BoolAttr.get(False),
            backend_config=ir.StringAttr.get(str(ir.DictAttr.get(attributes))),
        )

    @registry.lower(torch.ops.xlnet_edge.l2_normalization.default)
    def _l2(lctx, x):
        return tfl_op(lctx, "tfl.l2_normalization", [x], {"fused_activation_function": ir.StringAttr.get("NONE")})

    @registry.lower(torch.ops.xlnet_edge.gather_rows.default)
    def _gather(lctx, table, ids):
        i32 = ir.IntegerType.get_signless(32)
        attrs = {"axis": ir.IntegerAttr.get(i32, 0), "batch_dims": ir.IntegerAttr.get(i32, 0)}
        return tfl_op(lctx, "tfl.gather", [table, ids], attrs)

    _LOWERINGS_REGISTERED = True


def tflite_module(student: XLNetStudent, nnapi: bool) -> FixedLengthClassifier:
    """The module to convert: a copy of the student, with the op variants the NNAPI delegate accepts when asked.

    The NNAPI variants compute the same function (see tests) with ops the NNAPI delegate accepts.
    """
    if nnapi:
        return FixedLengthClassifier(student.with_op_variants(
            per_head_linear=True, l2_normalize=tfl_l2_normalization, gather_rows=tfl_gather_rows))
    return FixedLengthClassifier(copy.deepcopy(student).eval())  # conversion never touches the caller's student


def convert_fp32(student: XLNetStudent, nnapi: bool = False, lengths: Sequence[int] | None = None) -> bytes:
    """The float32 flatbuffer of the student, batch 1: one signature per length (``buckets.method_name``; default:
    the student's longest). The converter stores each weight once, shared by the signatures' subgraphs."""
    import litert_torch

    _register_lowerings()
    module = tflite_module(student, nnapi)
    converter = litert_torch
    for length in sorted(lengths or [student.config.seq_len]):
        converter = converter.signature(method_name(length), module, example_inputs(student.config, length))
    with torch.no_grad():
        converted = converter.convert()
    return bytes(converted.model_content())


# ---------------------------------------------------------------------------------------------------------------
# Recipes (ai-edge-quantizer)
# ---------------------------------------------------------------------------------------------------------------


# Each recipe returns the ai-edge-quantizer recipe it applies (None: the float model as converted).


@register_recipe("tflite", "fp32", compute="float", exact=True)
def _fp32():
    """No quantization: the float32 model as converted."""
    return None


@register_recipe("tflite", "dynamic-int8", compute="int8")
def _dynamic_int8():
    """int8 weights, activations quantized at run time (ai-edge-quantizer dynamic_wi8_afp32)."""
    from ai_edge_quantizer import recipe as aeq_recipe

    return aeq_recipe.dynamic_wi8_afp32()


@register_recipe("tflite", "weight-only-int8", compute="float")
def _weight_only_int8():
    """int8 weights, float compute (weights dequantized at load/run time; runs on tflite-runtime 2.14 too)."""
    from ai_edge_quantizer import recipe as aeq_recipe

    return aeq_recipe.weight_only_wi8_afp32()


@register_recipe("tflite", "dynamic-int4", compute="int8")
def _dynamic_int4():
    """int4 weights per channel, activations quantized to int8 at run time (ai-edge-quantizer dynamic_wi4_afp32)."""
    from ai_edge_quantizer import recipe as aeq_recipe

    return aeq_recipe.dynamic_wi4_afp32()


@register_recipe("tflite", "fp16-weights", compute="float")
def _fp16_weights():
    """fp16 weights, float32 compute."""
    from ai_edge_quantizer import qtyping, recipe_manager
    from ai_edge_quantizer.algorithm_manager import AlgorithmName

    manager = recipe_manager.RecipeManager()
    manager.add_weight_only_config(regex=".*", operation_name=qtyping.TFLOperationName.ALL_SUPPORTED, num_bits=16,
                                   algorithm_key=AlgorithmName.FLOAT_CASTING)
    return manager.get_quantization_recipe()


@register_recipe("tflite", "full-int8", compute="int8", calibrates=True)
def _full_int8():
    """int8 weights and activations with ranges calibrated on training samples; float interface (NNAPI runs it)."""
    from ai_edge_quantizer import qtyping, recipe_manager
    from ai_edge_quantizer.algorithm_manager import AlgorithmName

    manager = recipe_manager.RecipeManager()
    manager.add_static_config(regex=".*", operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
                              activation_num_bits=8, weight_num_bits=8)
    # A constant operand of BATCH_MATMUL (the position keys, the segment embeddings) per tensor: ai-edge-quantizer
    # would quantize it per channel, which LiteRT's int8 BATCH_MATMUL kernel does not apply: those products came out
    # as noise (relative error 1.0) and cost the SST-2 student 1.4 points of agreement with fp32 (check_graph
    # refuses such a model).
    manager.add_static_config(regex=".*", operation_name=qtyping.TFLOperationName.BATCH_MATMUL,
                              activation_num_bits=8, weight_num_bits=8,
                              weight_granularity=qtyping.QuantGranularity.TENSORWISE)
    # Keep the model's interface float/int32 (mask bias in, logits out): QUANTIZE/DEQUANTIZE go inside.
    for io in (qtyping.TFLOperationName.INPUT, qtyping.TFLOperationName.OUTPUT):
        manager.add_quantization_config(regex=".*", operation_name=io, algorithm_key=AlgorithmName.NO_QUANTIZE)
    return manager.get_quantization_recipe()


def _quantization_recipe(recipe: str):
    if recipe not in recipe_names("tflite"):
        raise ValueError(f"no ai-edge-quantizer recipe for '{recipe}'; choose one of {recipe_names('tflite')}")
    return get_recipe("tflite", recipe).build()


def signature_inputs(model: bytes) -> dict[str, list[str]]:
    """{signature key: input names in the exported positional order (args_0, args_1, ...)}."""
    from ai_edge_litert.interpreter import Interpreter

    signatures = Interpreter(model_content=model).get_signature_list()
    return {key: sorted(sig["inputs"], key=lambda n: int(n.rsplit("_", 1)[-1])) for key, sig in signatures.items()}


def signature_length(key: str, longest: int) -> int:
    """The length a signature takes: ``forward_<length>``; a model without buckets takes the longest."""
    suffix = key.rsplit("_", 1)[-1]
    return int(suffix) if suffix.isdigit() else longest


def _running_min_max(qsv: dict, new_qsv: dict) -> dict:
    """Calibration statistics update: the range of every sample seen so far.

    ai-edge-quantizer's default averages each sample's min/max (a moving average), so activations of longer or
    stronger sentences than average fall outside the int8 range and clip. On the SST-2 NNAPI student that clipping
    alone made full-int8 disagree with fp32 on 3-5% of dev sentences; the true range keeps agreement >= 99.7%.
    """
    if not qsv:
        return new_qsv
    return {"min": np.minimum(qsv["min"], new_qsv["min"]), "max": np.maximum(qsv["max"], new_qsv["max"])}


def calibrate(model: bytes, recipe, calibration: list[np.ndarray]) -> dict:
    """Tensor ranges {name: {min, max}} over real samples, one sample at a time (the graph is batch 1); every
    signature (length bucket) is calibrated on the samples at its own length (``buckets.at_length``).

    ai-edge-quantizer's calibrator shows its own progress bar.
    """
    from ai_edge_quantizer import calibrator, recipe_manager

    manager = recipe_manager.RecipeManager()
    manager.load_quantization_recipe(recipe)
    longest = calibration[0].shape[1]
    samples = {}
    for key, names in signature_inputs(model).items():
        arrays = at_length(calibration, signature_length(key, longest))
        samples[key] = [{name: array[i : i + 1] for name, array in zip(names, arrays)} for i in range(len(arrays[0]))]
    ranges = calibrator.Calibrator(model, num_threads=1, qsv_update_func=_running_min_max)
    ranges.calibrate(samples, manager)
    return ranges.get_model_qsvs()


def quantize(model: bytes, recipe: str, calibration: list[np.ndarray] | None = None) -> bytes:
    """Apply a tflite recipe. ``calibration``: model_inputs arrays [N, L] of real samples (needed by full-int8)."""
    quantization_recipe = _quantization_recipe(recipe)
    if quantization_recipe is None:
        return model
    from ai_edge_quantizer import quantizer

    qt = quantizer.Quantizer(model)
    qt.load_quantization_recipe(quantization_recipe)
    ranges = None
    if qt.need_calibration:
        if not calibration or len(calibration[0]) == 0:
            raise TfliteExportError(
                f"recipe {recipe} quantizes activations and needs calibration samples: pass model_inputs() arrays "
                "of real training samples (a few hundred is typical)"
            )
        ranges = calibrate(model, quantization_recipe, calibration)
    return bytes(qt.quantize(ranges, enable_progress_report=False).quantized_model)


# ---------------------------------------------------------------------------------------------------------------
# Reading the flatbuffer
# ---------------------------------------------------------------------------------------------------------------


def check_graph(model: bytes | Path | str) -> None:
    """Refuse what no target runtime here can run: int64 tensors, STABLEHLO_* ops, custom ops."""
    parsed = read_model(model)
    types = enum_names(schema().TensorType)
    problems = []
    for index, subgraph in enumerate(parsed.subgraphs):
        wide = [t.name.decode() for t in subgraph.tensors if types[t.type] in ("INT64", "UINT64")]
        if wide:
            problems.append(f"subgraph {index} has int64 tensors {wide[:5]}: feed int32 ids and keep int64 out")
        # An integer BATCH_MATMUL (int8 left operand; the hybrid float x int8 kernel of dynamic int8 is fine).
        integer_bmms = [op for op in subgraph.operators
                        if operator_code_name(parsed, op.opcodeIndex)[0] == "BATCH_MATMUL"
                        and types[subgraph.tensors[op.inputs[0]].type] == "INT8"]  # fmt: skip
        per_channel = sorted({
            subgraph.tensors[i].name.decode()
            for op in integer_bmms
            for i in op.inputs
            if subgraph.tensors[i].quantization is not None and subgraph.tensors[i].quantization.scale is not None
            and len(subgraph.tensors[i].quantization.scale) > 1
        })  # fmt: skip
        if per_channel:
            problems.append(f"subgraph {index}: BATCH_MATMUL operands quantized per channel {per_channel[:3]}, which "
                            "LiteRT's int8 kernel does not apply (wrong products): quantize them per tensor")
    bad_ops = sorted({op.name for op in list_operators(model) if op.name.startswith(("STABLEHLO_", "CUSTOM"))})
    if bad_ops:
        problems.append(
            f"ops LiteRT's builtin resolver cannot run: {bad_ops} (rewrite the torch code that produced them, "
            "e.g. torch.eye -> a constant buffer)"
        )
    if problems:
        raise TfliteExportError("the converted graph cannot ship:\n  " + "\n  ".join(problems))


# ---------------------------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------------------------


def run_tflite(
    path: Path | str, inputs: list[np.ndarray], runtime: str = "ai-edge-litert", signature: str | None = None
) -> np.ndarray:
    """Logits [N, C] of ``signature`` (default: the model's first): ``inputs`` are model_inputs arrays with a
    leading sample axis, run one sample at a time."""
    if runtime == "tflite-runtime":
        from toolkit.tflite_runtime_env import run_with_tflite_runtime

        return run_with_tflite_runtime(path, inputs, signature)
    if runtime != "ai-edge-litert":
        raise ValueError(f"unknown tflite runtime '{runtime}': use ai-edge-litert or tflite-runtime")
    from ai_edge_litert.interpreter import Interpreter

    model = Path(path).read_bytes()
    signatures = signature_inputs(model)
    key = signature or next(iter(signatures))
    if key not in signatures:
        raise ValueError(f"{path} has no signature '{key}' (it has {sorted(signatures)})")
    names = signatures[key]
    runner = Interpreter(model_content=model, num_threads=1).get_signature_runner(key)
    outputs = []
    for i in range(len(inputs[0])):
        result = runner(**{name: array[i : i + 1] for name, array in zip(names, inputs)})
        outputs.append(next(iter(result.values())).reshape(-1))
    return np.stack(outputs).astype(np.float32)


def export_tflite(
    student: XLNetStudent,
    artifact: Artifact,
    out_path: Path | str,
    calibration: list[np.ndarray] | None,
    lengths: Sequence[int] | None = None,
    *,
    android_api_level: int = 30,
) -> dict:
    """Convert (one signature per length in ``lengths``), quantize and verify for the artifact's runtime, then write
    atomically; returns the details the manifest records (recipe, operators, NNAPI coverage). Checking against the
    student is the pipeline's job."""
    if artifact.format != "tflite":
        raise ValueError(f"{artifact.name} is not a tflite artifact")
    problems = artifact_problems(artifact.format, artifact.recipe, artifact.runtime, artifact.delegate)
    if problems:  # an Artifact built without validation (model_construct) must not slip through
        raise TfliteExportError(f"{artifact.name}: " + "; ".join(problems))
    nnapi = artifact.delegate == "nnapi"
    model = compact(quantize(convert_fp32(student, nnapi=nnapi, lengths=lengths), artifact.recipe, calibration))
    check_graph(model)
    details = {"recipe": artifact.recipe, "operators": operator_histogram(model),
               "sequence_length": max(lengths or [student.config.seq_len])}
    if nnapi:
        from toolkit.nnapi import analyse_coverage

        details["nnapi_coverage"] = analyse_coverage(model, android_api_level=android_api_level).summary()
    with atomic_path(Path(out_path)) as tmp:
        tmp.write_bytes(model)
        if artifact.runtime == "tflite-runtime":
            from toolkit.tflite_runtime_env import require_loadable_by_tflite_runtime

            require_loadable_by_tflite_runtime(tmp)  # raises: the temporary file is removed, nothing ships
    return details


@register_backend
class LiteRTBackend(Backend):
    """``.tflite`` models converted by litert-torch and quantized by ai-edge-quantizer, run by ai-edge-litert or
    tflite-runtime 2.14 (the same package on the host and, built for aarch64, on the emulated device)."""

    format = "tflite"
    suffix = "tflite"
    runtimes = ("ai-edge-litert", "tflite-runtime")

    def export(self, student, artifact, path, calibration, lengths):
        return export_tflite(student, artifact, path, calibration, lengths)

    def prepare_host(self, runtime):
        if runtime == "tflite-runtime":  # its own venv (numpy 1.x), built on first use
            from toolkit.tflite_runtime_env import ensure_tflite_runtime_venv

            ensure_tflite_runtime_venv()

    def run_on_host(self, path, inputs, runtime, method=None):
        return run_tflite(path, inputs, runtime, method)

    def run_emulated(self, device, artifact, path, inputs, method=None, **options):
        from toolkit.emulate import run_tflite_emulated
        from toolkit.rules import emulated_delegate

        delegate = emulated_delegate(artifact["delegate"])
        return run_tflite_emulated(device, artifact["runtime"], path, inputs, delegate=delegate, method=method,
                                   **options)


__all__ = [
    "TfliteExportError",
    "check_graph",
    "convert_fp32",
    "export_tflite",
    "list_operators",
    "operator_histogram",
    "quantize",
    "read_model",
    "run_tflite",
    "tflite_module",
]
