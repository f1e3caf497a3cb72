"""Sizes derived from a spec without building anything: parameters, weight bytes, KV-cache and state bytes."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from yamlllm_export.spec.types import AttentionSpec, FFNSpec, KANSpec, LayerSpec, ModelSpec, NormSpec

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}


def _norm_params(norm: NormSpec | None, dim: int) -> int:
    """Scale (and shift); ReaLLM-Forge's variants: hyperspherenorm a radius, dyt α, β, γ as set, identity none."""
    if norm is None or norm.type == "identity":
        return 0
    if norm.type == "hyperspherenorm":
        return 1
    if norm.type == "dyt":
        return int(bool(norm.dyt_alpha)) + dim * (int(bool(norm.dyt_beta)) + int(bool(norm.dyt_gamma)))
    if not norm.elementwise_affine:
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


def _activation_params(ffn: FFNSpec) -> int:
    """Forge's learned activation parameters: a shift or slope, 2·n knots; the x / y offsets."""
    own = 1 if ffn.activation in ("gelu_shifted", "prelu") else 0
    if ffn.activation_knots is not None:
        own = 2 * ffn.activation_knots.num
    return own + (ffn.x_offset is not None) + (ffn.y_offset is not None)


def _softmax_params(att: AttentionSpec) -> int:
    """A ReaLLM-Forge softmax variant's parameters (``model/softmax_variants.py``)."""
    s = att.softmax
    if s is None:
        return 0
    if s.type in ("consmax", "consmax_quan", "saturatingconsmax"):
        return 2  # beta, gamma
    if s.type == "consmax_v2":
        return 2 * att.num_heads  # per-head factors
    if s.type == "strongermax":
        return 1 + (att.num_heads if s.obo_per_head else 1)  # temperature, obo
    if s.type == "pfla_softmax":
        return 2 * (s.num_knots or 0) + (1 if s.learned_divisor else 0)  # x and √y knots, the learned divisor
    return 0


def _fire_params(att: AttentionSpec) -> int:
    """FIRE's MLP Linear(1, W) → [Linear(W, W)] × (L − 1) → Linear(W, nh) (L = 0: Linear(1, nh)) and c, init_L, L_multiplier."""
    f, nh = att.fire, att.num_heads
    if f is None:
        return 0
    w, hidden = f.mlp_width, f.num_hidden_layers
    mlp = 2 * nh if hidden == 0 else 2 * w + (hidden - 1) * (w * w + w) + w * nh + nh
    return mlp + 3


def _mlp_params(ffn: FFNSpec, d: int, hidden: int) -> int:
    """Up (and gate) and down projections; dual_path: up and two downs; down_projections k: a down of k·d."""
    if ffn.moe is None and ffn.variant == "dual_path":
        return d * hidden + 2 * hidden * d + ((hidden + 2 * d) if ffn.bias else 0) + _activation_params(ffn)
    n_in = 2 if ffn.use_gated_activation else 1
    k = ffn.down_projections
    return n_in * d * hidden + hidden * d * k + ((n_in * hidden + d * k) if ffn.bias else 0) + _activation_params(ffn)


def _kan_params(kan: KANSpec, d: int) -> int:
    """Per KAN layer (in → out): W_base (out × in), W_poly (out × in·(P+1)), LayerNorm weight and bias (out)."""
    widths = (d, *kan.middle_layers, d)
    return sum(o * i * (kan.poly_order + 2) + 2 * o for i, o in zip(widths, widths[1:], strict=False))


def _ffn_params(ffn: FFNSpec, d: int) -> int:
    """The dense MLP, or an MoE layer: router (d × E, + E with router_bias) + E experts + the optional shared expert."""
    moe = ffn.moe
    if ffn.kan is not None:
        return _kan_params(ffn.kan, d)
    if moe is None:
        return _mlp_params(ffn, d, ffn.intermediate_size)
    shared = _mlp_params(ffn, d, moe.shared_expert_intermediate_size) if moe.shared_expert_intermediate_size else 0
    router = (d + 1 if moe.router_bias else d) * moe.num_experts
    return router + moe.num_experts * _mlp_params(ffn, d, moe.intermediate_size) + shared


def _layer_norm_params(lay: LayerSpec) -> int:
    """Norms per layer: one shared (parallel, shared norms), four (sandwich: before and after each sub-layer), else two."""
    count = 1 if lay.parallel and lay.parallel_norms == "shared" else 4 if lay.norm_placement == "sandwich" else 2
    return count * _norm_params(lay.layer_norm, lay.hidden_dim)


