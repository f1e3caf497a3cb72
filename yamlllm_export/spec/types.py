"""The frozen, typed spec tree. Built only by ``spec.load``; every default and derived value is filled in."""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RopeScalingSpec:
    type: str  # linear | dynamic | llama3 | yarn | longrope
    factor: float
    original_max_position_embeddings: int  # derived when absent: max_position_embeddings // factor
    low_freq_factor: float  # llama3
    high_freq_factor: float  # llama3
    beta_fast: float  # yarn
    beta_slow: float  # yarn
    attention_factor: float | None  # yarn: None -> 0.1·ln(factor) + 1 (or the mscale ratio); longrope: sqrt(1 + ln f / ln L_orig)
    mscale: float | None  # yarn (DeepSeek): numerator of the cos/sin scale
    mscale_all_dim: float | None  # yarn (DeepSeek): its denominator; MLA's softmax scale × m(mscale_all_dim)²
    truncate: bool  # yarn: floor / ceil the ramp's dimension bounds (HF's default; GPT-OSS: false)
    short_factor: tuple[float, ...] | None  # longrope: rotary_dim/2 rescale factors while the length <= original
    long_factor: tuple[float, ...] | None  # longrope: rotary_dim/2 rescale factors past it


@dataclass(frozen=True)
class PositionalEncodingSpec:
    type: str  # learned | rope | alibi | sinusoidal | none
    rope_theta: float
    partial_rotary_factor: float
    rotary_dim: int | None  # derived for RoPE (even, <= the rotated head size); None otherwise
    rope_scaling: RopeScalingSpec | None


@dataclass(frozen=True)
class EmbeddingSpec:
    vocab_size: int
    max_position_embeddings: int
    embedding_dim: int  # != layer.hidden_dim: factorized embeddings
    padding_idx: int | None
    dropout: float
    scale: float | None  # multiply token embeddings ('sqrt_hidden' is resolved to a number); None = 1
    positional_encoding: PositionalEncodingSpec


@dataclass(frozen=True)
class QKNormSpec:
    type: str  # rmsnorm | layernorm
    eps: float
    elementwise_affine: bool
    scope: str  # head | full


@dataclass(frozen=True)
class AttentionSpec:
    num_heads: int
    num_kv_heads: int
    head_dim: int  # for MLA: the non-rotary query/key head size
    bias: bool
    qkv_bias: bool  # derived: bias when unset
    out_bias: bool  # derived: bias when unset
    dropout: float
    mechanism: str  # standard | alibi | mla | complex
    causal: bool
    window_size: int | None
    logit_softcap: float | None
    nope: bool  # this layer's q and k are not rotated (RoPE-free layers among RoPE ones)
    rope_theta: float | None  # this layer's RoPE base; None: the embedding's
    rope_unscaled: bool  # this layer's RoPE ignores the embedding's rope_scaling
    softmax_scale: float | None  # None: 1/sqrt(head_dim)
    qkv_clip: float | None  # clamp q, k, v projections to [-c, c] (OLMo)
    sinks: bool  # a learned per-head logit in the softmax's denominator (GPT-OSS)
    qk_norm: QKNormSpec | None
    mla_latent_dim: int | None
    mla_rank: int | None
    mla_rope_head_dim: int | None  # derived for MLA: head_dim // 2
    mla_v_head_dim: int | None  # derived for MLA: head_dim


@dataclass(frozen=True)
class ClampedSwiGLUSpec:
    limit: float  # gate ≤ limit, up in [-limit, limit]
    alpha: float  # g · σ(alpha · g)
    beta: float  # (up + beta)


@dataclass(frozen=True)
class MoESpec:
    num_experts: int
    top_k: int
    frequency: int
    intermediate_size: int  # derived: ffn.intermediate_size when unset
    shared_expert_intermediate_size: int | None
    normalize_top_k: bool
    first_dense_layers: int  # layers 0 .. first_dense_layers-1 keep the dense FFN
    dense_layers: tuple[int, ...]  # these layers keep the dense FFN too, wherever they are
    num_groups: int  # group-limited routing (DeepSeek-V2): 1 = none
    top_groups: int | None  # groups a token's experts may come from; None = all
    routing: str  # softmax | sparsemixer (Phi-3.5-MoE)
    jitter_eps: float | None  # sparsemixer's threshold; derived 0.01 for it, None otherwise
    router_bias: bool
    clamped_swiglu: ClampedSwiGLUSpec | None  # GPT-OSS's experts; None = plain SwiGLU


@dataclass(frozen=True)
class FFNSpec:
    intermediate_size: int  # derived when absent (expansion_factor / LLaMA rounding)
    expansion_factor: float | None
    multiple_of: int | None
    ffn_dim_multiplier: float | None
    activation: str
    use_gated_activation: bool
    bias: bool
    dropout: float
    moe: MoESpec | None  # in ``layer_specs()``: None on the layers that keep the dense FFN


@dataclass(frozen=True)
class NormSpec:
    type: str  # layernorm | rmsnorm
    eps: float
    elementwise_affine: bool
    unit_offset: bool  # scale by (1 + w), w starting at 0 (Gemma)


@dataclass(frozen=True)
class ShortConvSpec:
    L_cache: int  # kernel size; the conv state holds the last L_cache - 1 inputs
    bias: bool  # in_proj, conv and out_proj biases (LFM2's conv_bias)


@dataclass(frozen=True)
class LinearAttentionSpec:
    num_heads: int  # derived: layer.attention.num_heads when unset


