"""NNAPI coverage analyser: which nodes of a ``.tflite`` the TFLite NNAPI delegate would take, and in how many pieces.

No Android device or emulator can run here, so this re-applies the delegate's own decision procedure to the
flatbuffer:

* per node, the rules of ``NNAPIDelegateKernel::Validate`` in tensorflow/lite/delegates/nnapi/nnapi_delegate.cc
  (op + version, input/output dtypes, operands that must be constant, rank limits, the Android API level an op or
  dtype needs), plus the static-shape requirement (the delegate's default ``allow_dynamic_dimensions=false``);
* the partitioning of ``PartitionGraphIntoIndependentNodeSubsets`` (tensorflow/lite/graph_info.cc): nodes are
  swept in execution order, each subset takes every ready node of its kind, so a CPU node in the middle of the
  graph splits the delegated part in two. Each delegated subset becomes one NNAPI model; by default the delegate
  keeps only the 3 largest (``max_number_delegated_partitions``).

Only the ops this project's graphs use, plus their common neighbours, have rules; any other op is reported as
"not mapped by the NNAPI delegate", which is what Validate's ``default:`` branch says too. The analysis is an
upper bound: a vendor driver may still refuse a node the delegate accepts (``GetSupportedOperations``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from toolkit.tflite_graph import enum_names, operator_code_name, read_model, schema

# Android API levels of the NNAPI feature levels (nnapi_delegate_kernel.h).
NNAPI_1_0, NNAPI_1_1, NNAPI_1_2, NNAPI_1_3 = 27, 28, 29, 30
DEFAULT_MAX_DELEGATED_PARTITIONS = 3

FLOAT = {"FLOAT32"}
QUANT8 = {"UINT8", "INT8"}
FLOAT_OR_QUANT8 = FLOAT | QUANT8


@dataclass(frozen=True)
class Tensor:
    type: str
    shape: tuple[int, ...]
    dynamic: bool  # a -1 in shape_signature
    constant: bool  # data stored in the flatbuffer (kTfLiteMmapRo at run time)
    scale: float | None
    zero_point: int | None


@dataclass(frozen=True)
class Node:
    index: int
    op: str
    version: int
    inputs: tuple[int, ...]  # -1 = optional input left out
    outputs: tuple[int, ...]
    options: object  # the builtin options object (e.g. FullyConnectedOptionsT), or None


@dataclass
class Graph:
    tensors: list[Tensor]
    nodes: list[Node]
    inputs: list[int]

    def input(self, node: Node, position: int) -> Tensor | None:
        if position >= len(node.inputs) or node.inputs[position] < 0:
            return None
        return self.tensors[node.inputs[position]]

    def output(self, node: Node, position: int = 0) -> Tensor:
        return self.tensors[node.outputs[position]]


def load_graph(model: bytes | Path | str) -> Graph:
    """The main subgraph of a flatbuffer as plain data (via ai-edge-litert's schema bindings)."""
    parsed = read_model(model)
    types = enum_names(schema().TensorType)
    graph = parsed.subgraphs[0]
    tensors = []
    for t in graph.tensors:
        buffer = parsed.buffers[t.buffer] if t.buffer < len(parsed.buffers) else None
        constant = buffer is not None and ((buffer.data is not None and len(buffer.data) > 0) or buffer.offset > 1)
        signature = t.shapeSignature if t.shapeSignature is not None else t.shape
        q = t.quantization
        scale = float(q.scale[0]) if q is not None and q.scale is not None and len(q.scale) else None
        zero = int(q.zeroPoint[0]) if q is not None and q.zeroPoint is not None and len(q.zeroPoint) else None
        shape = tuple(int(d) for d in (t.shape if t.shape is not None else ()))
        dynamic = signature is not None and any(int(d) < 0 for d in signature)
        tensors.append(Tensor(types[t.type], shape, dynamic, constant, scale, zero))
    nodes = []
    for index, op in enumerate(graph.operators):
        name, version = operator_code_name(parsed, op.opcodeIndex)
        inputs = tuple(int(i) for i in (op.inputs if op.inputs is not None else ()))
        outputs = tuple(int(i) for i in (op.outputs if op.outputs is not None else ()))
        nodes.append(Node(index, name, version, inputs, outputs, op.builtinOptions))
    return Graph(tensors, nodes, [int(i) for i in graph.inputs])


# ---------------------------------------------------------------------------------------------------------------
# Per-op rules (NNAPIDelegateKernel::Validate). Each returns the list of reasons to refuse; empty = accepted.
# ---------------------------------------------------------------------------------------------------------------

Rule = Callable[[Graph, Node, int], list[str]]


class _Check:
    """Collects failures the way Validate's Expect* helpers do (every failed expectation is recorded)."""

    def __init__(self) -> None:
        self.reasons: list[str] = []

    def expect(self, condition: bool, reason: str) -> None:
        if not condition:
            self.reasons.append(reason)

    def max_version(self, node: Node, highest: int) -> None:
        self.expect(node.version <= highest, f"op version {node.version} > {highest}")

    def min_api(self, api: int, needed: int) -> None:
        self.expect(api >= needed, f"needs Android API {needed}+")

    def input_type(self, tensor: Tensor | None, allowed: set[str], what: str = "input") -> None:
        if tensor is not None:
            self.expect(tensor.type in allowed, f"{what} type {tensor.type} not in {sorted(allowed)}")


def _activation(node: Node) -> int:
    return int(getattr(node.options, "fusedActivationFunction", 0) or 0)


def _add_mul(node_name: str, max_version: int) -> Rule:
    def rule(g: Graph, n: Node, api: int) -> list[str]:
        c = _Check()
        c.max_version(n, max_version)
        if api >= NNAPI_1_3:
            c.input_type(g.input(n, 0), FLOAT_OR_QUANT8 | {"INT32"})
            if g.input(n, 0).type == "INT32":
                c.expect(_activation(n) == 0, f"int32 {node_name} with a fused activation")
        else:
            c.input_type(g.input(n, 0), FLOAT_OR_QUANT8)
        return c.reasons

    return rule


def _sub(g: Graph, n: Node, api: int) -> list[str]:
    c = _Check()
    c.max_version(n, 3)
    kind = g.input(n, 0).type
    c.expect(
        (api >= NNAPI_1_1 and kind in FLOAT) or (api >= NNAPI_1_2 and kind in QUANT8) or (api >= NNAPI_1_3 and kind == "INT32"),
        f"SUB on {kind} not supported at API {api}",
    )
    c.expect(len(g.input(n, 0).shape) <= 4 and len(g.input(n, 1).shape) <= 4, "input rank > 4")
    return c.reasons


def _fully_connected(g: Graph, n: Node, api: int) -> list[str]:
    c = _Check()
    c.max_version(n, 5)
    c.expect(g.output(n).type != "INT16", "int16 output")
    if api < NNAPI_1_2:
        c.input_type(g.input(n, 0), FLOAT | {"UINT8"})
        weights = g.input(n, 1)
        c.expect(not (g.input(n, 0).type in FLOAT and weights.type in QUANT8), "hybrid operator before NNAPI 1.2")
    if getattr(n.options, "keepNumDims", False):
        c.min_api(api, NNAPI_1_3)
    return c.reasons


def _softmax(g: Graph, n: Node, api: int) -> list[str]:
    c = _Check()
    c.max_version(n, 2)
    c.input_type(g.input(n, 0), FLOAT_OR_QUANT8)
    c.input_type(g.output(n), FLOAT_OR_QUANT8, "output")
    rank = len(g.input(n, 0).shape)
    c.expect(rank <= 4, "input rank > 4")
    if api < NNAPI_1_2:
        c.expect(rank in (2, 4), "only 2D/4D softmax before API 29")
    return c.reasons


def _reshape(g: Graph, n: Node, api: int) -> list[str]:
    c = _Check()
    c.max_version(n, 1)
    c.input_type(g.input(n, 0), FLOAT_OR_QUANT8)
    if len(n.inputs) >= 2 and g.input(n, 1) is not None:
        c.expect(g.input(n, 1).constant, "shape operand is not constant")
    return c.reasons


def _l2_normalization(g: Graph, n: Node, api: int) -> list[str]:
    c = _Check()
    c.max_version(n, 2)
    if api < NNAPI_1_2:
        c.input_type(g.input(n, 0), FLOAT)
        c.expect(len(g.input(n, 0).shape) == 4, "needs a 4D input before API 29")
    c.expect(_activation(n) == 0, "fused activation")
    return c.reasons


def _concatenation(g: Graph, n: Node, api: int) -> list[str]:
    c = _Check()
    c.max_version(n, 2)
    c.expect(_activation(n) == 0, "fused activation")
    c.expect(len(g.input(n, 0).shape) <= 4, "input rank > 4")
    c.input_type(g.input(n, 0), {"FLOAT16", "FLOAT32", "UINT8", "INT8"})
    return c.reasons


def _dequantize(g: Graph, n: Node, api: int) -> list[str]:
    source = g.input(n, 0)
    if source.type == "FLOAT16" and source.constant:
        return []  # DoPrepare's FP16GraphPartitionHelper folds constant fp16 weights into their consumers
    if api >= NNAPI_1_3 and source.type == "FLOAT16" and not source.constant:
        return []
    c = _Check()
    c.expect(n.version in (1, 2), f"op version {n.version} not 1 or 2")
    c.input_type(source, {"UINT8"} if api < NNAPI_1_2 else QUANT8)
    if api == NNAPI_1_2 and source.type == "INT8":
        c.expect(source.zero_point in (0, None), "int8 with a non-zero zero point at API 29")
    return c.reasons


def _quantize(g: Graph, n: Node, api: int) -> list[str]:
    c = _Check()
    c.max_version(n, 2)
    c.min_api(api, NNAPI_1_2)
    c.input_type(g.input(n, 0), FLOAT | QUANT8)
    c.input_type(g.output(n), {"UINT8"} if api < NNAPI_1_3 else QUANT8, "output")
    c.expect((g.output(n).scale or 0) > 0, "output scale <= 0")
    return c.reasons


def _float_or_quant8(max_version: int) -> Rule:
    def rule(g: Graph, n: Node, api: int) -> list[str]:
        c = _Check()
        c.max_version(n, max_version)
        c.input_type(g.input(n, 0), FLOAT_OR_QUANT8)
        return c.reasons

    return rule


def _tanh(g: Graph, n: Node, api: int) -> list[str]:
    c = _Check()
    c.max_version(n, 2)
    kind = g.input(n, 0).type
    c.expect(kind in FLOAT or (kind in QUANT8 and api >= NNAPI_1_2), f"TANH on {kind} at API {api}")
    return c.reasons


def _transpose(g: Graph, n: Node, api: int) -> list[str]:
    c = _Check()
    c.max_version(n, 2)
    c.min_api(api, NNAPI_1_1)
    c.expect(len(n.inputs) > 1 and g.input(n, 1).constant, "permutation is not constant")
    return c.reasons


def _float_only(max_version: int, min_api: int) -> Rule:
    """ABS, EXP, LOG, RSQRT, POW, SQRT, SIN: NNAPI only takes them in float."""

    def rule(g: Graph, n: Node, api: int) -> list[str]:
        c = _Check()
        c.max_version(n, max_version)
        c.min_api(api, min_api)
        c.input_type(g.input(n, 0), FLOAT)
        return c.reasons

    return rule


def _slice(g: Graph, n: Node, api: int) -> list[str]:
    c = _Check()
    c.max_version(n, 2)
    c.min_api(api, NNAPI_1_2)
    c.input_type(g.input(n, 0), {"FLOAT32", "INT32", "UINT8", "INT8"})
    c.input_type(g.input(n, 1), {"INT32"}, "begin")
    c.input_type(g.input(n, 2), {"INT32"}, "size")
    return c.reasons


def _strided_slice(g: Graph, n: Node, api: int) -> list[str]:
    c = _Check()
    c.max_version(n, 2)
    c.min_api(api, NNAPI_1_1)
    return c.reasons


def _mean(g: Graph, n: Node, api: int) -> list[str]:
    c = _Check()
    c.max_version(n, 2)
    c.min_api(api, NNAPI_1_1)
    source, result = g.input(n, 0), g.output(n)
    c.input_type(source, FLOAT | QUANT8 if api >= NNAPI_1_2 else FLOAT)
    c.expect(len(result.shape) > 0, "scalar output")
    c.expect(
        source.scale == result.scale and source.zero_point == result.zero_point,
        "input and output quantization differ",
    )
    return c.reasons


def _embedding_lookup(g: Graph, n: Node, api: int) -> list[str]:
    c = _Check()
    c.max_version(n, 1)
    c.input_type(g.input(n, 1), FLOAT, "table")
    return c.reasons


def _maximum_minimum(g: Graph, n: Node, api: int) -> list[str]:
    c = _Check()
    c.max_version(n, 3)
    c.min_api(api, NNAPI_1_2)
    c.input_type(g.input(n, 0), {"FLOAT32", "UINT8", "INT8", "INT32"})
    for position in (0, 1):
        operand = g.input(n, position)
        if operand is not None and len(operand.shape) == 0:
            c.expect(operand.constant, "scalar operand is not constant")
    return c.reasons


def _cast(g: Graph, n: Node, api: int) -> list[str]:
    c = _Check()
    c.max_version(n, 1)
    c.min_api(api, NNAPI_1_2)
    allowed = {"FLOAT32", "INT32", "UINT8"} | ({"INT8"} if api >= NNAPI_1_3 else set())
    c.input_type(g.input(n, 0), allowed)
    c.input_type(g.output(n), allowed, "output")
    return c.reasons


def _gather(g: Graph, n: Node, api: int) -> list[str]:
    c = _Check()
    c.max_version(n, 2)
    c.min_api(api, NNAPI_1_2)
    c.input_type(g.input(n, 0), {"FLOAT32", "FLOAT16", "INT32", "UINT8", "INT8"})
    c.input_type(g.input(n, 1), {"INT32"}, "positions")
    c.expect(len(g.input(n, 1).shape) != 0, "0-D positions")
    return c.reasons


def _squeeze(g: Graph, n: Node, api: int) -> list[str]:
    c = _Check()
    c.max_version(n, 1)
    c.min_api(api, NNAPI_1_1)
    return c.reasons


def _expand_dims(g: Graph, n: Node, api: int) -> list[str]:
    c = _Check()
    c.max_version(n, 1)
    c.min_api(api, NNAPI_1_2)
    c.input_type(g.input(n, 0), {"FLOAT32", "FLOAT16", "INT32", "UINT8", "INT8"})
    c.expect(g.input(n, 1).type == "INT32" and g.input(n, 1).constant, "axis is not a constant int32")
    return c.reasons


def _reduce_float_only(g: Graph, n: Node, api: int) -> list[str]:
    """SUM and REDUCE_PROD: NNAPI's REDUCE_SUM/PROD are float only."""
    c = _Check()
    c.max_version(n, 1)
    c.min_api(api, NNAPI_1_2)
    c.expect(len(g.output(n).shape) != 0, "scalar output")
    c.input_type(g.input(n, 0), FLOAT)
    return c.reasons


def _reduce_min_max(g: Graph, n: Node, api: int) -> list[str]:
    c = _Check()
    c.max_version(n, 2)
    c.min_api(api, NNAPI_1_2)
    c.input_type(g.input(n, 0), {"FLOAT32", "UINT8", "INT8"})
    return c.reasons


def _comparison(g: Graph, n: Node, api: int) -> list[str]:
    c = _Check()
    c.max_version(n, 2)
    c.min_api(api, NNAPI_1_1)
    c.input_type(g.input(n, 0), {"FLOAT32", "UINT8", "INT8", "BOOL", "INT32"})
    return c.reasons


def _select(g: Graph, n: Node, api: int) -> list[str]:
    c = _Check()
    c.max_version(n, 2)
    c.min_api(api, NNAPI_1_1)
    c.input_type(g.input(n, 1), {"FLOAT32", "INT32", "UINT8", "INT8"}, "value")
    c.expect(g.input(n, 0).shape == g.input(n, 1).shape, "condition and inputs differ in shape")
    return c.reasons


def _pad(g: Graph, n: Node, api: int) -> list[str]:
    c = _Check()
    c.max_version(n, 2)
    c.input_type(g.input(n, 0), FLOAT_OR_QUANT8)
    c.min_api(api, NNAPI_1_1)
    c.expect(0 not in g.input(n, 0).shape, "empty input")
    if len(n.inputs) == 3:
        c.min_api(api, NNAPI_1_2)
    return c.reasons


def _conv(g: Graph, n: Node, api: int) -> list[str]:
    c = _Check()
    c.max_version(n, 3)
    if api < NNAPI_1_2:
        c.input_type(g.input(n, 0), FLOAT | {"UINT8"})
    if n.op == "CONV_2D":
        c.expect(len(n.inputs) == 3 and n.inputs[2] >= 0, "Conv2D without bias")
    return c.reasons


def _neg(g: Graph, n: Node, api: int) -> list[str]:
    c = _Check()
    c.max_version(n, 2)
    c.min_api(api, NNAPI_1_1)
    c.input_type(g.input(n, 0), {"FLOAT32", "INT32"})
    return c.reasons


def _pack(g: Graph, n: Node, api: int) -> list[str]:
    c = _Check()
    c.max_version(n, 2)
    c.min_api(api, NNAPI_1_3)
    c.input_type(g.input(n, 0), {"INT32", "FLOAT32", "INT8"})
    axis = int(getattr(n.options, "axis", 0) or 0)
    c.expect(axis not in (-1, len(g.input(n, 0).shape)), "packing along the last axis")
    return c.reasons


def _split(g: Graph, n: Node, api: int) -> list[str]:
    c = _Check()
    c.max_version(n, 3)
    c.min_api(api, NNAPI_1_2)
    allowed = {"FLOAT32", "UINT8", "INT32"} | ({"INT8"} if api >= NNAPI_1_3 else set())
    c.input_type(g.input(n, 1), allowed)
    c.expect(g.input(n, 0).type == "INT32" and g.input(n, 0).constant, "axis is not a constant int32")
    return c.reasons


def _since(min_api: int, max_version: int, allowed: set[str] | None = None) -> Rule:
    def rule(g: Graph, n: Node, api: int) -> list[str]:
        c = _Check()
        c.max_version(n, max_version)
        c.min_api(api, min_api)
        if allowed is not None:
            c.input_type(g.input(n, 0), allowed)
        return c.reasons

    return rule


RULES: dict[str, Rule] = {
    "ADD": _add_mul("ADD", 2),
    "MUL": _add_mul("MUL", 2),  # v3 only when an accelerator is named explicitly
    "SUB": _sub,
    "DIV": lambda g, n, api: _float_only(1, NNAPI_1_1)(g, n, api),
    "FULLY_CONNECTED": _fully_connected,
    "SOFTMAX": _softmax,
    "RESHAPE": _reshape,
    "L2_NORMALIZATION": _l2_normalization,
    "CONCATENATION": _concatenation,
    "DEQUANTIZE": _dequantize,
    "QUANTIZE": _quantize,
    "RELU": _float_or_quant8(2),
    "RELU6": _float_or_quant8(2),
    "RELU_N1_TO_1": _float_or_quant8(2),
    "LOGISTIC": _float_or_quant8(2),
    "MAX_POOL_2D": _float_or_quant8(2),
    "AVERAGE_POOL_2D": _float_or_quant8(2),
    "HARD_SWISH": _float_or_quant8(99),
    "TANH": _tanh,
    "TRANSPOSE": _transpose,
    "ABS": _float_only(1, NNAPI_1_2),
    "EXP": _float_only(1, NNAPI_1_2),
    "LOG": _float_only(1, NNAPI_1_2),
    "RSQRT": _float_only(1, NNAPI_1_2),
    "POW": _float_only(1, NNAPI_1_2),
    "SQRT": _float_only(1, NNAPI_1_2),
    "SIN": _float_only(1, NNAPI_1_2),
    "LOG_SOFTMAX": _float_only(1, NNAPI_1_2),
    "SLICE": _slice,
    "STRIDED_SLICE": _strided_slice,
    "MEAN": _mean,
    "EMBEDDING_LOOKUP": _embedding_lookup,
    "MAXIMUM": _maximum_minimum,
    "MINIMUM": _maximum_minimum,
    "CAST": _cast,
    "GATHER": _gather,
    "SQUEEZE": _squeeze,
    "EXPAND_DIMS": _expand_dims,
    "SUM": _reduce_float_only,
    "REDUCE_PROD": _reduce_float_only,
    "REDUCE_MAX": _reduce_min_max,
    "REDUCE_MIN": _reduce_min_max,
    "LESS": _comparison,
    "LESS_EQUAL": _comparison,
    "GREATER": _comparison,
    "GREATER_EQUAL": _comparison,
    "EQUAL": _comparison,
    "NOT_EQUAL": _comparison,
    "SELECT": _select,
    "PAD": _pad,
    "PADV2": _pad,
    "CONV_2D": _conv,
    "DEPTHWISE_CONV_2D": _conv,
    "NEG": _neg,
    "PACK": _pack,
    "SPLIT": _split,
    "TILE": _since(NNAPI_1_2, 1, {"FLOAT32", "INT8", "UINT8", "INT32"}),
    "LEAKY_RELU": _since(NNAPI_1_2, 1, {"FLOAT32", "UINT8", "INT8"}),
    "PRELU": _since(NNAPI_1_2, 1, {"FLOAT32", "UINT8", "INT8"}),
    "ARG_MAX": _since(NNAPI_1_2, 2),
    "ARG_MIN": _since(NNAPI_1_2, 2),
    "FLOOR": _since(NNAPI_1_0, 1),
}


def node_reasons(graph: Graph, node: Node, android_api_level: int) -> list[str]:
    """Why the delegate would refuse this node at this API level (empty list: it takes it)."""
    if android_api_level < NNAPI_1_0:
        return [f"NNAPI needs Android API {NNAPI_1_0}+"]
    rule = RULES.get(node.op)
    if rule is None:
        return ["not mapped by the NNAPI delegate (no NNAPI operation for it)"]
    reasons = list(rule(graph, node, android_api_level))
    touched = [graph.tensors[i] for i in (*node.inputs, *node.outputs) if i >= 0]
    if any(t.dynamic for t in touched):
        reasons.append("dynamic dimension (the delegate needs static shapes)")
    return reasons


# ---------------------------------------------------------------------------------------------------------------
# Partitioning (graph_info.cc) and the report
# ---------------------------------------------------------------------------------------------------------------


def partition(graph: Graph, accepted: list[bool]) -> list[tuple[bool, list[int]]]:
    """Node subsets as TFLite forms them: each sweep takes every ready node of the first ready node's kind."""
    ready = set(graph.inputs) | {i for i, t in enumerate(graph.tensors) if t.constant}
    done = [False] * len(graph.nodes)
    subsets: list[tuple[bool, list[int]]] = []
    while not all(done):
        kind: bool | None = None
        members: list[int] = []
        for node in graph.nodes:
            if done[node.index] or not all(i < 0 or i in ready for i in node.inputs):
                continue
            if kind is None:
                kind = accepted[node.index]
            if accepted[node.index] != kind:
                continue
            done[node.index] = True
            members.append(node.index)
            ready.update(node.outputs)
        if not members:  # a node whose input nothing produces: stop rather than loop
            break
        subsets.append((bool(kind), members))
    return subsets


@dataclass
class NodeVerdict:
    index: int
    op: str
    version: int
    input_types: tuple[str, ...]
    accepted: bool
    reasons: list[str]


@dataclass
class CoverageReport:
    """Per-node verdicts, the partitions, and a table/summary for people and the manifest."""

    android_api_level: int
    nodes: list[NodeVerdict]
    subsets: list[tuple[bool, list[int]]]
    max_delegated_partitions: int = DEFAULT_MAX_DELEGATED_PARTITIONS
    extra: dict = field(default_factory=dict)

    @property
    def accepted_nodes(self) -> int:
        return sum(v.accepted for v in self.nodes)

    @property
    def share(self) -> float:
        return self.accepted_nodes / len(self.nodes) if self.nodes else 0.0

    @property
    def partitions(self) -> int:
        """Delegated partitions (one NNAPI model each)."""
        return sum(kind for kind, _ in self.subsets)

    @property
    def delegated_nodes(self) -> int:
        """Accepted nodes the delegate really takes: only the largest ``max_delegated_partitions`` partitions."""
        sizes = sorted((len(m) for kind, m in self.subsets if kind), reverse=True)
        return sum(sizes[: self.max_delegated_partitions]) if self.max_delegated_partitions > 0 else sum(sizes)

    def rows(self) -> list[dict]:
        """One row per (op, reason): op, count, accepted, reason."""
        counts: Counter = Counter()
        for v in self.nodes:
            counts[(v.op, v.accepted, "; ".join(v.reasons))] += 1
        return [
            {"op": op, "count": n, "accepted": ok, "reason": reason}
            for (op, ok, reason), n in sorted(counts.items(), key=lambda kv: (kv[0][1], kv[0][0]))
        ]

    def table(self) -> str:
        lines = [f"{'op':<20} {'count':>5}  {'NNAPI':<6} reason", "-" * 72]
        for row in self.rows():
            verdict = "yes" if row["accepted"] else "CPU"
            lines.append(f"{row['op']:<20} {row['count']:>5}  {verdict:<6} {row['reason']}")
        lines.append("-" * 72)
        lines.append(
            f"API {self.android_api_level}: {self.accepted_nodes}/{len(self.nodes)} nodes accepted "
            f"({self.share:.1%}), {self.partitions} delegated partition(s), "
            f"{len(self.subsets) - self.partitions} CPU partition(s)"
        )
        return "\n".join(lines)

    def summary(self) -> dict:
        rejected = [r for r in self.rows() if not r["accepted"]]
        return {
            "api_level": self.android_api_level,
            "nodes": len(self.nodes),
            "accepted": self.accepted_nodes,
            "share": round(self.share, 4),
            "partitions": self.partitions,
            "cpu_partitions": len(self.subsets) - self.partitions,
            "delegated_nodes_with_partition_limit": self.delegated_nodes,
            "max_delegated_partitions": self.max_delegated_partitions,
            "rejected": [{"op": r["op"], "count": r["count"], "reason": r["reason"]} for r in rejected],
        }


def analyse_coverage(model: bytes | Path | str, android_api_level: int = NNAPI_1_3) -> CoverageReport:
    """Which nodes the TFLite NNAPI delegate takes at ``android_api_level``, and the partitions it makes."""
    graph = load_graph(model)
    verdicts = []
    for node in graph.nodes:
        reasons = node_reasons(graph, node, android_api_level)
        input_types = tuple(graph.tensors[i].type if i >= 0 else "-" for i in node.inputs)
        verdicts.append(NodeVerdict(node.index, node.op, node.version, input_types, not reasons, reasons))
    subsets = partition(graph, [v.accepted for v in verdicts])
    return CoverageReport(android_api_level, verdicts, subsets)


def shares_by_op(report: CoverageReport) -> dict[str, float]:
    """Accepted share per op name (handy in tests and reports)."""
    total: Counter = Counter(v.op for v in report.nodes)
    ok: Counter = Counter(v.op for v in report.nodes if v.accepted)
    return {op: float(np.round(ok[op] / n, 4)) for op, n in total.items()}
