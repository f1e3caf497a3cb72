"""Before quantizing: give every constant-weight matrix product the form ORT's quantizer takes, a plain MatMul
with a 2-D (K, N) initializer. It skips anything else without a word, so these are rewritten first:

- ``MatMul(x, Transpose(W))``: a tied LM head reads the embedding table through a Transpose; the head gets its
  own (K, N) copy (the table itself then becomes a GatherBlockQuantized, see ``tie_embedding``)
- ``Gemm(x, W, C, transB)`` on 2-D activations (the exporter's choice for some linears): MatMul (+ Add)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
from onnx import helper, numpy_helper


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def prepare_matmuls(model: onnx.ModelProto, load: Callable[[onnx.TensorProto], np.ndarray] = numpy_helper.to_array) -> dict[str, str]:
    """Rewrite in place; returns {head MatMul output: embedding initializer} for weights read through a
    Transpose of a table that a Gather also reads (tied embeddings). ``load`` reads an initializer's values
    (a streamed quantization reads them from the external data file, one at a time)."""
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    gathered = {n.input[0] for n in graph.node if n.op_type == "Gather"}
    tied: dict[str, str] = {}
    new_nodes: list[onnx.NodeProto] = []
    added: list[onnx.TensorProto] = []
    for node in graph.node:
        if node.op_type == "MatMul" and node.input[1] in producer:
            t = producer[node.input[1]]
            src = t.input[0] if t.op_type == "Transpose" else ""
            if src in inits and len(inits[src].dims) == 2 and _attrs(t).get("perm", [1, 0]) == [1, 0]:
                name = f"{src}.T"
                if name not in {a.name for a in added}:
                    added.append(numpy_helper.from_array(np.ascontiguousarray(load(inits[src]).T), name))
                if src in gathered:
                    tied[node.output[0]] = src
                node = helper.make_node("MatMul", [node.input[0], name], list(node.output), name=node.name)  # noqa: PLW2901
        elif node.op_type == "Gemm" and node.input[1] in inits:
            a = _attrs(node)
            if a.get("transA", 0) == 0 and a.get("alpha", 1.0) == 1.0 and a.get("beta", 1.0) == 1.0:
                w = load(inits[node.input[1]])
                name = f"{node.input[1]}.kn"
                added.append(numpy_helper.from_array(np.ascontiguousarray(w.T if a.get("transB", 0) else w), name))
                out = node.output[0]
                if len(node.input) > 2 and node.input[2]:
                    new_nodes.append(helper.make_node("MatMul", [node.input[0], name], [f"{out}.matmul"], name=node.name))
                    node = helper.make_node("Add", [f"{out}.matmul", node.input[2]], [out], name=f"{node.name}.bias")  # noqa: PLW2901
                else:
                    node = helper.make_node("MatMul", [node.input[0], name], [out], name=node.name)  # noqa: PLW2901
        new_nodes.append(node)
    graph.ClearField("node")
    graph.node.extend(new_nodes)
    _drop_unused(graph, added)
    return tied


def _drop_unused(graph: onnx.GraphProto, added: list[onnx.TensorProto]) -> None:
    """Add the new initializers; remove Transposes nothing reads any more and initializers no node reads."""
    graph.initializer.extend(added)
    while True:
        read = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
        dead = [n for n in graph.node if n.op_type == "Transpose" and not any(o in read for o in n.output)]
        if not dead:
            break
        for n in dead:
            graph.node.remove(n)
    read = {i for n in graph.node for i in n.input}
    keep = [i for i in graph.initializer if i.name in read]
    graph.ClearField("initializer")
    graph.initializer.extend(keep)