def _mixer_params(kind: str, lay: LayerSpec) -> int:
    """A layer's token mixer (``layer_types``): attention; none (identity); short conv (in_proj d → 3d, the
    depthwise kernel d × L, out_proj, biases on all three with ``bias``); linear attention (c_attn d → 3d and
    c_proj with biases, the scalar scale)."""
    att, d = lay.attention, lay.hidden_dim
    if kind == "identity":
        return 0
    if kind == "short_conv" and lay.short_conv is not None:
        return 3 * d * d + d * lay.short_conv.L_cache + d * d + ((3 * d + d + d) if lay.short_conv.bias else 0)
    if kind == "linear_attention":
        return 3 * d * d + 3 * d + d * d + d + 1
    if kind == "infinite_attention" and lay.infinite_attention is not None:  # q, k, v, then W_o on the heads' sum
        inf = lay.infinite_attention
        out = inf.num_heads * inf.qk_head_dim + inf.num_kv_heads * (inf.qk_head_dim + inf.v_head_dim)
        return d * out + inf.v_head_dim * d + ((out + d) if inf.bias else 0)
    return (_mla_params(att, d) if att.mechanism == "mla" else _attention_params(att, d)) + _sink_params(att) + _softmax_params(att)


def parameter_count(spec: ModelSpec) -> int:
    emb, lay = spec.embedding, spec.layer
    att, d, e = lay.attention, lay.hidden_dim, emb.embedding_dim
    layers = sum(
        _mixer_params(kind, layer) + _ffn_params(layer.ffn, d) + _layer_norm_params(layer)
        for layer, kind in zip(spec.layer_specs(), spec.mixers(), strict=True)
    )
    if att.fire is not None:  # one module for every layer when shared
        layers += _fire_params(att) * (1 if att.fire.shared else spec.num_layers)
    total = layers + emb.vocab_size * e + _norm_params(spec.final_layer_norm, d) + _norm_params(spec.embedding_layer_norm, d)
    if e != d:  # factorized embeddings: e → d after the lookup, d → e before the head (one matrix when tied)
        total += (1 if emb.tie_projections else 2) * e * d
    if emb.learned_scale:
        total += 1
    if emb.positional_encoding.type == "learned":
        total += emb.max_position_embeddings * d
    if not spec.tie_word_embeddings:
        total += emb.vocab_size * e
    if spec.lm_head_bias:
        total += emb.vocab_size
    return total + _lsv_params(spec)


def _lsv_params(spec: ModelSpec) -> int:
    """ReaLLM-Forge's learned steering vectors (model/steering.py): M (n × C), or n MLPs (C → 64 → 64 → C or
    C → 64 → C, biased) and a router (C → n, biased) or queries (n × C)."""
    lsv = spec.steering.lsv if spec.steering is not None else None
    if lsv is None:
        return 0
    n, c, w = lsv.num_vectors, spec.layer.hidden_dim, 64
    if lsv.variant == "one_hot":
        return n * c
    deep = lsv.variant in ("one_hot_mlp", "ohmg", "mol")
    mlp = (c * w + w) + (w * w + w if deep else 0) + (w * c + c)
    route = 0 if lsv.variant == "one_hot_mlp" else n * c if lsv.variant == "ohma" else c * n + n
    return n * mlp + route


def kv_cache_bytes_per_token(spec: ModelSpec, dtype: str = "float32") -> int:
    """Bytes the exported KV cache grows by per token, summed over layers: keys + values (2·nkv·head_dim), or
    for multi-latent attention the compressed latent + the shared RoPE key (mla_latent_dim + mla_rope_head_dim)."""
    from yamlllm_export.spec.features import needs_full_window

    if needs_full_window(spec):  # no cache: the window is recomputed at every step
        return 0
    att = spec.layer.attention
    if att.mechanism == "mla":
        mla = att.mla_dims()
        per_layer = mla.latent_dim + mla.rope_head_dim
    else:
        per_layer = 2 * att.num_kv_heads * att.head_dim
    inf = spec.layer.infinite_attention
    infinite = inf.num_kv_heads * (inf.qk_head_dim + inf.v_head_dim) if inf is not None else 0
    kinds = spec.mixers()  # state layers' caches do not grow
    return (kinds.count("attention") * per_layer + kinds.count("infinite_attention") * infinite) * DTYPE_BYTES[dtype]


def state_bytes(spec: ModelSpec, dtype: str = "float32") -> int:
    """Bytes of the recurrent states per sequence, summed over layers: constant in the context length
    (short_conv: hidden_dim · (L_cache − 1); linear_attention: kv_sum and k_sum, 2 · hidden_dim)."""
    lay, d = spec.layer, spec.layer.hidden_dim
    per = {"short_conv": d * (lay.short_conv.L_cache - 1) if lay.short_conv else 0, "linear_attention": 2 * d}
    return sum(per.get(kind, 0) for kind in spec.mixers()) * DTYPE_BYTES[dtype]
