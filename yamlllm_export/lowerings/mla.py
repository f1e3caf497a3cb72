"""Lowerings of ``yamlllm::mla_attention`` (multi-head latent attention), one per target.

All three compute the "absorbed" form (DeepSeek-V2 §2.1.2, see ``ops/mla_attention.py``): W_uk moves to the
query side and W_uv after the softmax, so attention runs over the cached latent as multi-query attention
with a single KV head of size L + dr, and per-head keys and values are never materialised:

    q_lat^(h) = q_nope^(h) · W_uk^(h)                       (B, nh, S, L)
    scores    = scale · [q_lat, RoPE(q_rope)] · [c, RoPE(k_rope)]ᵀ + causal + bias
    out^(h)   = softmax(scores) · c · W_uv^(h)ᵀ              (B, nh, S, dv)

- ``ort``: com.microsoft.RotaryEmbedding on q_rope and k_rope, then the MatMul/Softmax of ``portable``.
  Why not GroupQueryAttention (kv_num_heads = 1, head size L + dr): its past must be one tensor [c, k_rope],
  i.e. a Concat of the two cache inputs, and ORT plans GQA's present in place of a past that is an
  intermediate value: the run fails ("Shape mismatch attempting to re-use buffer", ORT 1.31, measured).
  GQA also refuses a key length ≠ query length without a past, and its CUDA flash kernel stops at head
  size 256 (DeepSeek-V2: L + dr = 576). MatMul broadcasts the one latent head over nh query heads for free.
- ``onnx``: opset-23 RotaryEmbedding and Attention (4-D inputs, one KV head, value head size L ≠ key head size).
- ``portable``: plain opset-18 ops.
The helpers take the opset as a parameter (``op``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from onnxscript import opset18, opset23, values

from yamlllm_export.lowerings.common import dim
from yamlllm_export.lowerings.masking import visibility_mask, with_bias
from yamlllm_export.lowerings.rotary import apply_rotary

msft = values.Opset("com.microsoft", 1)
BIG = 2**62


def _ints(op: Any, *v: int) -> Any:
    return op.Constant(value_ints=list(v))


def _split_query(op: Any, query: Any, rope_key: Any, num_heads: int) -> tuple[Any, Any]:
    """query (B, S, nh·(dn + dr)) → q_nope (B, S, nh, dn), q_rope (B, S, nh, dr) (None without a rope key)."""
    q = op.Reshape(query, _ints(op, 0, 0, num_heads, -1))  # (B, S, nh, dn + dr)
    if rope_key is None:
        return q, None
    neg_dr = op.Neg(dim(op, rope_key, -1))
    return op.Slice(q, _ints(op, 0), neg_dr, _ints(op, -1)), op.Slice(q, neg_dr, _ints(op, BIG), _ints(op, -1))


def _absorb_query(op: Any, q_nope: Any, w_uk: Any, num_heads: int) -> Any:
    """q_nope (B, S, nh, dn) · W_uk per head → q_lat (B, nh, S, L)."""
    w = op.Reshape(w_uk, op.Concat(_ints(op, num_heads, -1), dim(op, w_uk, 1), axis=0))  # (nh, dn, L)
    return op.MatMul(op.Transpose(q_nope, perm=[0, 2, 1, 3]), w)  # (B, nh, S, dn) @ (nh, dn, L)


def _expand_values(op: Any, ctx: Any, w_uv: Any, num_heads: int) -> Any:
    """ctx (B, nh, S, L) · W_uv per head → (B, S, nh·dv)."""
    w = op.Reshape(w_uv, op.Concat(_ints(op, num_heads, -1), dim(op, w_uv, 1), axis=0))  # (nh, dv, L)
    out = op.MatMul(ctx, op.Transpose(w, perm=[0, 2, 1]))  # (B, nh, S, L) @ (nh, L, dv) → (B, nh, S, dv)
    return op.Reshape(op.Transpose(out, perm=[0, 2, 1, 3]), _ints(op, 0, 0, -1))  # (B, S, nh·dv)


@dataclass(frozen=True)
class Variant:
    """The attention variants of the op's trailing attributes (see ``ops/mla_attention.py``)."""

    window_size: int = 0
    causal: bool = True
    softcap: float = 0.0


