"""Sizes derived from a spec without building anything: parameters, weight bytes, KV-cache bytes."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from yamlllm_export.spec.types import AttentionSpec, ModelSpec, NormSpec

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}


def _norm_params(norm: NormSpec | None, dim: int) -> int:
    if norm is None or not norm.elementwise_affine:
        return 0
    return dim * (2 if norm.type == "layernorm" else 1)


def _mla_params(att: AttentionSpec, d: int) -> int:
    """Multi-latent attention (model/mla.py): query (full or W_dq, RMSNorm, W_uq), [W_dkv; W_kr], latent RMSNorm,
    W_uk, W_uv, W_o; biases on the x-side projections (qkv_bias) and W_o (out_bias)."""
    nh, L, dr = att.num_heads, att.mla_latent_dim, att.mla_rope_head_dim
    q_out = nh * (att.head_dim + dr)
    if att.mla_rank is None:
        query = d * q_out + (q_out if att.qkv_bias else 0)
    else:
        query = d * att.mla_rank + (att.mla_rank if att.qkv_bias else 0) + att.mla_rank + att.mla_rank * q_out
    kv = d * (L + dr) + ((L + dr) if att.qkv_bias else 0) + L + L * nh * (att.head_dim + att.mla_v_head_dim)
    out = nh * att.mla_v_head_dim * d + (d if att.out_bias else 0)
    return query + kv + out


def parameter_count(spec: ModelSpec) -> int:
    emb, lay = spec.embedding, spec.layer
    att, ffn, d = lay.attention, lay.ffn, lay.hidden_dim
    q, kv = att.num_heads * att.head_dim, att.num_kv_heads * att.head_dim
    attn = d * (q + 2 * kv) + q * d + ((q + 2 * kv + d) if att.bias else 0)
    if att.mechanism == "mla":
        attn = _mla_params(att, d)
    n_in = 2 if ffn.use_gated_activation else 1
    mlp = n_in * d * ffn.intermediate_size + ffn.intermediate_size * d
    if ffn.bias:
        mlp += n_in * ffn.intermediate_size + d
    per_layer = attn + mlp + 2 * _norm_params(lay.layer_norm, d)
    total = spec.num_layers * per_layer + emb.vocab_size * d + _norm_params(spec.final_layer_norm, d)
    if emb.positional_encoding.type == "learned":
        total += emb.max_position_embeddings * d
    if not spec.tie_word_embeddings:
        total += emb.vocab_size * d
    return total


def kv_cache_bytes_per_token(spec: ModelSpec, dtype: str = "float32") -> int:
    """Bytes the exported KV cache grows by per token, summed over layers: keys + values (2·nkv·head_dim), or
    for multi-latent attention the compressed latent + the shared RoPE key (mla_latent_dim + mla_rope_head_dim)."""
    att = spec.layer.attention
    per_layer = att.mla_latent_dim + att.mla_rope_head_dim if att.mechanism == "mla" else 2 * att.num_kv_heads * att.head_dim
    return spec.num_layers * per_layer * DTYPE_BYTES[dtype]
