"""Spec → modules. The only place that reads the spec on the model side.

The model is built on the meta device and materialised once with ``to_empty``, so weights are never held
twice (a 7 B model needs its weights' bytes once, not twice).
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from yamlllm_export import ops
from yamlllm_export.model.attention import PerHead, SelfAttention
from yamlllm_export.model.decoder import Block, DecoderLM, ParallelBlock, Residual, Scale, Softcap
from yamlllm_export.model.ffn import MLP, GatedMLP
from yamlllm_export.model.infinite_attention import InfiniteHeadAttention
from yamlllm_export.model.init import init_weights
from yamlllm_export.model.mla import LowRankQuery, MultiLatentAttention
from yamlllm_export.model.moe import Experts, MoE
from yamlllm_export.model.norms import RMSNorm, make_norm
from yamlllm_export.model.positions import (
    AlibiSlopes,
    DynamicNTKRotary,
    LearnedPositions,
    LongRopeRotary,
    Rotary,
    RotaryCache,
    SinusoidalPositions,
)
from yamlllm_export.model.recurrent import IdentityMixer, LinearAttention, ShortConv
from yamlllm_export.ops.rope_scaling import RopeScaling, yarn_mscale
from yamlllm_export.spec.types import (
    AttentionSpec,
    ClampedSwiGLUSpec,
    EmbeddingSpec,
    FFNSpec,
    LayerSpec,
    ModelSpec,
    NormSpec,
    QKNormSpec,
    RopeScalingSpec,
)

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def _norm(spec: NormSpec, dim: int) -> nn.Module:
    return make_norm(spec.type, dim, eps=spec.eps, affine=spec.elementwise_affine, unit_offset=spec.unit_offset)


# which slots of ``Residual`` (pre, post, after) each norm placement fills, in both sub-layers
PLACEMENTS = {"pre": ("pre",), "post": ("after",), "sandwich": ("pre", "post"), "output": ("post",)}


def _residual(lay: LayerSpec) -> Residual:
    norms = {slot: _norm(lay.layer_norm, lay.hidden_dim) for slot in PLACEMENTS[lay.norm_placement]}
    return Residual(**norms, dropout=lay.residual_dropout, scale=lay.residual_scale)


def _mlp(ffn: FFNSpec, dim: int, hidden: int) -> nn.Module:
    mlp_cls = GatedMLP if ffn.use_gated_activation else MLP
    return mlp_cls(dim, hidden, activation=ffn.activation, bias=ffn.bias, dropout=ffn.dropout)


def _ffn(lay: LayerSpec) -> nn.Module:
    """The dense MLP, or on MoE layers (``ffn.moe`` set) stacked experts of the same kind plus an optional shared MLP."""
    ffn, d, moe = lay.ffn, lay.hidden_dim, lay.ffn.moe
    if moe is None:
        return _mlp(ffn, d, ffn.intermediate_size)
    shared = _mlp(ffn, d, moe.shared_expert_intermediate_size) if moe.shared_expert_intermediate_size else None
    experts = Experts(moe.num_experts, d, moe.intermediate_size, gated=ffn.use_gated_activation, bias=ffn.bias)
    return MoE(
        d, experts=experts, activation=ffn.activation, top_k=moe.top_k, normalize_top_k=moe.normalize_top_k,
        shared=shared, dropout=ffn.dropout, groups=moe.num_groups, top_groups=moe.top_groups or 0,
        routing=moe.routing, jitter_eps=moe.jitter_eps or 0.0, router_bias=moe.router_bias, swiglu=_swiglu(moe.clamped_swiglu),
    )  # fmt: skip


def _swiglu(clamped: ClampedSwiGLUSpec | None) -> tuple[float, float, float]:
    """(limit, alpha, beta) of the experts' SwiGLU: GPT-OSS's clamped form, or plain silu(g)·u."""
    return (clamped.limit, clamped.alpha, clamped.beta) if clamped is not None else (0.0, 1.0, 0.0)


def _mla_scale(att: AttentionSpec, scaling: RopeScalingSpec | None) -> float:
    """1/sqrt(dn + dr), × m(mscale_all_dim)² under YaRN with ``mscale_all_dim`` (DeepSeek-V2/V3's softmax scale)."""
    scale = 1.0 / math.sqrt(att.head_dim + att.mla_rope_head_dim)
    if scaling is not None and scaling.type == "yarn" and scaling.mscale_all_dim:
        scale *= yarn_mscale(scaling.factor, scaling.mscale_all_dim) ** 2
    return scale


def _mla(lay: LayerSpec, rotary: Rotary | None, scaling: RopeScalingSpec | None) -> MultiLatentAttention:
    """Multi-latent attention (``mechanism: mla``); its latent norms are RMSNorms with the layer's eps (DeepSeek-V2)."""
    att, d, eps = lay.attention, lay.hidden_dim, lay.layer_norm.eps
    q_out = att.num_heads * (att.head_dim + att.mla_rope_head_dim)
    if att.mla_rank is None:
        query = nn.Linear(d, q_out, bias=att.qkv_bias)
    else:
        query = LowRankQuery(d, q_out, rank=att.mla_rank, norm=RMSNorm(att.mla_rank, eps=eps, affine=True), bias=att.qkv_bias)
    return MultiLatentAttention(
        d, num_heads=att.num_heads, head_dim=att.head_dim, rope_dim=att.mla_rope_head_dim, v_head_dim=att.mla_v_head_dim,
        latent_dim=att.mla_latent_dim, query_proj=query, kv_norm=RMSNorm(att.mla_latent_dim, eps=eps, affine=True),
        qkv_bias=att.qkv_bias, out_bias=att.out_bias, dropout=att.dropout, rotary=rotary, scale=_mla_scale(att, scaling),
        window_size=att.window_size or 0, causal=att.causal, softcap=att.logit_softcap or 0.0,
    )  # fmt: skip


def _qk_norm(qk: QKNormSpec | None, num_heads: int, head_dim: int) -> nn.Module | None:
    """qk-norm of one projection: a norm over hs shared by the heads (scope head) or over n·hs (full)."""
    if qk is None:
        return None
    if qk.scope == "head":
        return PerHead(make_norm(qk.type, head_dim, eps=qk.eps, affine=qk.elementwise_affine), head_dim)
    return make_norm(qk.type, num_heads * head_dim, eps=qk.eps, affine=qk.elementwise_affine)


def _attention(att: AttentionSpec, d: int, rotary: RotaryCache | None) -> SelfAttention:
    return SelfAttention(
        d, num_heads=att.num_heads, num_kv_heads=att.num_kv_heads, head_dim=att.head_dim,
        qkv_bias=att.qkv_bias, out_bias=att.out_bias, dropout=att.dropout, rotary=rotary,
        q_norm=_qk_norm(att.qk_norm, att.num_heads, att.head_dim),
        k_norm=_qk_norm(att.qk_norm, att.num_kv_heads, att.head_dim),
        window_size=att.window_size or 0, causal=att.causal, softcap=att.logit_softcap or 0.0,
        scale=att.softmax_scale if att.softmax_scale is not None else 1.0 / math.sqrt(att.head_dim), clip=att.qkv_clip, sinks=att.sinks,
        kernel=ops.complex_attention if att.mechanism == "complex" else ops.attention,
    )  # fmt: skip


def _mixer(kind: str, lay: LayerSpec, rotary: RotaryCache | None, scaling: RopeScalingSpec | None) -> nn.Module:
    """The layer's token mixer (``layer_types``): attention (standard, MLA, complex) or a recurrent kind."""
    d, att = lay.hidden_dim, lay.attention
    if kind == "identity":
        return IdentityMixer()
    if kind == "short_conv":
        assert lay.short_conv is not None  # spec/load.py fills it when a layer is short_conv
        return ShortConv(d, kernel_size=lay.short_conv.L_cache, bias=lay.short_conv.bias)
    if kind == "linear_attention":
        assert lay.linear_attention is not None
        return LinearAttention(d, num_heads=lay.linear_attention.num_heads)
    rotary = None if att.nope else rotary
    if kind == "infinite_attention":
        inf = lay.infinite_attention
        assert inf is not None
        return InfiniteHeadAttention(
            d, num_heads=inf.num_heads, num_kv_heads=inf.num_kv_heads, qk_head_dim=inf.qk_head_dim, v_head_dim=inf.v_head_dim,
            bias=inf.bias, rotary=rotary,
        )  # fmt: skip
    return _mla(lay, rotary, scaling) if att.mechanism == "mla" else _attention(att, d, rotary)


def _block(lay: LayerSpec, kind: str, rotary: RotaryCache | None, scaling: RopeScalingSpec | None) -> Block | ParallelBlock:
    """A sequential block with the spec's norm placement, or a parallel block (one shared norm, or two)."""
    d = lay.hidden_dim
    attn = _mixer(kind, lay, rotary, scaling)
    if lay.parallel:
        ffn_norm = _norm(lay.layer_norm, d) if lay.parallel_norms == "separate" else None
        return ParallelBlock(attn=attn, ffn=_ffn(lay), norm=_norm(lay.layer_norm, d), ffn_norm=ffn_norm, dropout=lay.residual_dropout,
            scale=lay.residual_scale,
        )  # fmt: skip
    return Block(attn=attn, ffn=_ffn(lay), attn_norms=_residual(lay), ffn_norms=_residual(lay))


def _embedding_ends(spec: ModelSpec) -> dict[str, nn.Module | None]:
    """Token-embedding scale, the factorized-embedding projections (e → d after the lookup, d → e before
    the LM head; bias-free), the embedding norm and the final logit softcap; None where the spec asks for none."""
    emb, d = spec.embedding, spec.layer.hidden_dim
    factorized = emb.embedding_dim != d
    return {
        "embed_scale": Scale(emb.scale) if emb.scale not in (None, 1.0) else None,
        "embed_proj": nn.Linear(emb.embedding_dim, d, bias=False) if factorized else None,
        "embed_norm": _norm(spec.embedding_layer_norm, d) if spec.embedding_layer_norm is not None else None,
        "head_proj": nn.Linear(d, emb.embedding_dim, bias=False) if factorized else None,
        "logit_scale": Scale(spec.final_logit_scale) if spec.final_logit_scale not in (None, 1.0) else None,
        "logit_softcap": Softcap(spec.final_logit_softcap) if spec.final_logit_softcap is not None else None,
    }


def rope_scaling(s: RopeScalingSpec | None) -> RopeScaling | None:
    """The op-level scaling parameters of a spec's ``rope_scaling`` (every field from the spec)."""
    if s is None:
        return None
    return RopeScaling(
        s.type, s.factor, s.original_max_position_embeddings, low_freq_factor=s.low_freq_factor,
        high_freq_factor=s.high_freq_factor, beta_fast=s.beta_fast, beta_slow=s.beta_slow, attention_factor=s.attention_factor,
        mscale=s.mscale, mscale_all_dim=s.mscale_all_dim, truncate=s.truncate, short_factor=s.short_factor,
        long_factor=s.long_factor,
    )  # fmt: skip


def _rotary(emb: EmbeddingSpec, theta: float | None = None, unscaled: bool = False) -> Rotary | None:
    """RoPE tables shared by the layers with the same base and scaling (``theta`` / ``unscaled``: a layer's
    own): static (plain, linear, llama3, yarn) or chosen / computed per forward (LongRoPE, dynamic NTK)."""
    pe = emb.positional_encoding
    if pe.type != "rope":
        return None
    pe = dataclasses.replace(pe, rope_theta=theta or pe.rope_theta, rope_scaling=None if unscaled else pe.rope_scaling)
    scaling = rope_scaling(pe.rope_scaling)
    if scaling is not None and scaling.type == "dynamic":
        return DynamicNTKRotary(
            pe.rotary_dim, theta=pe.rope_theta, factor=scaling.factor, original_max=scaling.original_max_position_embeddings
        )
    if scaling is not None and scaling.type == "longrope":
        return LongRopeRotary(emb.max_position_embeddings, pe.rotary_dim, theta=pe.rope_theta, scaling=scaling)
    return RotaryCache(emb.max_position_embeddings, pe.rotary_dim, theta=pe.rope_theta, scaling=scaling)


def _absolute_positions(emb: EmbeddingSpec, dim: int) -> LearnedPositions | SinusoidalPositions | None:
    """What is added to the token embeddings: learned or sinusoidal tables; nothing for rope, alibi and none."""
    kind = emb.positional_encoding.type
    if kind == "learned":
        return LearnedPositions(emb.max_position_embeddings, dim)
    if kind == "sinusoidal":
        return SinusoidalPositions(emb.max_position_embeddings, dim)
    return None


def _skeleton(spec: ModelSpec) -> DecoderLM:
    emb, d = spec.embedding, spec.layer.hidden_dim
    kind = emb.positional_encoding.type
    tables: dict[tuple[float | None, bool], Rotary | None] = {}
    for att in (layer.attention for layer in spec.layer_specs()):  # one table per distinct (base, scaled)
        key = (att.rope_theta, att.rope_unscaled)
        tables.setdefault(key, _rotary(emb, *key))
    embed = nn.Embedding(emb.vocab_size, emb.embedding_dim, padding_idx=emb.padding_idx)
    lm_head = nn.Linear(emb.embedding_dim, emb.vocab_size, bias=spec.lm_head_bias)
    if spec.tie_word_embeddings:
        lm_head.weight = embed.weight
    return DecoderLM(
        embed=embed,
        positions=_absolute_positions(emb, d),
        alibi=AlibiSlopes(spec.layer.attention.num_heads) if kind == "alibi" else None,
        blocks=[
            _block(layer, kind, tables[layer.attention.rope_theta, layer.attention.rope_unscaled], emb.positional_encoding.rope_scaling)
            for layer, kind in zip(spec.layer_specs(), spec.mixers(), strict=True)
        ],
        final_norm=_norm(spec.final_layer_norm, d) if spec.final_layer_norm is not None else None,
        lm_head=lm_head,
        dropout=emb.dropout,
        **_embedding_ends(spec),
    )


def skeleton(spec: ModelSpec) -> DecoderLM:
    """The model's modules on the meta device: shapes and names, no storage."""
    with torch.device("meta"):
        return _skeleton(spec)


def build_model(spec: ModelSpec, *, seed: int = 0, device: str | torch.device = "cpu", dtype: str = "float32") -> DecoderLM:
    """The PyTorch model for ``spec`` with weights initialised from ``seed`` (see ``model/init.py``), in eval mode."""
    model = skeleton(spec).to_empty(device=device)
    if spec.tie_word_embeddings:  # to_empty re-creates parameters; re-tie
        model.lm_head.weight = model.embed.weight
    for module in model.modules():
        if hasattr(module, "reset_buffers"):
            module.reset_buffers()
    init = spec.initialization
    init_weights(
        model, scheme=init.type, seed=seed, num_layers=spec.num_layers, gain=init.gain, std=init.std,
        residual_scale=init.gpt2_residual_scale, padding_idx=spec.embedding.padding_idx,
    )  # fmt: skip
    return model.to(DTYPES[dtype]).eval()