def _mask(op: Any, like: Any, S: Any, P: Any, attention_bias: Any, variant: Variant) -> Any:
    """The (S, T) visibility mask of ``lowerings/masking.py`` (by cache index, as ``yamlllm::attention``) plus
    the bias (B, 1|nh, S, T); None when everything is visible and there is no bias."""
    mask = visibility_mask(op, S, P, causal=variant.causal, window_size=variant.window_size, like=like)
    return with_bias(op, mask, attention_bias, like)


def _no_rope(op: Any, present_latent: Any) -> Any:
    """The (B, 1, T, 0) present_rope_key of MLA without RoPE: the model drops it, so the exporter prunes it."""
    return op.Slice(present_latent, _ints(op, 0), _ints(op, 0), _ints(op, -1))


def _scaled(op: Any, x: Any, scale: float) -> Any:
    return op.Mul(x, op.CastLike(op.Constant(value_float=scale), x))


def ort_mla_attention(
    query: Any, latent: Any, rope_key: Any, past_latent: Any, past_rope_key: Any, attention_bias: Any,
    cos_cache: Any, sin_cache: Any, position_ids: Any, w_uk: Any, w_uv: Any, num_heads: int, scale: float,
    window_size: int = 0, causal: bool = True, softcap: float = 0.0,
) -> tuple[Any, Any, Any]:  # fmt: skip
    """``yamlllm::mla_attention`` → com.microsoft.RotaryEmbedding + MatMul/Softmax over the latent (module docstring)."""
    op = opset18
    q_nope, q_rope = _split_query(op, query, rope_key, num_heads)  # (B, S, nh, dn), (B, S, nh, dr)
    k_rope = rope_key  # (B, S, dr)
    if cos_cache is not None and rope_key is not None:
        q_rope = msft.RotaryEmbedding(op.Reshape(q_rope, _ints(op, 0, 0, -1)), position_ids, cos_cache, sin_cache, num_heads=num_heads)
        q_rope = op.Reshape(q_rope, _ints(op, 0, 0, num_heads, -1))  # (B, S, nh, dr)
        k_rope = msft.RotaryEmbedding(rope_key, position_ids, cos_cache, sin_cache, num_heads=1)
    k_rope = op.Unsqueeze(k_rope, _ints(op, 2)) if k_rope is not None else None  # (B, S, 1, dr)
    variant = Variant(window_size, causal, softcap)
    return _latent_attention(
        op, q_nope, q_rope, latent, k_rope, past_latent, past_rope_key, attention_bias, w_uk, w_uv, num_heads, scale, variant
    )


def standard_mla_attention(
    query: Any, latent: Any, rope_key: Any, past_latent: Any, past_rope_key: Any, attention_bias: Any,
    cos_cache: Any, sin_cache: Any, position_ids: Any, w_uk: Any, w_uv: Any, num_heads: int, scale: float,
    window_size: int = 0, causal: bool = True, softcap: float = 0.0,
) -> tuple[Any, Any, Any]:  # fmt: skip
    """``yamlllm::mla_attention`` → opset-23 RotaryEmbedding + Attention (one KV head of size L + dr, values of size L)."""
    op = opset23
    q_nope, q_rope = _split_query(op, query, rope_key, num_heads)
    present_latent = op.Concat(past_latent, op.Unsqueeze(latent, _ints(op, 1)), axis=2)  # (B, 1, T, L)
    q, k = _absorb_query(op, q_nope, w_uk, num_heads), present_latent  # (B, nh, S, L), (B, 1, T, L)
    present_rope = _no_rope(op, present_latent)
    if rope_key is not None:
        q_rope = op.Transpose(q_rope, perm=[0, 2, 1, 3])  # (B, nh, S, dr)
        k_rope = op.Unsqueeze(rope_key, _ints(op, 1))  # (B, 1, S, dr)
        if cos_cache is not None:
            q_rope = op.RotaryEmbedding(q_rope, cos_cache, sin_cache, position_ids)
            k_rope = op.RotaryEmbedding(k_rope, cos_cache, sin_cache, position_ids)
        present_rope = op.Concat(past_rope_key, k_rope, axis=2)  # (B, 1, T, dr)
        q = op.Concat(q, q_rope, axis=-1)  # (B, nh, S, L + dr)
        k = op.Concat(present_latent, present_rope, axis=-1)  # (B, 1, T, L + dr)
    mask = _mask(op, query, dim(op, query, 1), dim(op, past_latent, 2), attention_bias, Variant(window_size, causal, softcap))
    softcap_attr = {"softcap": softcap} if softcap > 0 else {}
    ctx = op.Attention(q, k, present_latent, mask, scale=scale, **softcap_attr)  # (B, nh, S, L); mask (B|1, 1|nh, S, T)
    ctx = ctx[0] if isinstance(ctx, tuple) else ctx
    return _expand_values(op, ctx, w_uv, num_heads), present_latent, present_rope


