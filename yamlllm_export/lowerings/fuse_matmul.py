"""Rewrite: MatMuls that read the same activation with constant weights become one MatMul + Split.

q/k/v projections (x·W_q, x·W_k, x·W_v) and a gated FFN's gate/up (x·W_g, x·W_u) each read x; one MatMul
over the concatenated weight [W_q | W_k | W_v] reads x once, runs one larger GEMM (one thread-pool dispatch
instead of three, better tiling on short prompts) and splits the result along the output axis. The
numbers are unchanged: each output column is the same dot product.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import onnx_ir as ir


def _weight(node: ir.Node) -> ir.TensorProtocol | None:
    """The constant (K, N) weight of a plain MatMul that nothing else reads, or None (why not: not a
    MatMul, a computed or shared weight, or not 2-D). Its data is not read: a streamed build's weights are
    made only when saved."""
    if node.op_type != "MatMul" or node.domain not in ("", "ai.onnx"):
        return None
    w = node.inputs[1]
    if w is None or w.const_value is None or len(w.uses()) != 1 or w.is_graph_input() or w.is_graph_output():
        return None
    return w.const_value if len(w.const_value.shape) == 2 else None


def _dim(w: ir.TensorProtocol, axis: int) -> int:
    """A constant weight's size along ``axis`` (its shape is static)."""
    size = w.shape[axis]
    if not isinstance(size, int):
        raise ValueError(f"fuse_matmul: weight {w.name} has a symbolic dimension {size}")
    return size


def _concatenated(weights: list[ir.TensorProtocol]) -> ir.LazyTensor:
    """[W_1 | W_2 | ...] along the output axis, computed when it is saved (one fused weight in memory at a time)."""
    shape = ir.Shape([_dim(weights[0], 0), sum(_dim(w, 1) for w in weights)])
    return ir.LazyTensor(lambda: ir.tensor(np.concatenate([w.numpy() for w in weights], axis=1)), dtype=weights[0].dtype, shape=shape)


def fuse_shared_input_matmuls(model: ir.Model) -> int:
    """Fuse every group of ≥ 2 MatMuls over one input (same K and dtype); returns how many groups."""
    graph = model.graph
    groups: dict[int, list[tuple[ir.Node, ir.TensorProtocol]]] = defaultdict(list)
    inputs: dict[int, ir.Value] = {}
    for node in graph:
        weight = _weight(node)
        if weight is not None and node.inputs[0] is not None:
            groups[id(node.inputs[0])].append((node, weight))
            inputs[id(node.inputs[0])] = node.inputs[0]
    fused = 0
    for key, members in groups.items():
        if len(members) < 2 or len({(w.shape[0], w.dtype) for _, w in members}) != 1:
            continue
        nodes = [n for n, _ in members]
        prefix = nodes[0].name or f"fused_matmul_{fused}"
        fused_weight = ir.Value(name=f"{prefix}.fused_weight", const_value=_concatenated([w for _, w in members]))
        sizes = ir.Value(name=f"{prefix}.split_sizes", const_value=ir.tensor(np.array([w.shape[1] for _, w in members], np.int64)))
        graph.register_initializer(fused_weight)
        graph.register_initializer(sizes)
        matmul = ir.Node("", "MatMul", [inputs[key], fused_weight], name=f"{prefix}.fused")
        split = ir.Node(
            "", "Split", [matmul.outputs[0], sizes], attributes=[ir.AttrInt64("axis", -1)], num_outputs=len(nodes), name=f"{prefix}.split"
        )
        for old, new in zip(nodes, split.outputs, strict=True):
            new.shape, new.type, new.name = old.outputs[0].shape, old.outputs[0].type, old.outputs[0].name
        first: ir.Node = min(nodes, key=graph.index)
        graph.insert_before(first, [matmul, split])
        old_weights = [n.inputs[1] for n in nodes]
        outs = [n.outputs[0] for n in nodes]
        for out in outs:
            out.name = None
        ir.convenience.replace_all_uses_with(outs, list(split.outputs))
        graph.remove(nodes, safe=True)
        for w in old_weights:
            if w is not None and w.name is not None and w.name in graph.initializers and not w.uses():
                del graph.initializers[w.name]
        fused += 1
    return fused
