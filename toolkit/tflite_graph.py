"""Reading a .tflite flatbuffer: its operators, versions and tensor types (ai-edge-litert's object API).

Shared by the LiteRT exporter (graph checks, the manifest's operator histogram), the NNAPI coverage analysis and
the tflite-runtime loadability check; it imports neither of them.
"""

from __future__ import annotations

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