def portable_mla_attention(
    query: Any, latent: Any, rope_key: Any, past_latent: Any, past_rope_key: Any, attention_bias: Any,
    cos_cache: Any, sin_cache: Any, position_ids: Any, w_uk: Any, w_uv: Any, num_heads: int, scale: float,
    window_size: int = 0, causal: bool = True, softcap: float = 0.0,
) -> tuple[Any, Any, Any]:  # fmt: skip
    """``yamlllm::mla_attention`` as plain opset-18 ops: RoPE by Gather/Mul, MatMul/Softmax over the latent."""
    op = opset18
    q_nope, q_rope = _split_query(op, query, rope_key, num_heads)  # (B, S, nh, dn), (B, S, nh, dr)
    k_rope = op.Unsqueeze(rope_key, _ints(op, 2)) if rope_key is not None else None  # (B, S, 1, dr)
    if cos_cache is not None and rope_key is not None:
        q_rope, k_rope = (
            apply_rotary(op, q_rope, position_ids, cos_cache, sin_cache),
            apply_rotary(op, k_rope, position_ids, cos_cache, sin_cache),
        )
    variant = Variant(window_size, causal, softcap)
    return _latent_attention(
        op, q_nope, q_rope, latent, k_rope, past_latent, past_rope_key, attention_bias, w_uk, w_uv, num_heads, scale, variant
    )


def _latent_attention(
    op: Any, q_nope: Any, q_rope: Any, latent: Any, k_rope: Any, past_latent: Any, past_rope_key: Any, attention_bias: Any,
    w_uk: Any, w_uv: Any, num_heads: int, scale: float, variant: Variant,
) -> tuple[Any, Any, Any]:  # fmt: skip
    """The absorbed attention in MatMul/Softmax, from rotated q_rope (B, S, nh, dr) and k_rope (B, S, 1, dr):
    multi-query attention over the cache, broadcast over heads by MatMul (never repeated nh times)."""
    present_latent = op.Concat(past_latent, op.Unsqueeze(latent, _ints(op, 1)), axis=2)  # (B, 1, T, L)
    q_lat = _scaled(op, _absorb_query(op, q_nope, w_uk, num_heads), scale)  # (B, nh, S, L)
    scores = op.MatMul(q_lat, op.Transpose(present_latent, perm=[0, 1, 3, 2]))  # (B, nh, S, L) @ (B, 1, L, T)
    present_rope = _no_rope(op, present_latent)
    if k_rope is not None:
        present_rope = op.Concat(past_rope_key, op.Transpose(k_rope, perm=[0, 2, 1, 3]), axis=2)  # (B, 1, T, dr)
        q_rope = _scaled(op, op.Transpose(q_rope, perm=[0, 2, 1, 3]), scale)  # (B, nh, S, dr)
        scores = op.Add(scores, op.MatMul(q_rope, op.Transpose(present_rope, perm=[0, 1, 3, 2])))  # (B, nh, S, dr) @ (B, 1, dr, T)
    if variant.softcap > 0:  # before the mask, as ONNX Attention and yamlllm::attention
        cap = op.CastLike(op.Constant(value_float=variant.softcap), scores)
        scores = op.Mul(cap, op.Tanh(op.Div(scores, cap)))
    mask = _mask(op, q_lat, dim(op, latent, 1), dim(op, past_latent, 2), attention_bias, variant)
    scores = scores if mask is None else op.Add(scores, mask)
    ctx = op.MatMul(op.Softmax(scores, axis=-1), present_latent)  # (B, nh, S, T) @ (B, 1, T, L) → (B, nh, S, L)
    return _expand_values(op, ctx, w_uv, num_heads), present_latent, present_rope
