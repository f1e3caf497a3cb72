"""Rewrite (target ``ort``, after ``fuse_shared_input_matmuls``): GroupQueryAttention reads the fused q/k/v
projection whole and rotates q and k itself (``do_rotary=1``), where the graph had Split → RotaryEmbedding
on q and on k → GroupQueryAttention. Three kernels fewer per layer (the peers' exports have this form);
on the 125 M reference model decode got 1.7 % faster (per-round median of 15 alternated rounds, benchmarks/).

Positions: given ``position_ids``, ORT's CPU kernel reads only the first element on a prompt and turns
every row's token s by that + s; on a decode step it reads each row's own. So GQA gets positions made
for both readings: p(b, j) = (index of row b's first real token) + (its position counted over the mask)
for real tokens, and j for padding. On a first prompt whose rows hold their real tokens in one run (left
padding, right padding, none) that is j for every token of every row: the first-element reading and a
per-token reading agree. A RoPE score depends only on the difference of two positions, so turning a row
by its mask positions plus a constant attends exactly as the mask positions do; the cached keys of a
left-padded row hold the shifted rotations, and every later step shifts the same way. The graph's own
``position_ids`` input stays in the I/O contract but positions now follow the mask (HF's convention,
which every runtime here feeds).

Only where it is the same function: full rotary of the half-split (non-interleaved) kind, q/k/v straight
out of one Split in that order with no other readers, one *constant* cos/sin cache for both (dynamic NTK
scaling recomputes it from the length, and then a shift is no longer neutral), head size a multiple of 16
(ORT's CPU kernel requires it for ``do_rotary``). qk-norm, partial rotary, projection biases (an Add
between Split and RotaryEmbedding) and MLA keep the separate nodes.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

MSFT = "com.microsoft"
GQA_COS, GQA_SIN, GQA_POSITION_IDS = 7, 8, 9  # GroupQueryAttention input slots


def _attr(node: ir.Node, name: str, default: int | float) -> int | float:
    attr = node.attributes.get(name)
    return default if attr is None else attr.value


def _only_reader(value: ir.Value | None, reader: ir.Node) -> bool:
    return value is not None and not value.is_graph_output() and [u.node for u in value.uses()] == [reader]


def _rotary(value: ir.Value | None, reader: ir.Node, heads: int, head_size: int) -> ir.Node | None:
    """The RotaryEmbedding that produced ``value`` for ``reader`` alone, when it is a plain full rotation."""
    node = value.producer() if value is not None else None
    if node is None or node.op_type != "RotaryEmbedding" or node.domain != MSFT or not _only_reader(value, reader):
        return None
    plain = (
        _attr(node, "interleaved", 0) == 0
        and _attr(node, "is_packed_batching", 0) == 0
        and _attr(node, "scale", 1.0) == 1.0
        and _attr(node, "num_heads", 0) == heads
        and _attr(node, "rotary_embedding_dim", 0) in (0, head_size)
    )
    return node if plain else None


def _packable(gqa: ir.Node) -> tuple[ir.Value, ir.Node, ir.Node, ir.Node] | None:
    """(packed q/k/v, Split, q's and k's RotaryEmbedding) when ``gqa`` can take the packed form."""
    inputs = list(gqa.inputs)
    if len(inputs) < 5 or any(v is not None for v in inputs[GQA_COS : GQA_POSITION_IDS + 1]) or _attr(gqa, "do_rotary", 0):
        return None
    past_key = inputs[3]
    head_size = past_key.shape[3] if past_key is not None and past_key.shape is not None and past_key.shape.rank() == 4 else None
    if not isinstance(head_size, int) or head_size % 16:
        return None
    rq = _rotary(inputs[0], gqa, int(_attr(gqa, "num_heads", 0)), head_size)
    rk = _rotary(inputs[1], gqa, int(_attr(gqa, "kv_num_heads", 0)), head_size)
    if rq is None or rk is None or rq.inputs[2] is not rk.inputs[2] or rq.inputs[3] is not rk.inputs[3]:
        return None
    if rq.inputs[2].const_value is None or rq.inputs[3].const_value is None:  # computed per step: dynamic scaling
        return None
    split = inputs[2].producer() if inputs[2] is not None else None
    if split is None or split.op_type != "Split" or split.domain not in ("", "ai.onnx") or len(split.outputs) != 3:
        return None
    q, k, v = split.outputs
    if _attr(split, "axis", 0) != -1 or rq.inputs[0] is not q or rk.inputs[0] is not k or inputs[2] is not v:
        return None
    if not (_only_reader(q, rq) and _only_reader(k, rk) and _only_reader(v, gqa)):
        return None
    return split.inputs[0], split, rq, rk


def _positions(graph: ir.Graph, mask: ir.Value, input_ids: ir.Value) -> ir.Value:
    """(B, S) rotary positions of the new tokens from the (B, T) mask (module docstring), once per graph."""

    def const(name: str, value: list[int] | int) -> ir.Value:
        v = ir.Value(name=f"packed_rotary.{name}", const_value=ir.tensor(np.array(value, np.int64)))
        graph.register_initializer(v)
        return v

    nodes: list[ir.Node] = []

    def add(op: str, *inputs: ir.Value, **attrs: int) -> ir.Value:
        node = ir.Node(
            "", op, list(inputs), attributes=[ir.AttrInt64(k, v) for k, v in attrs.items()], name=f"packed_rotary.{op}_{len(nodes)}"
        )
        nodes.append(node)
        return node.outputs[0]

    one, zero = const("one", 1), const("zero", 0)
    counted = add("Sub", add("CumSum", mask, one), one)  # position over the mask (HF's cumsum - 1)
    shifted = add("Add", counted, add("ArgMax", mask, axis=1, keepdims=1))  # + first real token's index
    slots = add("Range", zero, add("Squeeze", add("Shape", mask, start=1, end=2), const("axis0", [0])), one)  # (T,)
    full = add("Where", add("Cast", mask, to=ir.DataType.BOOL.value), shifted, slots)  # (B, T)
    new = add("Neg", add("Shape", input_ids, start=1, end=2))  # -S
    positions = add("Slice", full, new, const("end", [np.iinfo(np.int64).max]), const("axis", [1]))
    graph.insert_before(next(iter(graph)), nodes)
    return positions


def pack_rotary_qkv(model: ir.Model) -> int:
    """Rewrite every GroupQueryAttention that qualifies (module docstring); returns how many."""
    graph = model.graph
    inputs_by_name = {v.name: v for v in graph.inputs}
    if "attention_mask" not in inputs_by_name or "input_ids" not in inputs_by_name:
        return 0
    packed, positions = 0, None
    for gqa in [n for n in graph if n.op_type == "GroupQueryAttention" and n.domain == MSFT]:
        found = _packable(gqa)
        if found is None:
            continue
        qkv, split, rq, rk = found
        if positions is None:
            positions = _positions(graph, inputs_by_name["attention_mask"], inputs_by_name["input_ids"])
        inputs = list(gqa.inputs) + [None] * max(0, GQA_POSITION_IDS + 1 - len(gqa.inputs))
        inputs[0:3] = [qkv, None, None]
        inputs[GQA_COS], inputs[GQA_SIN], inputs[GQA_POSITION_IDS] = rq.inputs[2], rq.inputs[3], positions
        attributes = [a for a in gqa.attributes.values() if a.name not in ("do_rotary", "rotary_interleaved")]
        attributes += [ir.AttrInt64("do_rotary", 1), ir.AttrInt64("rotary_interleaved", 0)]
        new = ir.Node(MSFT, "GroupQueryAttention", inputs, attributes=attributes, num_outputs=len(gqa.outputs), name=gqa.name)
        graph.insert_before(gqa, new)
        for old, out in zip(gqa.outputs, new.outputs, strict=True):
            out.shape, out.type, name = old.shape, old.type, old.name
            old.replace_all_uses_with(out, replace_graph_outputs=True)
            old.name, out.name = None, name
        graph.remove([gqa, rq, rk, split], safe=True)
        packed += 1
    return packed
