"""Target ``portable``: plain opset-18 ops only, for any ONNX runtime (no com.microsoft domain)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import onnx_ir as ir
import torch
from onnxscript import opset18 as op

from yamlllm_export.lowerings import common, mla, recurrent
from yamlllm_export.lowerings.attention_bias import attention_bias
from yamlllm_export.lowerings.common import dim
from yamlllm_export.lowerings.masking import mask_value, visibility_mask, with_bias
from yamlllm_export.lowerings.rotary import apply_rotary
from yamlllm_export.lowerings.sinks import sink_column
from yamlllm_export.lowerings.softmax_variants import variant_weights

OPSET = 18


def attention(
    query: Any, key: Any, value: Any, past_key: Any, past_value: Any, attention_bias: Any,
    cos_cache: Any, sin_cache: Any, position_ids: Any, num_heads: int, num_kv_heads: int, scale: float,
    window_size: int = 0, causal: bool = True, softcap: float = 0.0, sinks: Any = None,
    rope_interleaved: bool = False, softmax: str = "softmax", softmax_params: Any = None, softmax_consts: Any = None,
) -> tuple[Any, Any, Any]:  # fmt: skip
    """``yamlllm::attention`` (and ``complex_attention``, see ``ops/complex_attention.py``) as MatMul/Softmax.
    Query heads are grouped as (nkv, G) and K/V broadcast over G, so grouped KV heads are never
    materialised nh times. Every variant (window, bidirectional, softcap, partial or interleaved rotary) is
    plain ops; sinks are one more score column, dropped after the softmax; a ``softmax`` variant
    (``lowerings/softmax_variants.py``) replaces the Softmax, with masked keys (mask + bias below half of
    ``mask_value``) at exactly 0."""
    G = num_heads // num_kv_heads
    q = op.Reshape(query, op.Constant(value_ints=[0, 0, num_heads, -1]))  # (B, S, nh, hs)
    k = op.Reshape(key, op.Constant(value_ints=[0, 0, num_kv_heads, -1]))  # (B, S, nkv, hs)
    v = op.Reshape(value, op.Constant(value_ints=[0, 0, num_kv_heads, -1]))
    if cos_cache is not None:
        q = apply_rotary(op, q, position_ids, cos_cache, sin_cache, rope_interleaved)
        k = apply_rotary(op, k, position_ids, cos_cache, sin_cache, rope_interleaved)
    present_k = op.Concat(past_key, op.Transpose(k, perm=[0, 2, 1, 3]), axis=2)  # (B, nkv, T, hs)
    present_v = op.Concat(past_value, op.Transpose(v, perm=[0, 2, 1, 3]), axis=2)
    B, S, P = dim(op, query, 0), dim(op, query, 1), dim(op, past_key, 2)
    T = op.Add(P, S)
    q = op.Mul(op.Transpose(q, perm=[0, 2, 1, 3]), op.CastLike(op.Constant(value_float=scale), query))  # (B, nh, S, hs)
    grouped = op.Concat(B, op.Constant(value_ints=[num_kv_heads, G]), S, op.Constant(value_ints=[-1]), axis=0)
    q5 = op.Reshape(q, grouped)  # (B, nkv, G, S, hs)
    k5 = op.Unsqueeze(op.Transpose(present_k, perm=[0, 1, 3, 2]), op.Constant(value_ints=[2]))  # (B, nkv, 1, hs, T)
    scores = op.Reshape(op.MatMul(q5, k5), op.Concat(B, op.Constant(value_ints=[num_heads]), S, T, axis=0))  # (B, nh, S, T)
    if softcap > 0:  # softcap · tanh(scores / softcap), before the mask
        cap = op.CastLike(op.Constant(value_float=softcap), query)
        scores = op.Mul(op.Tanh(op.Div(scores, cap)), cap)
    mask = visibility_mask(op, S, P, causal=causal, window_size=window_size, like=query)  # (S, T) or None
    additive = with_bias(op, mask, attention_bias, query)  # (B, 1|nh, S, T) or None
    if additive is not None:
        scores = op.Add(scores, additive)
    if softmax != "softmax":
        half = op.CastLike(op.Constant(value_float=mask_value(query) / 2), query)
        masked = op.Less(additive, half) if additive is not None else op.Cast(op.Constant(value_int=0), to=ir.DataType.BOOL)
        probs = variant_weights(op, scores, masked, softmax, softmax_params, softmax_consts, num_heads)
    elif sinks is None:
        probs = op.Softmax(scores, axis=-1)
    else:  # (B, nh, S, T + 1) → softmax → the first T columns: the sink's exp stays in the denominator
        probs = op.Softmax(op.Concat(scores, sink_column(op, sinks, query, B, S, num_heads), axis=-1), axis=-1)
        probs = op.Slice(probs, op.Constant(value_ints=[0]), T, op.Constant(value_ints=[-1]))
    probs = op.Reshape(probs, op.Concat(B, op.Constant(value_ints=[num_kv_heads, G]), S, T, axis=0))
    out = op.MatMul(probs, op.Unsqueeze(present_v, op.Constant(value_ints=[2])))  # (B, nkv, G, S, hs)
    out = op.Reshape(out, op.Concat(B, op.Constant(value_ints=[num_heads]), S, op.Constant(value_ints=[-1]), axis=0))
    out = op.Reshape(op.Transpose(out, perm=[0, 2, 1, 3]), op.Constant(value_ints=[0, 0, -1]))  # (B, S, nh·hs)
    return out, present_k, present_v


def rms_norm(x: Any, weight: Any, eps: float) -> Any:
    """x / sqrt(mean(x²) + eps) · w, statistics in float32."""
    xf = op.Cast(x, to=ir.DataType.FLOAT)
    ms = op.ReduceMean(op.Mul(xf, xf), op.Constant(value_ints=[-1]), keepdims=1)
    y = op.Div(xf, op.Sqrt(op.Add(ms, op.Constant(value_float=eps))))
    if weight is not None:
        y = op.Mul(y, op.Cast(weight, to=ir.DataType.FLOAT))
    return op.CastLike(y, x)


TABLE: dict[Any, Callable[..., Any]] = {
    torch.ops.yamlllm.attention.default: attention,
    torch.ops.yamlllm.complex_attention.default: attention,
    torch.ops.yamlllm.attention_bias.default: attention_bias,
    torch.ops.yamlllm.mla_attention.default: mla.portable_mla_attention,
    torch.ops.yamlllm.rms_norm.default: rms_norm,
    torch.ops.yamlllm.moe.default: common.moe,
    torch.ops.yamlllm.short_conv.default: recurrent.short_conv,
    torch.ops.yamlllm.linear_attention.default: recurrent.linear_attention,
}
