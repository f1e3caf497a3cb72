"""Every compatibility rule of the dialect, each with the message a user sees (key path first)."""

from __future__ import annotations

import pytest

from tests.feature_cases import case
from yamlllm_export import SpecError, load_spec

MLA = ("layer.attention.mechanism", "mla", "layer.attention.num_kv_heads", ..., "layer.attention.mla_latent_dim", 16)
RULES = {
    "mla-needs-latent": (
        case("layer.attention.mechanism", "mla", "layer.attention.num_kv_heads", ...),
        "layer.attention.mla_latent_dim: required",
    ),
    "mla-refuses-alibi": (
        case(*MLA, "embedding.positional_encoding", {"type": "alibi"}),
        "embedding.positional_encoding.type: 'alibi' with attention.mechanism 'mla'; MLA cannot take ALiBi",
    ),
    "mla-refuses-gqa": (case(*MLA, "layer.attention.num_kv_heads", 2), "layer.attention.num_kv_heads: MLA derives every head"),
    "mla-refuses-qk-norm": (case(*MLA, "layer.attention.qk_norm", {}), "layer.attention.qk_norm: not available with mechanism 'mla'"),
    "mla-rope-dim-without-rope": (
        case(*MLA, "embedding.positional_encoding", {"type": "learned"}, "layer.attention.mla_rope_head_dim", 8),
        "layer.attention.mla_rope_head_dim: is set but positional_encoding.type is 'learned'",
    ),
    "mla-rope-dim-zero-with-rope": (
        case(*MLA, "layer.attention.mla_rope_head_dim", 0),
        "layer.attention.mla_rope_head_dim: 0 with positional_encoding.type 'rope' leaves MLA nothing to rotate",
    ),
    "alibi-max-positions-unused": (
        case("layer.attention.alibi_max_positions", 2048),
        "layer.attention.alibi_max_positions: has no effect: the ALiBi bias is computed from the mask for any length",
    ),
    "flash-attention-flag-unused": (
        case("layer.attention.use_flash_attention", True),
        "layer.attention.use_flash_attention: has no effect: the attention kernel follows build --target",
    ),
    "nope-without-rope": (
        case("embedding.positional_encoding", {"type": "learned"}, "layer_overrides", [{"layers": [1], "attention": {"nope": True}}]),
        "layer_overrides[0].attention.nope: needs embedding.positional_encoding.type rope (it is learned)",
    ),
    "nope-everywhere-with-alibi": (
        case("embedding.positional_encoding", {"type": "alibi"}, "layer.attention.mechanism", "alibi", "layer.attention.nope", True),
        "layer.attention.nope: needs embedding.positional_encoding.type rope (it is alibi)",
    ),
    "nope-with-mla": (
        case(*MLA, "layer_overrides", [{"layers": [0], "attention": {"nope": True}}]),
        "layer_overrides[0].attention.nope: MLA's decoupled rotary part cannot be changed per layer",
    ),
    "softmax-scale-with-mla": (
        case(*MLA, "layer.attention.softmax_scale", 0.1),
        "layer.attention.softmax_scale: MLA derives its scale from the head sizes and YaRN's mscale_all_dim",
    ),
    "qkv-clip-with-mla": (case(*MLA, "layer.attention.qkv_clip", 1.0), "layer.attention.qkv_clip: MLA has no per-head q/k/v projections"),
    "sinks-with-mla": (case(*MLA, "layer.attention.sinks", True), "layer.attention.sinks: not available with mechanism 'mla'"),
    "override-sinks-with-mla": (
        case(*MLA, "layer_overrides", [{"layers": [1], "attention": {"sinks": True}}]),
        "layer_overrides[0].attention.sinks: not available with mechanism 'mla'",
    ),
    "mla-odd-rope-dim": (case(*MLA, "layer.attention.mla_rope_head_dim", 7), "layer.attention.mla_rope_head_dim: 7 is odd"),
    "mla-keys-without-mla": (case("layer.attention.mla_rank", 8), "layer.attention.mla_rank: is set but attention.mechanism is 'standard'"),
    "gated-needs-flag": (case("layer.ffn.use_gated_activation", False), "layer.ffn.use_gated_activation: 'swiglu' is a gated activation"),
    "dual-path-refuses-gate": (
        case("layer.ffn.activation", "gelu", "layer.ffn.variant", "dual_path"),
        "layer.ffn.use_gated_activation: dual_path has one up projection and no gate",
    ),
    "alibi-needs-mechanism": (case("embedding.positional_encoding", {"type": "alibi"}), "ALiBi requires attention.mechanism: alibi"),
    "mechanism-needs-alibi": (case("layer.attention.mechanism", "alibi"), "ALiBi requires positional_encoding.type: alibi"),
    "window-needs-causal": (
        case("layer.attention.window_size", 8, "layer.attention.causal", False),
        "layer.attention.window_size: a sliding window needs causal attention",
    ),
    "override-window-needs-causal": (
        case("layer.attention.causal", False, "layer_overrides", [{"layers": [1], "attention": {"window_size": 4}}]),
        "layer_overrides[0].attention.window_size: a sliding window needs causal attention",
    ),
    "override-layer-out-of-range": (
        case("layer_overrides", [{"layers": [0, 5], "attention": {"window_size": 4}}]),
        "layer_overrides[0].layers: layer 5 does not exist (num_layers 2)",
    ),
    "rotary-dim-and-factor": (
        case("embedding.positional_encoding.rotary_dim", 4, "embedding.positional_encoding.partial_rotary_factor", 0.5),
        "rotary_dim: set either rotary_dim or partial_rotary_factor",
    ),
    "rotary-dim-too-big": (case("embedding.positional_encoding.rotary_dim", 32), "rotary_dim: 32 must be even and at most head_dim 16"),
    "rotary-dim-odd": (case("embedding.positional_encoding.rotary_dim", 5), "rotary_dim: 5 must be even"),
    "rope-keys-without-rope": (
        case(
            "embedding.positional_encoding.type", "learned", "embedding.positional_encoding.rope_scaling", {"type": "linear", "factor": 2}
        ),
        "embedding.positional_encoding.rope_scaling: applies to RoPE, but positional_encoding.type is 'learned'",
    ),
    "yarn-factor-below-one": (
        case("embedding.positional_encoding.rope_scaling", {"type": "yarn", "factor": 0.5}),
        "rope_scaling.factor: 0.5 is below 1; yarn scaling extends the context",
    ),
    "llama3-freq-order": (
        case("embedding.positional_encoding.rope_scaling", {"type": "llama3", "factor": 8, "low_freq_factor": 4, "high_freq_factor": 1}),
        "rope_scaling.high_freq_factor: 1 must exceed low_freq_factor 4",
    ),
    "yarn-beta-order": (
        case("embedding.positional_encoding.rope_scaling", {"type": "yarn", "factor": 4, "beta_fast": 1, "beta_slow": 2}),
        "rope_scaling.beta_fast: 1 must exceed beta_slow 2",
    ),
    "longrope-needs-long-factor": (
        case("embedding.positional_encoding.rope_scaling", {"type": "longrope", "factor": 3, "short_factor": [1.0] * 8}),
        "embedding.positional_encoding.rope_scaling.long_factor: required with longrope scaling",
    ),
    "longrope-factor-per-rotated-pair": (  # head_dim 16 × partial 0.5 rotates 4 pairs
        case(
            "embedding.positional_encoding.partial_rotary_factor",
            0.5,
            "embedding.positional_encoding.rope_scaling",
            {"type": "longrope", "factor": 3, "short_factor": [1.0] * 4, "long_factor": [2.0] * 8},
        ),
        "embedding.positional_encoding.rope_scaling.long_factor: has 8 factors; rotary_dim 8 needs 4",
    ),  # fmt: skip
    "longrope-factors-on-yarn": (
        case("embedding.positional_encoding.rope_scaling", {"type": "yarn", "factor": 3, "short_factor": [1.0] * 8}),
        "embedding.positional_encoding.rope_scaling.short_factor: applies to longrope scaling, not yarn",
    ),
    "scaling-needs-type": (case("embedding.positional_encoding.rope_scaling", {"factor": 2}), "rope_scaling.type: required key is missing"),
    "ffn-size-twice": (case("layer.ffn.expansion_factor", 3), "layer.ffn.expansion_factor: set either intermediate_size"),
    "multiplier-needs-multiple-of": (
        case("layer.ffn.intermediate_size", ..., "layer.ffn.ffn_dim_multiplier", 1.3),
        "layer.ffn.ffn_dim_multiplier: needs layer.ffn.multiple_of",
    ),
    "moe-top-k": (case("layer.ffn.moe", {"num_experts": 4, "top_k": 5}), "layer.ffn.moe.top_k: 5 exceeds num_experts 4"),
    "moe-frequency": (
        case("layer.ffn.moe", {"num_experts": 4, "top_k": 2, "frequency": 3}),
        "layer.ffn.moe.frequency: 3 exceeds num_layers 2",
    ),
    "moe-all-layers-dense": (
        case("layer.ffn.moe", {"num_experts": 4, "top_k": 2, "first_dense_layers": 2}),
        "layer.ffn.moe.first_dense_layers: 2 dense layers leave no MoE layer (num_layers 2, frequency 1)",
    ),
    "moe-dense-layer-missing": (
        case("layer.ffn.moe", {"num_experts": 4, "top_k": 2, "dense_layers": [0, 2]}),
        "layer.ffn.moe.dense_layers: layer 2 does not exist (num_layers 2)",
    ),
    "moe-listed-layers-all-dense": (
        case("layer.ffn.moe", {"num_experts": 4, "top_k": 2, "frequency": 2, "dense_layers": [1]}),
        "layer.ffn.moe.dense_layers: [1] leave no MoE layer (num_layers 2, frequency 2)",
    ),
    "moe-unequal-groups": (
        case("layer.ffn.moe", {"num_experts": 4, "top_k": 2, "num_groups": 3, "top_groups": 1}),
        "layer.ffn.moe.num_groups: 3 does not divide num_experts 4 into equal groups",
    ),
    "moe-top-groups": (
        case("layer.ffn.moe", {"num_experts": 4, "top_k": 2, "num_groups": 2, "top_groups": 3}),
        "layer.ffn.moe.top_groups: 3 exceeds num_groups 2",
    ),
    "moe-top-k-beyond-groups": (
        case("layer.ffn.moe", {"num_experts": 6, "top_k": 3, "num_groups": 3, "top_groups": 1}),
        "layer.ffn.moe.top_k: 3 exceeds the 2 experts of top_groups 1 groups",
    ),
    "sparsemixer-with-groups": (
        case("layer.ffn.moe", {"num_experts": 4, "top_k": 2, "routing": "sparsemixer", "num_groups": 2, "top_groups": 1}),
        "layer.ffn.moe.num_groups: 2 groups with routing sparsemixer (group-limited routing is softmax's)",
    ),
    "jitter-eps-outside-sparsemixer": (
        case("layer.ffn.moe", {"num_experts": 4, "top_k": 2, "jitter_eps": 0.1}),
        "layer.ffn.moe.jitter_eps: applies to routing sparsemixer, not softmax",
    ),
    "clamped-swiglu-needs-swiglu": (
        case("layer.ffn.activation", "geglu", "layer.ffn.moe", {"num_experts": 4, "top_k": 2, "clamped_swiglu": {"limit": 7.0}}),
        "layer.ffn.moe.clamped_swiglu: clamps a SwiGLU's gate and up projections; layer.ffn.activation is 'geglu', not 'swiglu'",
    ),
    "truncate-outside-yarn": (
        case("embedding.positional_encoding.rope_scaling", {"type": "linear", "factor": 2, "truncate": False}),
        "rope_scaling.truncate: applies to yarn scaling, not linear",
    ),
    "mscale-outside-yarn": (
        case("embedding.positional_encoding.rope_scaling", {"type": "linear", "factor": 2, "mscale_all_dim": 1.0}),
        "rope_scaling.mscale_all_dim: applies to yarn scaling, not linear",
    ),
    "parallel-needs-pre-norm": (
        case("layer.parallel", True, "layer.norm_placement", "sandwich"),
        "layer.parallel: a parallel block is pre-norm",
    ),
    "separate-norms-need-parallel": (
        case("layer.parallel_norms", "separate"),
        "layer.parallel_norms: 'separate' applies to a parallel block; layer.parallel is false",
    ),
    "unit-offset-needs-affine": (
        case("layer.layer_norm.unit_offset", True, "layer.layer_norm.elementwise_affine", False),
        "layer.layer_norm.unit_offset: needs elementwise_affine: true",
    ),
    "complex-odd-head": (
        case("layer.attention.mechanism", "complex", "layer.attention.head_dim", 15),
        "layer.attention.head_dim: 15 is odd",
    ),
    "complex-partial-rotary": (
        case("layer.attention.mechanism", "complex", "embedding.positional_encoding.partial_rotary_factor", 0.5),
        "embedding.positional_encoding.rotary_dim: complex attention rotates every (real, imaginary) pair",
    ),
    "unknown-scale-word": (case("embedding.scale", "sqrt_dim"), "embedding.scale: 'sqrt_dim' is not valid"),
    "bad-placement": (case("layer.norm_placement", "middle"), "layer.norm_placement: 'middle' is not one of pre, post, sandwich, output"),
    "token-outside-vocab": (case("tokens", {"eos_token_id": [2, 256]}), "tokens.eos_token_id: 256 is not below embedding.vocab_size 256"),
    "unknown-token-key": (case("tokens", {"eos_id": 2}), "tokens: unknown key 'eos_id'"),
    # ReaLLM-Forge's per-token options (spec/forge_rules.py)
    "krmsnorm-int8-full-window-only": (
        case("layer.layer_norm", {"type": "krmsnorm", "krmsnorm_quantize": "int8"}),
        "layer.layer_norm.krmsnorm_quantize: int8 quantizes with per-tensor statistics of the whole window",
    ),
    "krmsnorm-int16-final": (
        case("final_layer_norm", {"type": "krmsnorm", "krmsnorm_quantize": "int16"}),
        "final_layer_norm.krmsnorm_quantize: int16 quantizes",
    ),
    "krmsnorm-random": (
        case("layer.layer_norm", {"type": "krmsnorm", "krmsnorm_select": "random"}),
        "layer.layer_norm.krmsnorm_select: random draws a fresh random subset",
    ),
    "norm-key-of-another-type": (
        case("layer.layer_norm", {"type": "rmsnorm", "prmsnorm_pct": 0.5}),
        "layer.layer_norm.prmsnorm_pct: applies to type prmsnorm, not rmsnorm",
    ),
    "layernorm-eps-zero": (
        case("layer.layer_norm", {"type": "layernorm", "eps": 0}),
        "layer.layer_norm.eps: 0 is RMSNorm's no-epsilon form",
    ),
    "unit-offset-forge-norm": (
        case("layer.layer_norm", {"type": "dyt", "unit_offset": True}),
        "layer.layer_norm.unit_offset: applies to layernorm and rmsnorm, not dyt",
    ),
    "glu-activation-refused": (case("layer.ffn.activation", "glu"), "layer.ffn.activation: 'glu' is not one of"),
    "forge-activation-with-moe": (
        case("layer.ffn.activation", "mish", "layer.ffn.moe", {"num_experts": 4, "top_k": 2}),
        "layer.ffn.activation: 'mish' with moe",
    ),
    "offsets-with-moe": (
        case("layer.ffn.x_offset", 0.1, "layer.ffn.moe", {"num_experts": 4, "top_k": 2}),
        "layer.ffn.x_offset: applies to a dense FFN",
    ),
    "down-projections-dual-path": (
        case(
            "layer.ffn.activation",
            "gelu",
            "layer.ffn.use_gated_activation",
            False,
            "layer.ffn.variant",
            "dual_path",
            "layer.ffn.down_projections",
            2,
        ),
        "layer.ffn.down_projections: applies to variant mlp, not dual_path",
    ),
    "gelu-shift-other-activation": (
        case("layer.ffn.gelu_shift", 0.5),
        "layer.ffn.gelu_shift: applies to activation gelu_shifted, not swiglu",
    ),
    "knots-other-activation": (
        case("layer.ffn.activation_knots", {"num": 4, "left_bound": -1, "right_bound": 1}),
        "layer.ffn.activation_knots: applies to the knot activations",
    ),
    "knots-bounds-order": (
        case(
            "layer.ffn.activation",
            "pfla",
            "layer.ffn.use_gated_activation",
            False,
            "layer.ffn.activation_knots",
            {"num": 4, "left_bound": 1, "right_bound": -1},
        ),
        "layer.ffn.activation_knots.left_bound: 1 must be below right_bound -1",
    ),
    "spline-needs-three-knots": (
        case("layer.ffn.activation", "learned_spline", "layer.ffn.activation_knots", {"num": 2, "left_bound": -1, "right_bound": 1}),
        "layer.ffn.activation_knots.num: 2: a cubic spline needs at least 3 knots",
    ),
    # layer_types (docs/recurrent.md)
    "unknown-layer-type": (case("layer_types", ["attention", "mamba"]), "layer_types[1]: 'mamba' is not one of attention, identity"),
    "recurrent-bidirectional": (
        case("layer_types", ["short_conv", "attention"], "layer.attention.causal", False),
        "layer_types: short_conv layers are causal (a recurrent state); layer.attention.causal is false",
    ),
    "linear-heads-do-not-divide": (
        case("layer_types", ["linear_attention"], "layer.linear_attention", {"num_heads": 5}),
        "layer.linear_attention.num_heads: 5 does not divide hidden_dim 64",
    ),
    "short-conv-kernel-1": (case("layer_types", ["short_conv"], "layer.short_conv", {"L_cache": 1}), "layer.short_conv.L_cache: 1 is less"),
    "infinite-groups-do-not-divide": (
        case("layer_types", ["infinite_attention"], "layer.infinite_attention", {"num_heads": 6, "num_kv_heads": 4}),
        "layer.infinite_attention.num_kv_heads: 4 does not divide num_heads 6",
    ),
    "infinite-head-below-rotary-dim": (
        case("layer_types", ["infinite_attention"], "layer.infinite_attention", {"qk_head_dim": 8}),
        "layer.infinite_attention.qk_head_dim: 8 is smaller than the rotary dim 16",
    ),
    "infinite-with-alibi": (
        case(
            "layer_types", ["infinite_attention"], "embedding.positional_encoding", {"type": "alibi"}, "layer.attention.mechanism", "alibi"
        ),
        "layer_types: infinite_attention layers take no ALiBi bias",
    ),
    "overrides-without-attention": (
        case("layer_types", ["short_conv"], "layer_overrides", [{"layers": [1], "attention": {"window_size": 8}}]),
        "layer_overrides: override attention settings, but layer_types has no attention layer",
    ),
}


