"""Spec → modules. The only place that reads the spec on the model side.

The model is built on the meta device and materialised once with ``to_empty``, so weights are never held
twice (a 7 B model needs its weights' bytes once, not twice).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import TypeVar

import torch
from torch import nn

from yamlllm_export import ops
from yamlllm_export.model.activations import make_activation
from yamlllm_export.model.attention import PerHead, SelfAttention
from yamlllm_export.model.decoder import Block, DecoderLM, ParallelBlock, Residual, Scale, Softcap
from yamlllm_export.model.ffn import MLP, DualPathMLP, GatedMLP, Offsets
from yamlllm_export.model.fire import FIRE
from yamlllm_export.model.forge_norms import DyT, HypersphereNorm, KRMSNorm, PartialRMSNorm
from yamlllm_export.model.forge_weights import (
    BitLinear158,
    LearnedScale,
    QuantizedEmbedding,
    QuantizedLinear,
    TransposedProjection,
    swap_linears,
)
from yamlllm_export.model.infinite_attention import InfiniteHeadAttention
from yamlllm_export.model.init import init_weights
from yamlllm_export.model.kan import KANFFN
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
from yamlllm_export.model.softmax_variants import SoftmaxVariant, make_softmax
from yamlllm_export.model.steering import OneHotLSV, OneHotMLPLSV, RoutedLSV, SteeringVector
from yamlllm_export.ops.rope_scaling import RopeScaling, yarn_mscale
from yamlllm_export.spec.types import (
    AttentionSpec,
    ClampedSwiGLUSpec,
    EmbeddingSpec,
    FFNSpec,
    FireSpec,
    LayerSpec,
    LinearVariantSpec,
    ModelSpec,
    NormSpec,
    QKNormSpec,
    RopeScalingSpec,
    SoftmaxVariantSpec,
    SteeringSpec,
)

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


T = TypeVar("T")


def _derived(value: T | None) -> T:
    """A value ``spec.load`` derives for its variant (never None in a loaded spec)."""
    if value is None:
        raise ValueError("a norm variant's own keys are filled in by spec.load; build from a loaded spec")
    return value


def _norm(spec: NormSpec, dim: int) -> nn.Module:
    """LayerNorm / RMSNorm, or one of ReaLLM-Forge's variants (``model/forge_norms.py``)."""
    if spec.type == "prmsnorm":
        return PartialRMSNorm(dim, pct=_derived(spec.prmsnorm_pct), gain=spec.elementwise_affine)
    if spec.type == "krmsnorm":
        return KRMSNorm(dim, num=_derived(spec.krmsnorm_num), select=_derived(spec.krmsnorm_select), gain=spec.elementwise_affine)
    if spec.type == "hyperspherenorm":
        return HypersphereNorm(radius=_derived(spec.hypersphere_radius))
    if spec.type == "dyt":
        return DyT(
            dim, act=make_activation(_derived(spec.dyt_activation)), alpha_init=_derived(spec.dyt_alpha_init),
            alpha=bool(spec.dyt_alpha), beta=bool(spec.dyt_beta), gamma=bool(spec.dyt_gamma),
        )  # fmt: skip
    if spec.type == "identity":
        return nn.Identity()
    return make_norm(spec.type, dim, eps=spec.eps, affine=spec.elementwise_affine, unit_offset=spec.unit_offset)


# which slots of ``Residual`` (pre, post, after) each norm placement fills, in both sub-layers
PLACEMENTS = {"pre": ("pre",), "post": ("after",), "sandwich": ("pre", "post"), "output": ("post",)}


def _residual(lay: LayerSpec) -> Residual:
    norms = {slot: _norm(lay.layer_norm, lay.hidden_dim) for slot in PLACEMENTS[lay.norm_placement]}
    return Residual(**norms, dropout=lay.residual_dropout, scale=lay.residual_scale)


def _activation(ffn: FFNSpec) -> nn.Module:
    """The FFN's activation module (the gate's, when gated): a function or a module with learned parameters."""
    k = ffn.activation_knots
    knots = (k.num, k.left_bound, k.right_bound) if k is not None else (0, 0.0, 0.0)
    return make_activation(ffn.activation, gelu_shift=ffn.gelu_shift or 0.0, knots=knots)


