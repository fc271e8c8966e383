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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from toolkit.checks import (
    EXACT_FLOAT_RECIPES,
    CheckResult,
    ToleranceError,
    compare_logits,
    gate_against_student,
    require_passed,
)
from toolkit.errors import ToolkitError
from toolkit.files import atomic_path
from toolkit.profiles import Artifact, Tolerances
from toolkit.student import (
    CentredL2Norm,
    FixedLengthClassifier,
    RelativeAttention,
    XLNetStudent,
    eager_logits,
    example_inputs,
)

RECIPES_WRONG_ON_TFLITE_RUNTIME_214 = {
    "dynamic-int8": "tflite-runtime 2.14 runs ai-edge-quantizer's dynamic-range int8 models with silently wrong "
    "results; use weight-only-int8 for this runtime",
    "full-int8": "tflite-runtime 2.14's aarch64 build crashes (SIGSEGV, with and without XNNPACK) on "
    "ai-edge-quantizer's full-integer models, as the emulated Cortex-A72/A76 showed (the x86 build loads them); "
    "use weight-only-int8 for this runtime",
}


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
    """The module to convert: a copy of the student, with the NNAPI lowering switched on when asked.

    The NNAPI lowering computes the same function (see tests) with ops the NNAPI delegate accepts.
    """
    student = copy.deepcopy(student).eval()
    if nnapi:
        student.gather_rows = tfl_gather_rows
        for module in student.modules():
            if isinstance(module, RelativeAttention):
                module.per_head_linear = True
            if isinstance(module, CentredL2Norm):
                module.l2_normalize = tfl_l2_normalization
    return FixedLengthClassifier(student)


def convert_fp32(student: XLNetStudent, nnapi: bool = False) -> bytes:
    """The float32 flatbuffer of the student at its fixed length, batch 1."""
    import litert_torch

    _register_lowerings()
    module = tflite_module(student, nnapi)
    with torch.no_grad():
        converted = litert_torch.convert(module, example_inputs(student.config))
    return bytes(converted.model_content())


# ---------------------------------------------------------------------------------------------------------------
# Recipes (ai-edge-quantizer)
# ---------------------------------------------------------------------------------------------------------------


def _quantization_recipe(recipe: str):
    from ai_edge_quantizer import qtyping, recipe_manager
    from ai_edge_quantizer import recipe as aeq_recipe
    from ai_edge_quantizer.algorithm_manager import AlgorithmName

    every_op = qtyping.TFLOperationName.ALL_SUPPORTED
    if recipe == "dynamic-int8":
        return aeq_recipe.dynamic_wi8_afp32()
    if recipe == "weight-only-int8":
        return aeq_recipe.weight_only_wi8_afp32()
    manager = recipe_manager.RecipeManager()
    if recipe == "fp16-weights":
        manager.add_weight_only_config(
            regex=".*", operation_name=every_op, num_bits=16, algorithm_key=AlgorithmName.FLOAT_CASTING
        )
    elif recipe == "full-int8":
        manager.add_static_config(regex=".*", operation_name=every_op, activation_num_bits=8, weight_num_bits=8)
        # Keep the model's interface float/int32 (mask bias in, logits out): QUANTIZE/DEQUANTIZE go inside.
        for io in (qtyping.TFLOperationName.INPUT, qtyping.TFLOperationName.OUTPUT):
            manager.add_quantization_config(regex=".*", operation_name=io, algorithm_key=AlgorithmName.NO_QUANTIZE)
    else:
        raise ValueError(f"no ai-edge-quantizer recipe for '{recipe}'")
    return manager.get_quantization_recipe()


def signature_names(model: bytes) -> tuple[str, list[str]]:
    """(signature key, input names in the exported positional order: args_0, args_1, ...)."""
    from ai_edge_litert.interpreter import Interpreter

    signatures = Interpreter(model_content=model).get_signature_list()
    key = next(iter(signatures))
    names = sorted(signatures[key]["inputs"], key=lambda n: int(n.rsplit("_", 1)[-1]))
    return key, names


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
    """Tensor ranges {name: {min, max}} over real samples, one sample at a time (the graph is batch 1).

    ai-edge-quantizer's calibrator shows its own progress bar.
    """
    from ai_edge_quantizer import calibrator, recipe_manager

    manager = recipe_manager.RecipeManager()
    manager.load_quantization_recipe(recipe)
    key, names = signature_names(model)
    samples = [{name: array[i : i + 1] for name, array in zip(names, calibration)} for i in range(len(calibration[0]))]
    ranges = calibrator.Calibrator(model, num_threads=1, qsv_update_func=_running_min_max)
    ranges.calibrate({key: samples}, manager)
    return ranges.get_model_qsvs()


