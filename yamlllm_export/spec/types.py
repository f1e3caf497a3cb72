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
    rope_layout: str  # half | interleaved (pairs (2i, 2i+1): ReaLLM-Forge, GPT-J)
    rope_variant: str  # rope | soap (one frequency 2π/soap_num_angles)
    soap_num_angles: int | None  # derived 512 for soap; None otherwise
    rope_scaling: RopeScalingSpec | None


@dataclass(frozen=True)
class WeightQuantSpec:
    method: str  # symmetric | affine | ternary (per tensor, FORGE.md §8)
    bits: int


@dataclass(frozen=True)
class LinearVariantSpec:
    type: str  # quantized | bitlinear_1p58
    method: str  # quantized: symmetric | affine | ternary
    bits: int
    apply_to: tuple[str, ...]  # attention | ffn


@dataclass(frozen=True)
class EmbeddingSpec:
    vocab_size: int
    max_position_embeddings: int
    embedding_dim: int  # != layer.hidden_dim: factorized embeddings
    padding_idx: int | None
    dropout: float
    scale: float | None  # multiply token embeddings ('sqrt_hidden' is resolved to a number); None = 1
    positional_encoding: PositionalEncodingSpec
    learned_scale: bool = False  # Forge's use_embedding_scale: a learned scalar starting at ``scale`` (or sqrt(d))
    tie_projections: bool = False  # factorized: the head-side projection is the transpose of the up-projection
    quantize_wte: WeightQuantSpec | None = None
    quantize_wpe: WeightQuantSpec | None = None


@dataclass(frozen=True)
class QKNormSpec:
    type: str  # rmsnorm | layernorm
    eps: float
    elementwise_affine: bool
    scope: str  # head | full


@dataclass(frozen=True)
class SoftmaxVariantSpec:
    """A ReaLLM-Forge attention softmax variant; options the variant does not read are None (``spec/forge.py``)."""

    type: str
    base: float | None
    beta_init: float | None
    gamma_init: float | None
    clamp: float | None
    saturation: float | None
    x_intercept: float | None
    y_intercept: float | None
    power: float | None
    divisor: float | None
    use_xmax: bool | None
    xmax_guess: float | None
    div_by_sum: bool | None
    obo: float | None
    obo_per_head: bool | None
    temperature: float | None
    num_knots: int | None
    x_min: float | None
    x_max: float | None
    density: str | None
    mode: str | None
    init_activation: str | None
    learned_divisor: bool | None
    learned_divisor_init: float | None
    div_by_seq_len: bool  # always false here (rules.py refuses true)

    def options(self) -> dict[str, Any]:
        """The options this variant reads, by name."""
        from yamlllm_export.spec.forge import SOFTMAX_OPTIONS

        return {k: getattr(self, k) for k in SOFTMAX_OPTIONS[self.type]}


@dataclass(frozen=True)
class FireSpec:
    mlp_width: int
    num_hidden_layers: int
    outermost_relu: bool
    init_c: float
    init_L: float
    log_bias: float
    shared: bool  # one module (one set of weights) for every layer


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
    softmax: SoftmaxVariantSpec | None  # a ReaLLM-Forge variant in place of the softmax; None: the softmax
    fire: FireSpec | None  # ReaLLM-Forge's FIRE bias; None: none
    qk_norm: QKNormSpec | None
    mla_latent_dim: int | None
    mla_rank: int | None
    mla_rope_head_dim: int | None  # derived for MLA: head_dim // 2
    mla_v_head_dim: int | None  # derived for MLA: head_dim

    def mla_dims(self) -> MLADims:
        """The multi-latent attention sizes, all set: ``spec.load`` derives the optional ones for ``mechanism: mla``."""
        latent, rope, value = self.mla_latent_dim, self.mla_rope_head_dim, self.mla_v_head_dim
        if self.mechanism != "mla" or latent is None or rope is None or value is None:
            raise ValueError(f"mla_dims: mechanism {self.mechanism!r} has no complete MLA sizes")  # spec.load guarantees them for mla
        return MLADims(latent_dim=latent, rank=self.mla_rank, rope_head_dim=rope, v_head_dim=value)


