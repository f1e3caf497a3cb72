"""Sizes derived from a spec without building anything: parameters, weight bytes, KV-cache bytes."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from yamlllm_export.spec.types import AttentionSpec, FFNSpec, LayerSpec, ModelSpec, NormSpec

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}


def _norm_params(norm: NormSpec | None, dim: int) -> int:
    if norm is None or not norm.elementwise_affine:
        return 0
    return dim * (2 if norm.type == "layernorm" else 1)


def _mla_params(att: AttentionSpec, d: int) -> int:
    """Multi-latent attention (model/mla.py): query (full or W_dq, RMSNorm, W_uq), [W_dkv; W_kr], latent RMSNorm,
    W_uk, W_uv, W_o; biases on the x-side projections (qkv_bias) and W_o (out_bias)."""
    mla = att.mla_dims()
    nh, L, dr, r = att.num_heads, mla.latent_dim, mla.rope_head_dim, mla.rank
    q_out = nh * (att.head_dim + dr)
    if r is None:
        query = d * q_out + (q_out if att.qkv_bias else 0)
    else:
        query = d * r + (r if att.qkv_bias else 0) + r + r * q_out
    kv = d * (L + dr) + ((L + dr) if att.qkv_bias else 0) + L + L * nh * (att.head_dim + mla.v_head_dim)
    out = nh * mla.v_head_dim * d + (d if att.out_bias else 0)
    return query + kv + out


def _attention_params(att: AttentionSpec, d: int) -> int:
    """Q/K/V/O projections with their biases, and the qk-norm scales (per head: one norm over head_dim
    shared by the heads; full: over the whole projection)."""
    q, kv = att.num_heads * att.head_dim, att.num_kv_heads * att.head_dim
    total = d * (q + 2 * kv) + q * d + ((q + 2 * kv) if att.qkv_bias else 0) + (d if att.out_bias else 0)
    qk = att.qk_norm
    if qk is not None and qk.elementwise_affine:
        per = 2 if qk.type == "layernorm" else 1
        total += per * (2 * att.head_dim if qk.scope == "head" else q + kv)
    return total


def _sink_params(att: AttentionSpec) -> int:
    """One sink logit per query head, on the layers that have sinks (layer_overrides can set them per layer)."""
    return att.num_heads if att.sinks else 0


def _mlp_params(ffn: FFNSpec, d: int, hidden: int) -> int:
    n_in = 2 if ffn.use_gated_activation else 1
    return n_in * d * hidden + hidden * d + ((n_in * hidden + d) if ffn.bias else 0)


def _ffn_params(ffn: FFNSpec, d: int) -> int:
    """The dense MLP, or an MoE layer: router (d × E, + E with router_bias) + E experts + the optional shared expert."""
    moe = ffn.moe
    if moe is None:
        return _mlp_params(ffn, d, ffn.intermediate_size)
    shared = _mlp_params(ffn, d, moe.shared_expert_intermediate_size) if moe.shared_expert_intermediate_size else 0
    router = (d + 1 if moe.router_bias else d) * moe.num_experts
    return router + moe.num_experts * _mlp_params(ffn, d, moe.intermediate_size) + shared


def _layer_norm_params(lay: LayerSpec) -> int:
    """Norms per layer: one shared (parallel, shared norms), four (sandwich: before and after each sub-layer), else two."""
    count = 1 if lay.parallel and lay.parallel_norms == "shared" else 4 if lay.norm_placement == "sandwich" else 2
    return count * _norm_params(lay.layer_norm, lay.hidden_dim)


def parameter_count(spec: ModelSpec) -> int:
    emb, lay = spec.embedding, spec.layer
    att, d, e = lay.attention, lay.hidden_dim, emb.embedding_dim
    attn = _mla_params(att, d) if att.mechanism == "mla" else _attention_params(att, d)
    layers = sum(
        attn + _sink_params(layer.attention) + _ffn_params(layer.ffn, d) + _layer_norm_params(layer) for layer in spec.layer_specs()
    )
    total = layers + emb.vocab_size * e + _norm_params(spec.final_layer_norm, d) + _norm_params(spec.embedding_layer_norm, d)
    if e != d:  # factorized embeddings: e → d after the lookup, d → e before the head
        total += 2 * e * d
    if emb.positional_encoding.type == "learned":
        total += emb.max_position_embeddings * d
    if not spec.tie_word_embeddings:
        total += emb.vocab_size * e
    if spec.lm_head_bias:
        total += emb.vocab_size
    return total


def kv_cache_bytes_per_token(spec: ModelSpec, dtype: str = "float32") -> int:
    """Bytes the exported KV cache grows by per token, summed over layers: keys + values (2·nkv·head_dim), or
    for multi-latent attention the compressed latent + the shared RoPE key (mla_latent_dim + mla_rope_head_dim)."""
    att = spec.layer.attention
    if att.mechanism == "mla":
        mla = att.mla_dims()
        per_layer = mla.latent_dim + mla.rope_head_dim
    else:
        per_layer = 2 * att.num_kv_heads * att.head_dim
    return spec.num_layers * per_layer * DTYPE_BYTES[dtype]