def quantize(model: bytes, recipe: str, calibration: list[np.ndarray] | None = None) -> bytes:
    """Apply a tflite recipe. ``calibration``: model_inputs arrays [N, L] of real samples (needed by full-int8)."""
    if recipe == "fp32":
        return model
    from ai_edge_quantizer import quantizer

    quantization_recipe = _quantization_recipe(recipe)
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


@dataclass(frozen=True)
class OperatorInfo:
    """One node of the graph: builtin name (or CUSTOM:name), op version, input/output dtypes."""

    name: str
    version: int
    input_types: tuple[str | None, ...]
    output_types: tuple[str, ...]


def _schema():
    from ai_edge_litert import schema_py_generated as schema

    return schema


def read_model(model: bytes | Path | str):
    """The flatbuffer as ai-edge-litert's object API (``ModelT``)."""
    data = Path(model).read_bytes() if isinstance(model, (str, Path)) else model
    return _schema().ModelT.InitFromPackedBuf(bytearray(data), 0)


def _enum_names(enum_class) -> dict[int, str]:
    return {value: name for name, value in vars(enum_class).items() if not name.startswith("_")}


def operator_code_name(model, opcode_index: int) -> tuple[str, int]:
    """(op name, version) of an operator code; builtin codes above 127 live in ``builtinCode`` only."""
    schema = _schema()
    code = model.operatorCodes[opcode_index]
    builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
    name = _enum_names(schema.BuiltinOperator)[builtin]
    if name == "CUSTOM":
        custom = code.customCode.decode() if isinstance(code.customCode, bytes) else code.customCode
        name = f"CUSTOM:{custom}"
    return name, code.version


def list_operators(model: bytes | Path | str) -> list[OperatorInfo]:
    """Every node of the main subgraph in execution order."""
    parsed = read_model(model)
    types = _enum_names(_schema().TensorType)
    graph = parsed.subgraphs[0]
    out = []
    for op in graph.operators:
        name, version = operator_code_name(parsed, op.opcodeIndex)
        inputs = tuple(types[graph.tensors[i].type] if i >= 0 else None for i in op.inputs)
        outputs = tuple(types[graph.tensors[i].type] for i in op.outputs)
        out.append(OperatorInfo(name, version, inputs, outputs))
    return out


def operator_histogram(model: bytes | Path | str) -> dict[str, int]:
    """``{"FULLY_CONNECTED v5": 12, ...}`` for the manifest."""
    counts: dict[str, int] = {}
    for op in list_operators(model):
        key = f"{op.name} v{op.version}"
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def check_graph(model: bytes | Path | str) -> None:
    """Refuse what no target runtime here can run: int64 tensors, STABLEHLO_* ops, custom ops."""
    parsed = read_model(model)
    types = _enum_names(_schema().TensorType)
    problems = []
    for index, subgraph in enumerate(parsed.subgraphs):
        wide = [t.name.decode() for t in subgraph.tensors if types[t.type] in ("INT64", "UINT64")]
        if wide:
            problems.append(f"subgraph {index} has int64 tensors {wide[:5]}: feed int32 ids and keep int64 out")
    bad_ops = sorted({op.name for op in list_operators(model) if op.name.startswith(("STABLEHLO_", "CUSTOM"))})
    if bad_ops:
        problems.append(
            f"ops LiteRT's builtin resolver cannot run: {bad_ops} (rewrite the torch code that produced them, "
            "e.g. torch.eye -> a constant buffer)"
        )
    if problems:
        raise TfliteExportError("the converted graph cannot ship:\n  " + "\n  ".join(problems))


# ---------------------------------------------------------------------------------------------------------------
# Running and checking
# ---------------------------------------------------------------------------------------------------------------


def run_tflite(path: Path | str, inputs: list[np.ndarray], runtime: str = "ai-edge-litert") -> np.ndarray:
    """Logits [N, C]: ``inputs`` are model_inputs arrays with a leading sample axis, run one sample at a time."""
    if runtime == "tflite-runtime":
        from toolkit.tflite_runtime_env import run_with_tflite_runtime

        return run_with_tflite_runtime(path, inputs)
    if runtime != "ai-edge-litert":
        raise ValueError(f"unknown tflite runtime '{runtime}': use ai-edge-litert or tflite-runtime")
    from ai_edge_litert.interpreter import Interpreter

    model = Path(path).read_bytes()
    key, names = signature_names(model)
    runner = Interpreter(model_content=model, num_threads=1).get_signature_runner(key)
    outputs = []
    for i in range(len(inputs[0])):
        result = runner(**{name: array[i : i + 1] for name, array in zip(names, inputs)})
        outputs.append(next(iter(result.values())).reshape(-1))
    return np.stack(outputs).astype(np.float32)


