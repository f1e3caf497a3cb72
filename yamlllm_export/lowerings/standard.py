"""Target ``onnx``: standard ONNX opset-23 ops only (no com.microsoft domain), for runtimes that implement
the opset-23 fused ops: ``Attention``, ``RotaryEmbedding``, ``RMSNormalization``.

Attention → ``RotaryEmbedding`` on q and k (3-D input with ``num_heads``; ``rotary_embedding_dim`` for
partial rotary), our own Concat for the cache (present = past ++ new, so the op's past inputs stay unused),
and one ``Attention`` node on 4-D (B, heads, length, hs) tensors: grouped KV heads come from the shapes, the
scale and ``softcap`` are attributes, and causality, the sliding window, padding and ALiBi all travel in one
additive float ``attn_mask`` (S, T) + (B, 1|nh, S, T). Why not ``is_causal``: ORT 1.31's CPU kernel aligns
it top-left when the cache comes in as K rather than as ``past_key`` (see docs/design.md), and a window
needs the mask anyway.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from onnxscript import opset23 as op

from yamlllm_export.lowerings import common, mla, portable, recurrent
from yamlllm_export.lowerings.attention_bias import attention_bias
from yamlllm_export.lowerings.common import dim
from yamlllm_export.lowerings.masking import visibility_mask, with_bias
from yamlllm_export.lowerings.rotary import rotary_dim
from yamlllm_export.lowerings.sinks import sink_column

OPSET = 23


def attention(
    query: Any, key: Any, value: Any, past_key: Any, past_value: Any, attention_bias: Any,
    cos_cache: Any, sin_cache: Any, position_ids: Any, num_heads: int, num_kv_heads: int, scale: float,
    window_size: int = 0, causal: bool = True, softcap: float = 0.0, sinks: Any = None,
    rope_interleaved: bool = False, softmax: str = "softmax", softmax_params: Any = None, softmax_consts: Any = None,
) -> tuple[Any, Any, Any]:  # fmt: skip
    """``yamlllm::attention`` (and ``complex_attention``, see ``ops/complex_attention.py``) → ONNX
    ``Attention`` (see module docstring). Every variant of the softmax attention is expressible; a
    ``softmax`` variant (ReaLLM-Forge) is not a softmax, so it takes the portable MatMul attention (plain
    ops, valid in opset 23). Interleaved RoPE pairs are RotaryEmbedding's ``interleaved=1``. Sinks, which the
    op has no input for, are one extra key: zero, so its score is 0 (also after softcap), with a zero value, and
    a mask column holding each head's sink logit, so exp(sink) joins the denominator and adds nothing to the output."""
    if softmax != "softmax":
        return portable.attention(
            query, key, value, past_key, past_value, attention_bias, cos_cache, sin_cache, position_ids, num_heads, num_kv_heads,
            scale, window_size=window_size, causal=causal, softcap=softcap, sinks=sinks, rope_interleaved=rope_interleaved,
            softmax=softmax, softmax_params=softmax_params, softmax_consts=softmax_consts,
        )  # fmt: skip
    if cos_cache is not None:
        rd = rotary_dim(cos_cache)
        layout = {"interleaved": 1} if rope_interleaved else {}
        query = op.RotaryEmbedding(query, cos_cache, sin_cache, position_ids, num_heads=num_heads, rotary_embedding_dim=rd, **layout)
        key = op.RotaryEmbedding(key, cos_cache, sin_cache, position_ids, num_heads=num_kv_heads, rotary_embedding_dim=rd, **layout)
    q = op.Transpose(op.Reshape(query, op.Constant(value_ints=[0, 0, num_heads, -1])), perm=[0, 2, 1, 3])  # (B, nh, S, hs)
    k = op.Transpose(op.Reshape(key, op.Constant(value_ints=[0, 0, num_kv_heads, -1])), perm=[0, 2, 1, 3])  # (B, nkv, S, hs)
    v = op.Transpose(op.Reshape(value, op.Constant(value_ints=[0, 0, num_kv_heads, -1])), perm=[0, 2, 1, 3])
    present_k = op.Concat(past_key, k, axis=2)  # (B, nkv, T, hs)
    present_v = op.Concat(past_value, v, axis=2)
    mask = visibility_mask(
        op, dim(op, query, 1), dim(op, past_key, 2), causal=causal, window_size=window_size, like=query
    )  # (S, T) or None
    mask = with_bias(op, mask, attention_bias, query)  # + (B, 1|nh, S, T)
    keys, values = present_k, present_v
    if sinks is not None:
        keys, values, mask = _with_sink_key(op, present_k, present_v, mask, sinks, query, num_heads)
    variants = {"softcap": softcap} if softcap > 0 else {}
    out = op.Attention(q, keys, values, mask, scale=scale, **variants)
    out = out[0] if isinstance(out, tuple) else out  # (B, nh, S, hs); the optional outputs stay unbound
    out = op.Reshape(
        op.Transpose(out, perm=[0, 2, 1, 3]), op.Concat(dim(op, query, 0), dim(op, query, 1), op.Constant(value_ints=[-1]), axis=0)
    )
    return out, present_k, present_v


def _with_sink_key(op: Any, present_k: Any, present_v: Any, mask: Any, sinks: Any, like: Any, num_heads: int) -> tuple[Any, Any, Any]:
    """Keys and values (B, nkv, T + 1, hs) with a zero entry appended, and the mask (B, nh, S, T + 1) with the
    sink logits as its last column (the cache itself, present_k / present_v, stays T long)."""
    B, S, T = dim(op, present_k, 0), dim(op, like, 1), dim(op, present_k, 2)
    zero_shape = op.Concat(B, dim(op, present_k, 1), op.Constant(value_ints=[1]), dim(op, present_k, 3), axis=0)
    zero = op.Expand(op.CastLike(op.Constant(value_float=0.0), like), zero_shape)  # (B, nkv, 1, hs)
    scores_shape = op.Concat(B, op.Constant(value_ints=[num_heads]), S, T, axis=0)
    full = op.Expand(mask if mask is not None else op.CastLike(op.Constant(value_float=0.0), like), scores_shape)  # (B, nh, S, T)
    mask = op.Concat(full, sink_column(op, sinks, like, B, S, num_heads), axis=-1)
    return op.Concat(present_k, zero, axis=2), op.Concat(present_v, zero, axis=2), mask


def rms_norm(x: Any, weight: Any, eps: float) -> Any:
    """``yamlllm::rms_norm`` → RMSNormalization over the last axis, statistics in float32 (stash_type 1)."""
    if weight is None:
        weight = op.Expand(op.CastLike(op.Constant(value_float=1.0), x), dim(op, x, -1))
    return op.RMSNormalization(x, op.CastLike(weight, x), axis=-1, epsilon=eps, stash_type=1)


TABLE: dict[Any, Callable[..., Any]] = {
    torch.ops.yamlllm.attention.default: attention,
    torch.ops.yamlllm.complex_attention.default: attention,
    torch.ops.yamlllm.attention_bias.default: attention_bias,
    torch.ops.yamlllm.mla_attention.default: mla.standard_mla_attention,
    torch.ops.yamlllm.rms_norm.default: rms_norm,
    torch.ops.yamlllm.moe.default: common.moe,  # dense plain ops (opset 23 has no MoE op)
    torch.ops.yamlllm.short_conv.default: recurrent.short_conv,
    torch.ops.yamlllm.linear_attention.default: recurrent.linear_attention,
}
