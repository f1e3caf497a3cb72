"""Who sees whom, in onnxscript: ``ops/masking.py`` line for line, for every target's lowering
(``attention_bias.py``, ``portable.py``, ``standard.py``, ``mla.py``). ``op`` is the
caller's opset; lengths are (1,) int64 tensors as ``common.dim`` returns them.
"""

from __future__ import annotations

from typing import Any

import onnx_ir as ir

from yamlllm_export.lowerings.common import scalar
from yamlllm_export.ops import masking

_TORCH_DTYPE: dict[ir.DataType | None, str] = {
    ir.DataType.FLOAT: "float32",
    ir.DataType.FLOAT16: "float16",
    ir.DataType.BFLOAT16: "bfloat16",
}


def mask_value(x: Any) -> float:
    """``ops/masking.py:mask_value`` for the dtype of traced value ``x`` (float32 when unknown)."""
    import torch

    return masking.mask_value(getattr(torch, _TORCH_DTYPE.get(getattr(x, "dtype", None), "float32")))


def visibility_mask(op: Any, S: Any, P: Any, *, causal: bool, window_size: int, like: Any) -> Any:
    """(S, T = P + S) additive mask in the dtype of ``like``: 0 where new token i (cache index P + i) may
    see cache index j (j ≤ P + i when ``causal``, j > P + i − window_size when ``window_size`` > 0),
    ``mask_value`` elsewhere. None when every key is visible (bidirectional, no window): no nodes at all."""
    if not causal and window_size <= 0:
        return None
    T = op.Add(P, S)
    one = op.Constant(value_int=1)
    j = op.Unsqueeze(op.Range(op.Constant(value_int=0), scalar(op, T), one), op.Constant(value_ints=[0]))  # (1, T) key index
    i = op.Unsqueeze(op.Range(scalar(op, P), scalar(op, T), one), op.Constant(value_ints=[1]))  # (S, 1) query index, P + arange(S)
    visible = op.LessOrEqual(j, i) if causal else None
    if window_size > 0:
        in_window = op.Greater(j, op.Sub(i, op.Constant(value_int=window_size)))
        visible = in_window if visible is None else op.And(visible, in_window)
    zero, masked = op.CastLike(op.Constant(value_float=0.0), like), op.CastLike(op.Constant(value_float=mask_value(like)), like)
    return op.Where(visible, zero, masked)


def with_bias(op: Any, mask: Any, attention_bias: Any, like: Any) -> Any:
    """mask (S, T) or None + attention_bias (B, 1|nh, S, T) or None, in the dtype of ``like`` (None if both are)."""
    if attention_bias is None:
        return mask
    bias = op.CastLike(attention_bias, like)
    return bias if mask is None else op.Add(mask, bias)


def padding_bias(op: Any, attention_mask: Any) -> Any:
    """(B, T) mask with 1 for tokens, 0 for pads → (B, 1, 1, T) float32: ``mask_value`` on pad keys, 0 elsewhere."""
    import torch

    pad = op.Where(
        op.Equal(attention_mask, op.Constant(value_int=0)),
        op.Constant(value_float=masking.mask_value(torch.float32)),
        op.Constant(value_float=0.0),
    )  # (B, T)
    return op.Unsqueeze(pad, op.Constant(value_ints=[1, 2]))


def positions_from_mask(op: Any, attention_mask: Any) -> Any:
    """(B, T) mask → (B, T) int64 positions cumsum(mask) − 1 clamped at 0 (pads do not shift them)."""
    one = op.Constant(value_int=1)
    return op.Max(op.Sub(op.CumSum(attention_mask, one), one), op.Constant(value_int=0))