def host_check_tflite(
    path: Path | str,
    student: XLNetStudent,
    inputs: list[np.ndarray],
    labels: np.ndarray | None,
    tolerances: Tolerances,
    is_float: bool,
    runtime: str = "ai-edge-litert",
) -> CheckResult:
    """The artifact on the host runtime vs the fp32 eager student, gated by the profile's tolerances."""
    reference = eager_logits(student, inputs)
    candidate = run_tflite(path, inputs, runtime)
    result = compare_logits(f"host {runtime} vs eager fp32", reference, candidate, labels)
    return gate_against_student(result, tolerances, is_float)


@dataclass
class TfliteExport:
    """What :func:`export_tflite` produced; ``details`` goes into the manifest's ArtifactRecord."""

    path: Path
    artifact: Artifact
    bytes: int
    operators: dict[str, int]
    checks: list[CheckResult] = field(default_factory=list)
    nnapi: dict | None = None
    valid: bool = False

    @property
    def details(self) -> dict:
        details = {"recipe": self.artifact.recipe, "operators": self.operators}
        if self.nnapi is not None:
            details["nnapi_coverage"] = self.nnapi
        return details

    def to_json(self) -> dict:
        return {
            "path": str(self.path),
            "artifact": self.artifact.model_dump(),
            "bytes": self.bytes,
            "details": self.details,
            "checks": [c.to_json() for c in self.checks],
            "valid": self.valid,
        }


def refuse_for_runtime(artifact: Artifact) -> None:
    """Recipes a runtime is known to run wrongly are refused before anything is converted."""
    if artifact.runtime == "tflite-runtime" and artifact.recipe in RECIPES_WRONG_ON_TFLITE_RUNTIME_214:
        raise TfliteExportError(
            f"{artifact.name} for tflite-runtime: {RECIPES_WRONG_ON_TFLITE_RUNTIME_214[artifact.recipe]}"
        )


def export_tflite(
    student: XLNetStudent,
    artifact: Artifact,
    out_path: Path | str,
    calibration: list[np.ndarray] | None,
    *,
    check_inputs: list[np.ndarray] | None = None,
    labels: np.ndarray | None = None,
    tolerances: Tolerances | None = None,
    android_api_level: int = 30,
) -> TfliteExport:
    """Convert, quantize, verify for the artifact's runtime, and (with ``tolerances``) gate; then write atomically.

    With ``tolerances`` and ``check_inputs`` the host check runs on the temporary file and a failure raises
    :class:`ToleranceError` before anything reaches ``out_path``; without them the export is written with
    ``valid=False`` for a later validation stage to decide.
    """
    if artifact.format != "tflite":
        raise ValueError(f"{artifact.name} is not a tflite artifact")
    refuse_for_runtime(artifact)
    nnapi = artifact.delegate == "nnapi"
    model = quantize(convert_fp32(student, nnapi=nnapi), artifact.recipe, calibration)
    check_graph(model)
    coverage = None
    if nnapi:
        from toolkit.nnapi import analyse_coverage

        coverage = analyse_coverage(model, android_api_level=android_api_level).summary()

    out_path = Path(out_path)
    with atomic_path(out_path) as tmp:
        tmp.write_bytes(model)
        if artifact.runtime == "tflite-runtime":
            from toolkit.tflite_runtime_env import require_loadable_by_tflite_runtime

            require_loadable_by_tflite_runtime(tmp)
        result = TfliteExport(out_path, artifact, len(model), operator_histogram(model), nnapi=coverage)
        if tolerances is not None and check_inputs is not None:
            check = host_check_tflite(
                tmp, student, check_inputs, labels, tolerances, artifact.recipe in EXACT_FLOAT_RECIPES, artifact.runtime
            )
            result.checks.append(check)
            require_passed(result.checks)  # raises ToleranceError: the temporary file is removed, nothing ships
            result.valid = True
    return result


__all__ = [
    "OperatorInfo",
    "TfliteExport",
    "TfliteExportError",
    "ToleranceError",
    "check_graph",
    "convert_fp32",
    "export_tflite",
    "host_check_tflite",
    "list_operators",
    "operator_histogram",
    "quantize",
    "read_model",
    "run_tflite",
    "tflite_module",
]
