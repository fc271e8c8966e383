"""Reading a .tflite flatbuffer: its operators, versions and tensor types (ai-edge-litert's object API).

Shared by the LiteRT exporter (graph checks, the manifest's operator histogram), the NNAPI coverage analysis and
the tflite-runtime loadability check; it imports neither of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class OperatorInfo:
    """One node of the graph: builtin name (or CUSTOM:name), op version, input/output dtypes."""

    name: str
    version: int
    input_types: tuple[str | None, ...]
    output_types: tuple[str, ...]


def schema():
    from ai_edge_litert import schema_py_generated as schema

    return schema


def read_model(model: bytes | Path | str):
    """The flatbuffer as ai-edge-litert's object API (``ModelT``)."""
    data = Path(model).read_bytes() if isinstance(model, (str, Path)) else model
    return schema().ModelT.InitFromPackedBuf(bytearray(data), 0)


def enum_names(enum_class) -> dict[int, str]:
    return {value: name for name, value in vars(enum_class).items() if not name.startswith("_")}


def operator_code_name(model, opcode_index: int) -> tuple[str, int]:
    """(op name, version) of an operator code; builtin codes above 127 live in ``builtinCode`` only."""
    code = model.operatorCodes[opcode_index]
    builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
    name = enum_names(schema().BuiltinOperator)[builtin]
    if name == "CUSTOM":
        custom = code.customCode.decode() if isinstance(code.customCode, bytes) else code.customCode
        name = f"CUSTOM:{custom}"
    return name, code.version


def list_operators(model: bytes | Path | str) -> list[OperatorInfo]:
    """Every node of the main subgraph in execution order."""
    parsed = read_model(model)
    types = enum_names(schema().TensorType)
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


_PACKAGE_PREFIX = re.compile(r"\b(?:[a-z_][a-z0-9_]*\.)+(?=[A-Z])")  # "toolkit.student." before "XLNetStudent_student"


def compact(model: bytes) -> bytes:
    """The same model in fewer bytes: what a model with one signature per length bucket would otherwise repeat.

    * Quantization parameters: a weight shared by several signatures' subgraphs is one buffer, but ai-edge-quantizer
      gives each subgraph's tensor its own copy of the per-channel scales (the embedding's alone are ~12 bytes per
      vocabulary row). Identical parameter tables are written once and referenced by every tensor (a flatbuffer
      table may be referenced from several places).
    * Tensor names lose their Python package paths (``toolkit.student.XLNetStudent_student`` ->
      ``XLNetStudent_student``): the module path that makes them readable stays.
    * Weights the quantizer wrote after the flatbuffer (``offset``/``size``) are stored inline, as the converter
      does for models of this size.
    """
    import flatbuffers
    import numpy as np

    parsed = read_model(model)
    for buffer in parsed.buffers:
        if buffer.offset > 1:
            buffer.data = np.frombuffer(model[buffer.offset : buffer.offset + buffer.size], dtype=np.uint8)
            buffer.offset = buffer.size = 0
    shared: dict = {}
    for subgraph in parsed.subgraphs:
        for tensor in subgraph.tensors:
            if tensor.name is not None:
                tensor.name = _PACKAGE_PREFIX.sub("", tensor.name.decode()).encode()
            if tensor.quantization is not None:
                tensor.quantization = shared.setdefault(_quantization_key(tensor.quantization), tensor.quantization)
    params_class = schema().QuantizationParametersT
    pack, packed = params_class.Pack, {}

    def pack_once(params, builder):
        if id(params) not in packed:
            packed[id(params)] = pack(params, builder)
        return packed[id(params)]

    params_class.Pack = pack_once  # only while this model is written
    try:
        builder = flatbuffers.Builder(len(model))
        builder.Finish(parsed.Pack(builder), file_identifier=b"TFL3")
    finally:
        params_class.Pack = pack
    return bytes(builder.Output())


def _quantization_key(params) -> tuple:
    import numpy as np

    arrays = tuple(None if getattr(params, f) is None else np.asarray(getattr(params, f)).tobytes()
                   for f in ("min", "max", "scale", "zeroPoint"))
    return arrays, params.quantizedDimension, params.detailsType, repr(vars(params.details)) if params.details else None