def _mlp(ffn: FFNSpec, dim: int, hidden: int) -> nn.Module:
    """Plain, gated (any gate activation) or dual-path MLP, with Forge's activation offsets and summed down projections."""
    act = _activation(ffn)
    if ffn.variant == "dual_path":
        return DualPathMLP(dim, hidden, act=act, bias=ffn.bias, dropout=ffn.dropout, x_offset=ffn.x_offset, y_offset=ffn.y_offset)
    if ffn.x_offset is not None or ffn.y_offset is not None:
        act = Offsets(act, x_offset=ffn.x_offset, y_offset=ffn.y_offset)
    mlp_cls = GatedMLP if ffn.use_gated_activation else MLP
    return mlp_cls(dim, hidden, activation=act, bias=ffn.bias, dropout=ffn.dropout, down_blocks=ffn.down_projections)


def _ffn(lay: LayerSpec) -> nn.Module:
    """The KAN FFN (``ffn.kan``), the dense MLP, or on MoE layers (``ffn.moe`` set) stacked experts of the same kind plus an optional shared MLP."""
    ffn, d, moe = lay.ffn, lay.hidden_dim, lay.ffn.moe
    if (kan := ffn.kan) is not None:
        return KANFFN(
            d, middle=kan.middle_layers, order=kan.poly_order, activation=kan.base_activation, eps=kan.norm_eps, dropout=ffn.dropout
        )
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
    scale = 1.0 / math.sqrt(att.head_dim + att.mla_dims().rope_head_dim)
    if scaling is not None and scaling.type == "yarn" and scaling.mscale_all_dim:
        scale *= yarn_mscale(scaling.factor, scaling.mscale_all_dim) ** 2
    return scale


