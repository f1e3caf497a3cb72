"""Attention sinks in onnxscript (see ``ops/attention.py``): each head's sink logit as one more score column,
which the softmax's denominator then holds. ``op`` is the caller's opset."""

from __future__ import annotations

from typing import Any


def sink_column(op: Any, sinks: Any, like: Any, batch: Any, seq: Any, num_heads: int) -> Any:
    """sinks (nh,) → (B, nh, S, 1) in the dtype of ``like``: the column concatenated after a (B, nh, S, T)
    score tensor; ``batch`` and ``seq`` are (1,) int64 lengths."""
    per_head = op.Reshape(op.CastLike(sinks, like), op.Constant(value_ints=[1, num_heads, 1, 1]))
    return op.Expand(per_head, op.Concat(batch, op.Constant(value_ints=[num_heads]), seq, op.Constant(value_ints=[1]), axis=0))
