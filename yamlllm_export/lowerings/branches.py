"""A run-time choice between two lowerings: an ONNX ``If`` whose branches are recorded from onnxscript calls.

Only the branch taken runs. Each branch is a function of no arguments that calls ``op.*`` on values of the
enclosing graph (ONNX subgraphs may read outer-scope values) and returns its outputs; the nodes it records are
moved out of the exporter's recorder into the branch's own graph.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import onnx_ir as ir
from onnxscript import evaluator

_serial = itertools.count()


def _record(name: str, build: Callable[[], Sequence[Any]]) -> ir.Graph:
    """The nodes ``build`` records, as a subgraph whose outputs are what it returns."""
    recorder: Any = evaluator.default()
    if not hasattr(recorder, "nodes"):  # the exporter's OpRecorder keeps the nodes it records in order
        raise TypeError(f"run-time branches need the ONNX exporter's recorder, not {type(recorder).__name__}")
    start = len(recorder.nodes)
    outputs = list(build())
    nodes = recorder.nodes[start:]
    del recorder.nodes[start:]
    graph_outputs = []
    for value in outputs:
        if value.producer() is None or value.producer() not in nodes:  # an outer value passed through: copy it in
            value = _identity(value, nodes)
        graph_outputs.append(value)
    for node in nodes:  # names unique in the whole model: the exporter names the main graph's values only
        node.name = f"{name}_{node.op_type}_{next(_serial)}"
        for out in node.outputs:
            out.name = f"{name}_{next(_serial)}"
    return ir.Graph(inputs=[], outputs=graph_outputs, nodes=nodes, name=name)


def _identity(value: Any, nodes: list[ir.Node]) -> ir.Value:
    node = ir.Node("", "Identity", inputs=[value], num_outputs=1)
    out: ir.Value = node.outputs[0]
    out.type, out.shape = value.type, value.shape
    nodes.append(node)
    return out


def choose(
    op: Any, cond: Any, then_build: Callable[[], Sequence[Any]], else_build: Callable[[], Sequence[Any]], name: str
) -> tuple[Any, ...]:
    """``If(cond)``: ``then_build()``'s outputs when ``cond`` (a bool scalar) holds at run time, else ``else_build()``'s."""
    then_graph = _record(f"{name}_then", then_build)
    else_graph = _record(f"{name}_else", else_build)
    # built by hand: onnxscript's op.If cannot be told how many outputs a variadic op has
    node = ir.Node(
        "", "If", inputs=[cond], num_outputs=len(then_graph.outputs), version=op.version,
        attributes=[ir.AttrGraph("then_branch", then_graph), ir.AttrGraph("else_branch", else_graph)],
    )  # fmt: skip
    recorder: Any = evaluator.default()
    recorder.nodes.append(node)
    outs = tuple(node.outputs)
    for out, a, b in zip(outs, then_graph.outputs, else_graph.outputs, strict=True):
        out.type = a.type if a.type is not None else b.type
        out.shape = a.shape if a.shape is not None else b.shape
    return outs


def all_zeros(op: Any, x: Any) -> Any:
    """A bool scalar: every element of ``x`` is 0 (compared in float32: ReduceMax has no bfloat16 kernel on CUDA or CPU)."""
    largest = op.ReduceMax(op.Abs(op.Cast(x, to=ir.DataType.FLOAT)), keepdims=0)  # ()
    return op.Equal(largest, op.Constant(value_float=0.0))
