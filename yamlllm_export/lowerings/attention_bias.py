"""``yamlllm::attention_bias`` in plain opset-18 ops, the one lowering every target shares (no runtime has an
ALiBi kernel; GroupQueryAttention and ONNX Attention take the result as their additive mask). Mirrors
``ops/attention_bias.py`` line for line, with padding and positions from ``lowerings/masking.py``."""

from __future__ import annotations

from typing import Any

import onnx_ir as ir
from onnxscript import opset18

from yamlllm_export.lowerings.common import dim
from yamlllm_export.lowerings.masking import padding_bias, positions_from_mask


def attention_bias(attention_mask: Any, input_ids: Any, alibi_slopes: Any) -> Any:
    """attention_mask (B, T) int64, input_ids (B, S), alibi_slopes (nh,) or None → float32 (B, nh or 1, S, T)."""
    op = opset18
    S, T = dim(op, input_ids, 1), dim(op, attention_mask, 1)
    pad = padding_bias(op, attention_mask)  # (B, 1, 1, T)
    if alibi_slopes is None:
        shape = op.Concat(dim(op, attention_mask, 0), op.Constant(value_ints=[1]), S, T, axis=0)
        return op.Expand(pad, shape)  # (B, 1, S, T)
    pos = op.Cast(positions_from_mask(op, attention_mask), to=ir.DataType.FLOAT)  # (B, T)
    one = op.Constant(value_int=1)
    q_pos = op.Slice(pos, op.Sub(T, S), T, op.Constant(value_ints=[1]))  # (B, S)
    distance = op.Abs(op.Sub(op.Unsqueeze(pos, one), op.Unsqueeze(q_pos, op.Constant(value_ints=[2]))))  # (B, S, T)
    slopes = op.Unsqueeze(op.Neg(op.Cast(alibi_slopes, to=ir.DataType.FLOAT)), op.Constant(value_ints=[0, 2, 3]))  # (1, nh, 1, 1)
    return op.Add(op.Mul(slopes, op.Unsqueeze(distance, one)), pad)  # (B, nh, S, T)