@pytest.mark.parametrize(("spec", "expected"), list(RULES.values()), ids=list(RULES))
def test_rule_message(spec, expected):
    with pytest.raises(SpecError) as err:
        load_spec(spec)
    assert expected in str(err.value), str(err.value)
    assert "\n" not in str(err.value)


DERIVED = {
    "expansion-factor": (case("layer.ffn.intermediate_size", ..., "layer.ffn.expansion_factor", 3), "layer.ffn.intermediate_size", 192),
    "llama-rounding": (  # LLaMA-7B's own numbers: d 4096, multiple_of 256 -> 11008
        case("layer.hidden_dim", 4096, "embedding.embedding_dim", 4096, "layer.ffn.intermediate_size", ..., "layer.ffn.multiple_of", 256),
        "layer.ffn.intermediate_size",
        11008,
    ),
    "llama-rounding-multiplier": (  # LLaMA-2-70B: d 8192, multiple_of 4096, ffn_dim_multiplier 1.3 -> 28672
        case(
            "layer.hidden_dim",
            8192,
            "embedding.embedding_dim",
            8192,
            "layer.ffn.intermediate_size",
            ...,
            "layer.ffn.multiple_of",
            4096,
            "layer.ffn.ffn_dim_multiplier",
            1.3,
        ),  # fmt: skip
        "layer.ffn.intermediate_size",
        28672,
    ),
    "partial-rotary": (case("embedding.positional_encoding.partial_rotary_factor", 0.5), "embedding.positional_encoding.rotary_dim", 8),
    "full-rotary": (case(), "embedding.positional_encoding.rotary_dim", 16),
    "scaling-original-context": (
        case("embedding.positional_encoding.rope_scaling", {"type": "yarn", "factor": 4}),
        "embedding.positional_encoding.rope_scaling.original_max_position_embeddings",
        24,
    ),
    "sqrt-hidden-scale": (case("embedding.scale", "sqrt_hidden"), "embedding.scale", 8.0),
    "qkv-bias-follows-bias": (case("layer.attention.bias", True), "layer.attention.qkv_bias", True),
    "out-bias-own-value": (case("layer.attention.bias", True, "layer.attention.out_bias", False), "layer.attention.out_bias", False),
    "moe-expert-size": (case("layer.ffn.moe", {"num_experts": 4, "top_k": 2}), "layer.ffn.moe.intermediate_size", 128),
    "sparsemixer-eps": (case("layer.ffn.moe", {"num_experts": 4, "top_k": 2, "routing": "sparsemixer"}), "layer.ffn.moe.jitter_eps", 0.01),
    "softmax-no-eps": (case("layer.ffn.moe", {"num_experts": 4, "top_k": 2}), "layer.ffn.moe.jitter_eps", None),
    "mla-defaults": (case(*MLA), "layer.attention.mla_rope_head_dim", 8),
    "mla-without-rope-has-no-rotary-part": (
        case(*MLA, "embedding.positional_encoding", {"type": "learned"}),
        "layer.attention.mla_rope_head_dim",
        0,
    ),
    "sandwich-final-norm": (case("layer.norm_placement", "sandwich"), "final_layer_norm.type", "rmsnorm"),
    "post-no-final-norm": (case("layer.norm_placement", "post"), "final_layer_norm", None),
    "prmsnorm-pct": (case("layer.layer_norm", {"type": "prmsnorm"}), "layer.layer_norm.prmsnorm_pct", 0.0625),
    "krmsnorm-last": (case("layer.layer_norm", {"type": "krmsnorm"}), "final_layer_norm.krmsnorm_select", "last"),
    "hypersphere-radius": (case("layer.layer_norm", {"type": "hyperspherenorm"}), "layer.layer_norm.hypersphere_radius", 8.0),
    "dyt-tanh": (case("layer.layer_norm", {"type": "dyt"}), "layer.layer_norm.dyt_activation", "tanh"),
    "pfla-knots": (case("layer.ffn.activation", "pfla"), "layer.ffn.activation_knots.num", 50),
    "gelu-shift": (case("layer.ffn.activation", "gelu_shifted"), "layer.ffn.gelu_shift", 0.0),
}


