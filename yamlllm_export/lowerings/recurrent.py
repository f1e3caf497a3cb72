"""Lowerings of the recurrent-state ops (``ops/short_conv.py``, ``ops/linear_attention.py``): plain ops for
``onnx`` and ``portable`` (the same graph: these ops are unchanged from opset 18 to 23), and the ``ort``
forms with ORT's contrib kernels where they compute the same thing (docs/recurrent.md says what was checked).

Pads follow the eager ops exactly: the conv compacts the real inputs to the front of the chunk (one
ScatterElements by the permutation ``dest``), runs over state ++ compacted inputs, gathers each output back
to its token's slot and the new state from the window ending at the last real input; linear attention
multiplies a pad's φ(k) by 0, so the running sums (CumSum) skip it.
"""

from __future__ import annotations

from typing import Any

import onnx_ir as ir
from onnxscript import opset18, values

from yamlllm_export.lowerings.common import dim

op: Any = opset18  # the traced values carry no static ONNX element types for mypy to check the opset's type variables against
msft = values.Opset("com.microsoft", 1)


def _ints(*v: int) -> Any:
    return op.Constant(value_ints=list(v))


def _compaction(x: Any, token_mask: Any) -> tuple[Any, Any, Any]:
    """(idx (B, S, C) int64: each token's slot among real-first ones, n (B, 1): real tokens, masked x)
    (``ops/short_conv.py`` ``compaction``)."""
    m = op.Cast(token_mask, to=ir.DataType.INT64)
    c = op.CumSum(m, op.Constant(value_int=1))  # (B, S)
    n = op.Slice(c, _ints(-1), _ints(2**62), _ints(1))  # (B, 1)
    t = op.Range(op.Constant(value_int=0), op.Squeeze(dim(op, x, 1), _ints(0)), op.Constant(value_int=1))  # (S,)
    dest = op.Where(op.Cast(m, to=ir.DataType.BOOL), op.Sub(c, op.Constant(value_int=1)), op.Sub(op.Add(n, t), c))
    idx = op.Expand(op.Unsqueeze(dest, _ints(-1)), op.Shape(x))  # (B, S, C)
    masked = op.Mul(x, op.Unsqueeze(op.CastLike(m, x), _ints(-1)))
    return idx, n, masked


def _conv_parts(x: Any, past_state: Any, token_mask: Any, kernel: int) -> tuple[Any, Any, Any]:
    """(compacted inputs channels first (B, C, S), idx, present state (B, C, L − 1))."""
    idx, n, masked = _compaction(x, token_mask)
    compact = op.ScatterElements(op.Mul(masked, op.CastLike(op.Constant(value_float=0.0), x)), idx, masked, axis=1)  # (B, S, C)
    compact_t = op.Transpose(compact, perm=[0, 2, 1])  # (B, C, S)
    seq = op.Concat(past_state, compact_t, axis=2)  # (B, C, L − 1 + S)
    keep = op.Add(n, op.Range(op.Constant(value_int=0), op.Constant(value_int=kernel - 1), op.Constant(value_int=1)))  # (B, L − 1)
    keep = op.Expand(op.Unsqueeze(keep, _ints(1)), op.Shape(past_state))  # (B, C, L − 1)
    return compact_t, idx, op.GatherElements(seq, keep, axis=2)


def _back(y_t: Any, idx: Any) -> Any:
    """Conv outputs (B, C, S) in compacted order → (B, S, C) in the tokens' own slots."""
    return op.GatherElements(op.Transpose(y_t, perm=[0, 2, 1]), idx, axis=1)


def short_conv(x: Any, weight: Any, bias: Any, past_state: Any, token_mask: Any) -> tuple[Any, Any]:
    """``yamlllm::short_conv`` in plain ops: a depthwise ``Conv`` (group C, no padding) over state ++ inputs."""
    C, L = weight.shape[0], weight.shape[1]
    compact_t, idx, present = _conv_parts(x, past_state, token_mask, L)
    seq = op.Concat(past_state, compact_t, axis=2)  # (B, C, L − 1 + S)
    y_t = op.Conv(seq, op.Unsqueeze(weight, _ints(1)), bias, group=C)  # (B, C, S)
    return _back(y_t, idx), present


def ort_short_conv(x: Any, weight: Any, bias: Any, past_state: Any, token_mask: Any) -> tuple[Any, Any]:
    """``yamlllm::short_conv`` → com.microsoft.CausalConvWithState for the outputs (its conv over state ++
    compacted inputs is the eager op's, checked on ORT 1.31 CPU); its own present_state is the last L − 1
    slots, pads included, so the state is gathered as on the other targets."""
    L = weight.shape[1]
    compact_t, idx, present = _conv_parts(x, past_state, token_mask, L)
    y_t, _ = msft.CausalConvWithState(compact_t, op.Unsqueeze(weight, _ints(1)), bias, past_state, ndim=1, _num_outputs=2)
    return _back(y_t, idx), present


