"""RoPE in onnxscript, half-rotation layout: ``ops/rotary.py:apply_rotary`` line for line, for the lowerings
that rotate in plain ops (``portable.py``, ``mla.py``'s portable form). The fused kernels
(com.microsoft.RotaryEmbedding, ONNX RotaryEmbedding) take ``rotary_dim`` for partial rotary.
"""

from __future__ import annotations

from typing import Any

from yamlllm_export.lowerings.common import dim


def rotary_dim(cos_cache: Any) -> int:
    """rd = 2 · cos_cache.shape[1], static (the tables are buffers), for the RotaryEmbedding attribute."""
    half = cos_cache.shape[1]
    if not isinstance(half, int):
        raise TypeError(f"RoPE cos cache needs a static second dimension, got shape {cos_cache.shape}")
    return 2 * half


def apply_rotary(op: Any, x: Any, position_ids: Any, cos_cache: Any, sin_cache: Any, interleaved: bool = False) -> Any:
    """Rotate the first rotary_dim features of every head; the rest pass through. x: (B, S, n, hs);
    position_ids: (B, S); cos/sin caches (max_positions, rd/2). ``interleaved``: pairs (2i, 2i+1)."""
    half = dim(op, cos_cache, 1)
    cos = op.CastLike(op.Unsqueeze(op.Gather(cos_cache, position_ids), op.Constant(value_ints=[2])), x)  # (B, S, 1, rd/2)
    sin = op.CastLike(op.Unsqueeze(op.Gather(sin_cache, position_ids), op.Constant(value_ints=[2])), x)
    last = op.Constant(value_ints=[-1])
    if interleaved:
        return _interleaved(op, x, cos, sin, half, last)
    x1 = op.Slice(x, op.Constant(value_ints=[0]), half, last)
    x2 = op.Slice(x, half, op.Add(half, half), last)
    rest = op.Slice(x, op.Add(half, half), op.Constant(value_ints=[2**62]), last)
    return op.Concat(op.Sub(op.Mul(x1, cos), op.Mul(x2, sin)), op.Add(op.Mul(x2, cos), op.Mul(x1, sin)), rest, axis=-1)


def _interleaved(op: Any, x: Any, cos: Any, sin: Any, half: Any, last: Any) -> Any:
    """``ops/rotary.py:apply_rotary`` with ``interleaved``: pair i is features (2i, 2i+1)."""
    rd = op.Add(half, half)
    pairs = op.Reshape(op.Slice(x, op.Constant(value_ints=[0]), rd, last), op.Constant(value_ints=[0, 0, 0, -1, 2]))  # (B, S, n, rd/2, 2)
    even = op.Squeeze(op.Slice(pairs, op.Constant(value_ints=[0]), op.Constant(value_ints=[1]), last), last)  # (B, S, n, rd/2)
    odd = op.Squeeze(op.Slice(pairs, op.Constant(value_ints=[1]), op.Constant(value_ints=[2]), last), last)
    turned_even = op.Unsqueeze(op.Sub(op.Mul(even, cos), op.Mul(odd, sin)), last)
    turned_odd = op.Unsqueeze(op.Add(op.Mul(even, sin), op.Mul(odd, cos)), last)
    turned = op.Reshape(op.Concat(turned_even, turned_odd, axis=-1), op.Constant(value_ints=[0, 0, 0, -1]))  # (B, S, n, rd)
    rest = op.Slice(x, rd, op.Constant(value_ints=[2**62]), last)
    return op.Concat(turned, rest, axis=-1)