@pytest.mark.parametrize(("spec", "path", "expected"), list(DERIVED.values()), ids=list(DERIVED))
def test_derived_value(spec, path, expected):
    node = load_spec(spec)
    for key in path.split("."):
        node = getattr(node, key) if node is not None else None
    assert node == expected


def test_layer_specs_apply_overrides_and_moe_frequency():
    spec = load_spec(
        case(
            "num_layers",
            4,
            "layer.ffn.moe",
            {"num_experts": 4, "top_k": 2, "frequency": 2},
            "layer_overrides",
            [{"layers": [0, 2], "attention": {"window_size": 8}}, {"layers": [2], "attention": {"logit_softcap": 30}}],
        )  # fmt: skip
    )
    layers = spec.layer_specs()
    assert [lay.attention.window_size for lay in layers] == [8, None, 8, None]
    assert [lay.attention.logit_softcap for lay in layers] == [None, None, 30.0, None]
    assert [lay.ffn.moe is not None for lay in layers] == [False, True, False, True]


def test_normalized_spec_round_trips_with_every_new_block():
    spec = load_spec(
        case(
            "layer.attention.qk_norm",
            {"scope": "full"},
            "layer.ffn.moe",
            {"num_experts": 4, "top_k": 2},
            "embedding.positional_encoding.rope_scaling",
            {"type": "llama3", "factor": 8},
            "layer_overrides",
            [{"layers": [1], "attention": {"window_size": None}}],
            "final_logit_softcap",
            30,
        )  # fmt: skip
    )
    again = load_spec(spec.to_dict())
    assert again == spec and again.layer_overrides[0].attention.fields == ("window_size",)