@dataclass(frozen=True)
class MLADims:
    """Multi-latent attention's sizes (DeepSeek-V2): the cached latent, the query's low rank (None: full-rank query), the
    shared rotated key's head size and the value head size."""

    latent_dim: int
    rank: int | None
    rope_head_dim: int
    v_head_dim: int


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
class ActivationKnotsSpec:
    num: int  # learned knots (x_vals, y_vals)
    left_bound: float  # the knots start between the bounds
    right_bound: float  # piecewise / pfla: also R, where the last segment meets y = x


@dataclass(frozen=True)
class KANSpec:
    """ReaLLM-Forge's KAN FFN (KAL-Net): layers d → middle_layers… → d, each W_base σ(x) + W_poly·P(x̂),
    then σ(LayerNorm); x̂ is x normalised to [-1, 1] by its min/max over the window (full-window only)."""

    middle_layers: tuple[int, ...]
    poly_order: int  # P: Legendre P_0 … P_P
    base_activation: str
    norm_eps: float


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
    variant: str = "mlp"  # mlp | dual_path (ReaLLM-Forge)
    down_projections: int = 1  # Forge's mlp_down_projs: k blocks of hidden_dim summed
    x_offset: float | None = None  # act(u − x_offset)
    y_offset: float | None = None  # act(·) − y_offset
    gelu_shift: float | None = None  # derived 0 for gelu_shifted
    activation_knots: ActivationKnotsSpec | None = None  # derived for the knot activations
    kan: KANSpec | None = None  # the KAN FFN in place of the MLP (ReaLLM-Forge)


@dataclass(frozen=True)
class NormSpec:
    type: str  # layernorm | rmsnorm | prmsnorm | krmsnorm | hyperspherenorm | dyt | identity
    eps: float  # rmsnorm may have 0 (Forge's RMSNorm); unused by the Forge variants
    elementwise_affine: bool
    unit_offset: bool  # scale by (1 + w), w starting at 0 (Gemma)
    # ReaLLM-Forge's variants: each derived for its own type, None for the others
    prmsnorm_pct: float | None = None
    krmsnorm_num: int | None = None
    krmsnorm_select: str | None = None  # first | last
    krmsnorm_quantize: str | None = None  # none (float16 rounding)
    hypersphere_radius: float | None = None
    dyt_activation: str | None = None
    dyt_alpha_init: float | None = None
    dyt_alpha: bool | None = None
    dyt_beta: bool | None = None
    dyt_gamma: bool | None = None


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
    linear: LinearVariantSpec | None = None  # ReaLLM-Forge's quantized / BitNet linears


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
class SteeringVectorSpec:
    file: str  # a .npy of hidden_dim numbers (relative paths resolved against the spec file by ``load_spec``)
    layer: int  # after block k, 1-based
    scale: float


@dataclass(frozen=True)
class LSVSpec:
    variant: str  # one_hot | one_hot_mlp | ohmg | ohmt | ohmm | ohma | mol
    num_vectors: int
    layer: int  # 0: after the embeddings; k: after block k
    index: int | None  # one_hot / one_hot_mlp (derived 0); None for the routed variants
    scale: float | None  # one_hot (derived 1); None otherwise
    mixture: tuple[float, ...] | None


@dataclass(frozen=True)
class SteeringSpec:
    vector: SteeringVectorSpec | None
    lsv: LSVSpec | None


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
    steering: SteeringSpec | None = None  # ReaLLM-Forge's steering vectors
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
        if self.steering is not None and self.steering.lsv is not None and self.steering.lsv.mixture is not None:
            d["steering"]["lsv"]["mixture"] = list(self.steering.lsv.mixture)
        if self.layer.linear is not None:
            d["layer"]["linear"]["apply_to"] = list(self.layer.linear.apply_to)
        if self.layer.ffn.kan is not None:
            d["layer"]["ffn"]["kan"]["middle_layers"] = list(self.layer.ffn.kan.middle_layers)
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