def _mla(lay: LayerSpec, rotary: Rotary | None, scaling: RopeScalingSpec | None) -> MultiLatentAttention:
    """Multi-latent attention (``mechanism: mla``); its latent norms are RMSNorms with the layer's eps (DeepSeek-V2)."""
    att, mla, d, eps = lay.attention, lay.attention.mla_dims(), lay.hidden_dim, lay.layer_norm.eps
    q_out = att.num_heads * (att.head_dim + mla.rope_head_dim)
    query: nn.Linear | LowRankQuery
    if mla.rank is None:
        query = nn.Linear(d, q_out, bias=att.qkv_bias)
    else:
        query = LowRankQuery(d, q_out, rank=mla.rank, norm=RMSNorm(mla.rank, eps=eps, affine=True), bias=att.qkv_bias)
    return MultiLatentAttention(
        d, num_heads=att.num_heads, head_dim=att.head_dim, rope_dim=mla.rope_head_dim, v_head_dim=mla.v_head_dim,
        latent_dim=mla.latent_dim, query_proj=query, kv_norm=RMSNorm(mla.latent_dim, eps=eps, affine=True),
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


def _softmax(s: SoftmaxVariantSpec | None, num_heads: int) -> SoftmaxVariant | None:
    return make_softmax(s.type, num_heads, **s.options()) if s is not None else None


def _fire(f: FireSpec | None, num_heads: int) -> FIRE | None:
    if f is None:
        return None
    return FIRE(
        num_heads, width=f.mlp_width, hidden_layers=f.num_hidden_layers, outermost_relu=f.outermost_relu, init_c=f.init_c,
        init_L=f.init_L, log_bias=f.log_bias,
    )  # fmt: skip


def _attention(att: AttentionSpec, d: int, rotary: Rotary | None, *, interleaved: bool) -> SelfAttention:
    """Standard attention; FIRE (unless shared: the decoder holds that one) is the layer's own."""
    return SelfAttention(
        d, num_heads=att.num_heads, num_kv_heads=att.num_kv_heads, head_dim=att.head_dim,
        qkv_bias=att.qkv_bias, out_bias=att.out_bias, dropout=att.dropout, rotary=rotary,
        q_norm=_qk_norm(att.qk_norm, att.num_heads, att.head_dim),
        k_norm=_qk_norm(att.qk_norm, att.num_kv_heads, att.head_dim),
        window_size=att.window_size or 0, causal=att.causal, softcap=att.logit_softcap or 0.0,
        scale=att.softmax_scale if att.softmax_scale is not None else 1.0 / math.sqrt(att.head_dim), clip=att.qkv_clip, sinks=att.sinks,
        rope_interleaved=interleaved and rotary is not None, softmax=_softmax(att.softmax, att.num_heads),
        fire=_fire(att.fire, att.num_heads) if att.fire is not None and not att.fire.shared else None,
        kernel=ops.complex_attention if att.mechanism == "complex" else ops.attention,
    )  # fmt: skip


def _mixer(kind: str, lay: LayerSpec, rotary: Rotary | None, scaling: RopeScalingSpec | None, *, interleaved: bool = False) -> nn.Module:
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
    return _mla(lay, rotary, scaling) if att.mechanism == "mla" else _attention(att, d, rotary, interleaved=interleaved)


def _block(
    lay: LayerSpec, kind: str, rotary: Rotary | None, scaling: RopeScalingSpec | None, *, interleaved: bool = False
) -> Block | ParallelBlock:
    """A sequential block with the spec's norm placement, or a parallel block (one shared norm, or two)."""
    d = lay.hidden_dim
    attn = _mixer(kind, lay, rotary, scaling, interleaved=interleaved)
    if lay.parallel:
        ffn_norm = _norm(lay.layer_norm, d) if lay.parallel_norms == "separate" else None
        return ParallelBlock(attn=attn, ffn=_ffn(lay), norm=_norm(lay.layer_norm, d), ffn_norm=ffn_norm, dropout=lay.residual_dropout,
            scale=lay.residual_scale,
        )  # fmt: skip
    ffn = _ffn(lay)
    if lay.linear is not None:
        for part, module in (("attention", attn), ("ffn", ffn)):
            if part in lay.linear.apply_to:
                swap_linears(module, _linear_variant(lay.linear))
    return Block(attn=attn, ffn=ffn, attn_norms=_residual(lay), ffn_norms=_residual(lay))


def _linear_variant(lin: LinearVariantSpec) -> Callable[[nn.Linear], nn.Linear]:
    """A factory turning a plain Linear into Forge's quantized or BitNet b1.58 one of the same shape."""

    def make(old: nn.Linear) -> nn.Linear:
        bias = old.bias is not None
        if lin.type == "bitlinear_1p58":
            return BitLinear158(old.in_features, old.out_features, bias=bias)
        return QuantizedLinear(old.in_features, old.out_features, bias=bias, method=lin.method, bits=lin.bits)

    return make


def _embedding_ends(spec: ModelSpec) -> dict[str, nn.Module | None]:
    """Token-embedding scale, the factorized-embedding projections (e → d after the lookup, d → e before
    the LM head; bias-free), the embedding norm and the final logit softcap; None where the spec asks for none."""
    emb, d = spec.embedding, spec.layer.hidden_dim
    factorized = emb.embedding_dim != d
    embed_proj = nn.Linear(emb.embedding_dim, d, bias=False) if factorized else None
    head_proj: nn.Module | None = nn.Linear(d, emb.embedding_dim, bias=False) if factorized else None
    if embed_proj is not None and emb.tie_projections:
        head_proj = TransposedProjection(embed_proj)
    scale: nn.Module | None = Scale(emb.scale) if emb.scale not in (None, 1.0) else None
    if emb.learned_scale:
        scale = LearnedScale(emb.scale if emb.scale is not None else math.sqrt(d))
    return {
        "embed_scale": scale,
        "embed_proj": embed_proj,
        "embed_norm": _norm(spec.embedding_layer_norm, d) if spec.embedding_layer_norm is not None else None,
        "head_proj": head_proj,
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
    scaling, dim = rope_scaling(pe.rope_scaling), pe.rotary_dim
    if dim is None:  # spec.load derives it for every RoPE spec
        raise ValueError("embedding.positional_encoding.rotary_dim: not derived for a RoPE spec")
    if scaling is not None and scaling.type == "dynamic":
        return DynamicNTKRotary(dim, theta=pe.rope_theta, factor=scaling.factor, original_max=scaling.original_max_position_embeddings)
    if scaling is not None and scaling.type == "longrope":
        return LongRopeRotary(emb.max_position_embeddings, dim, theta=pe.rope_theta, scaling=scaling)
    soap = pe.soap_num_angles if pe.rope_variant == "soap" else None
    return RotaryCache(emb.max_position_embeddings, dim, theta=pe.rope_theta, scaling=scaling, soap_angles=soap)


def _absolute_positions(emb: EmbeddingSpec, dim: int) -> LearnedPositions | SinusoidalPositions | None:
    """What is added to the token embeddings: learned (optionally quantized) or sinusoidal tables; nothing
    for rope, alibi and none."""
    kind = emb.positional_encoding.type
    if kind == "learned":
        positions = LearnedPositions(emb.max_position_embeddings, dim)
        if (q := emb.quantize_wpe) is not None:
            positions.embedding = QuantizedEmbedding(emb.max_position_embeddings, dim, method=q.method, bits=q.bits)
        return positions
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
    if (q := emb.quantize_wte) is not None:  # the LM head, tied or not, reads the raw table (Forge)
        embed = QuantizedEmbedding(emb.vocab_size, emb.embedding_dim, method=q.method, bits=q.bits, padding_idx=emb.padding_idx)
    lm_head = nn.Linear(emb.embedding_dim, emb.vocab_size, bias=spec.lm_head_bias)
    if spec.tie_word_embeddings:
        lm_head.weight = embed.weight
    att = spec.layer.attention
    shared_fire = _fire(att.fire, att.num_heads) if att.fire is not None and att.fire.shared else None
    interleaved = emb.positional_encoding.rope_layout == "interleaved"
    return DecoderLM(
        embed=embed,
        positions=_absolute_positions(emb, d),
        alibi=AlibiSlopes(spec.layer.attention.num_heads) if kind == "alibi" else None,
        blocks=[
            _block(
                layer,
                kind,
                tables[layer.attention.rope_theta, layer.attention.rope_unscaled],
                emb.positional_encoding.rope_scaling,
                interleaved=interleaved,
            )  # fmt: skip
            for layer, kind in zip(spec.layer_specs(), spec.mixers(), strict=True)
        ],
        final_norm=_norm(spec.final_layer_norm, d) if spec.final_layer_norm is not None else None,
        lm_head=lm_head,
        dropout=emb.dropout,
        steering=_steering(spec.steering, d),
        fire=shared_fire,
        **_embedding_ends(spec),
    )


def _steering(st: SteeringSpec | None, d: int) -> dict[str, tuple[int, nn.Module]]:
    """ReaLLM-Forge's manual steering vector and learned steering vectors, with the slot each is added at."""
    out: dict[str, tuple[int, nn.Module]] = {}
    if st is None:
        return out
    if (lsv := st.lsv) is not None:
        module: nn.Module
        if lsv.variant == "one_hot":
            module = OneHotLSV(lsv.num_vectors, d, index=lsv.index or 0, scale=lsv.scale or 1.0, mixture=lsv.mixture)
        elif lsv.variant == "one_hot_mlp":
            module = OneHotMLPLSV(lsv.num_vectors, d, index=lsv.index or 0, mixture=lsv.mixture)
        else:
            module = RoutedLSV(lsv.variant, lsv.num_vectors, d)
        out["lsv"] = (lsv.layer, module)
    if (vec := st.vector) is not None:
        out["vector"] = (vec.layer, SteeringVector(vec.file, d, scale=vec.scale))
    return out


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
        if callable(reset := getattr(module, "reset_buffers", None)):
            reset()
    init = spec.initialization
    init_weights(
        model, scheme=init.type, seed=seed, num_layers=spec.num_layers, gain=init.gain, std=init.std,
        residual_scale=init.gpt2_residual_scale, padding_idx=spec.embedding.padding_idx,
    )  # fmt: skip
    return model.to(DTYPES[dtype]).eval()