@pytest.mark.parametrize(
    "spec",
    [
        case("embedding.positional_encoding.partial_rotary_factor", 0.5),
        case("layer.ffn.intermediate_size", ..., "layer.ffn.multiple_of", 32, "layer.ffn.ffn_dim_multiplier", 1.5),
        case("layer.ffn.intermediate_size", ..., "layer.ffn.expansion_factor", 3),
        case(*MLA),
        case(*MLA, "embedding.positional_encoding", {"type": "learned"}),
        case("embedding.scale", "sqrt_hidden", "embedding.positional_encoding.rope_scaling", {"type": "yarn", "factor": 2}),
        case(
            "layer.layer_norm", {"type": "krmsnorm"}, "embedding_layer_norm", {"type": "hyperspherenorm"}, "layer.ffn.activation", "pfla_le"
        ),
        case("layer.layer_norm", {"type": "dyt"}, "final_layer_norm", {"type": "prmsnorm"}, "layer.ffn.activation", "gelu_shifted"),
    ],
    ids=[
        "partial-rotary",
        "llama-rounding",
        "expansion-factor",
        "mla",
        "mla-learned",
        "scale-and-yarn",
        "forge-krms-pfla_le",
        "forge-dyt-gelu_shifted",
    ],
)
def test_derived_values_load_back(spec):
    """model.yaml holds derived values next to the inputs they came from; it must load to the same spec."""
    first = load_spec(spec)
    assert load_spec(first.to_dict()) == first