def _features(query: Any, key: Any, scale: Any, token_mask: Any, num_heads: int) -> tuple[Any, Any]:
    """φ(q), φ(k)·mask as (B, S, H, D): φ(u) = ELU(s·u) + 1."""
    heads = _ints(0, 0, num_heads, -1)
    one = op.CastLike(op.Constant(value_float=1.0), query)
    s = op.CastLike(scale, query)
    fq = op.Add(op.Elu(op.Mul(op.Reshape(query, heads), s)), one)
    m = op.Unsqueeze(op.CastLike(token_mask, query), _ints(2, 3))  # (B, S, 1, 1)
    fk = op.Mul(op.Add(op.Elu(op.Mul(op.Reshape(key, heads), s)), one), m)
    return fq, fk


def _last(x: Any) -> Any:
    """(B, S, H, D) → (B, H, D) at the last token."""
    return op.Squeeze(op.Slice(x, _ints(-1), _ints(2**62), _ints(1)), _ints(1))


def linear_attention(
    query: Any, key: Any, value: Any, scale: Any, past_kv_sum: Any, past_k_sum: Any, token_mask: Any, num_heads: int
) -> tuple[Any, Any, Any]:
    """``yamlllm::linear_attention`` in plain ops: the running sums are CumSums over the new tokens."""
    fq, fk = _features(query, key, scale, token_mask, num_heads)
    v = op.Reshape(value, _ints(0, 0, num_heads, -1))
    axis = op.Constant(value_int=1)
    kv_sum = op.Add(op.CumSum(op.Mul(fk, v), axis), op.Unsqueeze(past_kv_sum, _ints(1)))  # (B, S, H, D)
    k_sum = op.Add(op.CumSum(fk, axis), op.Unsqueeze(past_k_sum, _ints(1)))
    den = op.Max(op.ReduceSum(op.Mul(fq, k_sum), _ints(-1), keepdims=1), op.CastLike(op.Constant(value_float=1e-3), query))
    y = op.Reshape(op.Div(op.Mul(fq, kv_sum), den), _ints(0, 0, -1))  # (B, S, H·D)
    return y, _last(kv_sum), _last(k_sum)


def ort_linear_attention(
    query: Any, key: Any, value: Any, scale: Any, past_kv_sum: Any, past_k_sum: Any, token_mask: Any, num_heads: int
) -> tuple[Any, Any, Any]:
    """``yamlllm::linear_attention`` → two com.microsoft.LinearAttention nodes (``update_rule: linear``,
    S_t = S_{t−1} + k_t ⊗ v_t, o_t = q_tᵀ S_t), fed φ(q) and φ(k)·mask: the element-wise sums are its outer-product
    state with every (head, dim) pair a head of size 1 (numerator φ(q) ⊙ S), and the normaliser is one head per
    head with keys of size D and a value of 1 (o = φ(q) · z). Both checked against numpy on ORT 1.31 CPU."""
    hd = query.shape[2]
    fq, fk = _features(query, key, scale, token_mask, num_heads)
    fq, fk = op.Reshape(fq, _ints(0, 0, -1)), op.Reshape(fk, _ints(0, 0, -1))  # (B, S, H·D)
    num, kv_sum = msft.LinearAttention(
        fq, fk, value, op.Reshape(past_kv_sum, _ints(0, -1, 1, 1)), None, None,
        q_num_heads=hd, kv_num_heads=hd, scale=1.0, update_rule="linear", _num_outputs=2,
    )  # fmt: skip  # (B, S, H·D), (B, H·D, 1, 1)
    ones = op.Expand(
        op.CastLike(op.Constant(value_float=1.0), query), op.Concat(dim(op, query, 0), dim(op, query, 1), _ints(num_heads), axis=0)
    )
    den, k_sum = msft.LinearAttention(
        fq, fk, ones, op.Unsqueeze(past_k_sum, _ints(-1)), None, None,
        q_num_heads=num_heads, kv_num_heads=num_heads, scale=1.0, update_rule="linear", _num_outputs=2,
    )  # fmt: skip  # (B, S, H), (B, H, D, 1)
    den = op.Unsqueeze(op.Max(den, op.CastLike(op.Constant(value_float=1e-3), query)), _ints(-1))  # (B, S, H, 1)
    y = op.Reshape(op.Div(op.Reshape(num, _ints(0, 0, num_heads, -1)), den), _ints(0, 0, -1))
    return y, op.Reshape(kv_sum, _ints(0, num_heads, -1)), op.Squeeze(k_sum, _ints(-1))