@dataclass(frozen=True)
class InfiniteAttentionSpec:
    num_heads: int  # derived: layer.attention.num_heads when unset
    num_kv_heads: int  # derived: num_heads
    qk_head_dim: int  # derived: layer.attention.head_dim
    v_head_dim: int  # derived: qk_head_dim
    bias: bool  # derived: layer.attention.bias


@dataclass(frozen=True)
class LayerSpec:
    hidden_dim: int
    attention: AttentionSpec
    short_conv: ShortConvSpec | None  # settings of the short_conv layers (layer_types); derived when a layer is one
    linear_attention: LinearAttentionSpec | None  # settings of the linear_attention layers; derived when a layer is one
    infinite_attention: InfiniteAttentionSpec | None  # settings of the infinite_attention layers; derived when a layer is one
    ffn: FFNSpec
    layer_norm: NormSpec
    norm_placement: str  # pre | post | sandwich | output
    parallel: bool  # PaLM: x + Attn(N(x)) + FFN(N(x))
    parallel_norms: str  # shared | separate (GPT-NeoX, Falcon: x + Attn(N1(x)) + FFN(N2(x)))
    residual_dropout: float
    residual_scale: float  # x + c·F(x)


@dataclass(frozen=True)
class OverrideAttentionSpec:
    window_size: int | None = None
    logit_softcap: float | None = None
    nope: bool = False
    rope_theta: float | None = None
    rope_unscaled: bool = False
    sinks: bool = False
    fields: tuple[str, ...] = ()  # which of the above the entry sets (None is a value: "no window here")


@dataclass(frozen=True)
class LayerOverrideSpec:
    layers: tuple[int, ...]
    attention: OverrideAttentionSpec


@dataclass(frozen=True)
class InitSpec:
    type: str
    gain: float
    std: float
    gpt2_residual_scale: float | None


@dataclass(frozen=True)
class TokensSpec:
    """Special token ids; generation reads them, the model does not."""

    bos_token_id: int | None
    eos_token_id: tuple[int, ...]  # normalized: an id or null in the YAML becomes a tuple; () = no stop token
    pad_token_id: int | None


@dataclass(frozen=True)
class ModelSpec:
    name: str
    embedding: EmbeddingSpec
    num_layers: int
    layer: LayerSpec
    embedding_layer_norm: NormSpec | None  # over the embeddings before the first layer (BLOOM)
    final_layer_norm: NormSpec | None
    tie_word_embeddings: bool
    lm_head_bias: bool
    final_logit_softcap: float | None
    final_logit_scale: float | None  # logits · c before the soft-cap; None = 1
    layer_overrides: tuple[LayerOverrideSpec, ...]
    initialization: InitSpec
    tokens: TokensSpec
    layer_types: tuple[str, ...] | None = None  # one mixer kind per layer (resolved from the cycle); None: all attention

    def mixers(self) -> tuple[str, ...]:
        """Each layer's token mixer: attention | identity | short_conv | linear_attention | infinite_attention (``layer_types`` resolved)."""
        return self.layer_types if self.layer_types is not None else ("attention",) * self.num_layers

    def to_dict(self) -> dict[str, Any]:
        """The normalized spec as plain data (what ``model.yaml`` holds); loads back to an equal spec."""
        d = dataclasses.asdict(self)
        d["layer_overrides"] = [  # an entry that sets no attention field has no attention key (the schema wants one)
            {
                "layers": list(o["layers"]),
                **({"attention": {k: o["attention"][k] for k in fields}} if (fields := o["attention"]["fields"]) else {}),
            }
            for o in d["layer_overrides"]
        ]
        d["tokens"]["eos_token_id"] = list(self.tokens.eos_token_id)  # YAML has no tuples
        for kind in (
            "short_conv",
            "linear_attention",
            "infinite_attention",
        ):  # unused kinds' blocks stay out, as does an all-attention list,
            if d["layer"][kind] is None:  # so the model.yaml of an attention-only spec reads as before
                del d["layer"][kind]
        if self.layer_types is None:
            del d["layer_types"]
        else:
            d["layer_types"] = list(self.layer_types)
        if (scaling := d["embedding"]["positional_encoding"]["rope_scaling"]) is not None:
            for key in ("short_factor", "long_factor"):  # longrope's lists
                scaling[key] = None if scaling[key] is None else list(scaling[key])
        if self.layer.ffn.moe is not None:
            d["layer"]["ffn"]["moe"]["dense_layers"] = list(self.layer.ffn.moe.dense_layers)
        return d

    def layer_specs(self) -> tuple[LayerSpec, ...]:
        """The resolved spec of every layer: ``layer`` with ``layer_overrides`` applied (later entries win),
        and ``ffn.moe`` kept only on the layers its ``frequency``, ``first_dense_layers`` and ``dense_layers`` make MoE."""
        return _layer_specs(self)

    def parameter_count(self) -> int:
        """Parameters of the PyTorch model ``build_model`` makes from this spec, without building it."""
        from yamlllm_export.spec.sizes import parameter_count

        return parameter_count(self)


@functools.cache
def _layer_specs(spec: ModelSpec) -> tuple[LayerSpec, ...]:
    out = []
    for i in range(spec.num_layers):
        layer = spec.layer
        moe = layer.ffn.moe
        if moe is not None and (i < moe.first_dense_layers or i in moe.dense_layers or (i + 1) % moe.frequency):
            layer = dataclasses.replace(layer, ffn=dataclasses.replace(layer.ffn, moe=None))
        for o in spec.layer_overrides:
            if i in o.layers:
                changes = {f: getattr(o.attention, f) for f in o.attention.fields}
                layer = dataclasses.replace(layer, attention=dataclasses.replace(layer.attention, **changes))
        out.append(layer)
    return tuple(out)
