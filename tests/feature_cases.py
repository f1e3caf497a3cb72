"""Spec dicts for the feature parity grids: one tiny base model and ``case(...)`` to change it.

``case("layer.attention.window_size", 8, "layer.attention.num_kv_heads", 2)`` returns a copy of ``BASE``
with those dotted keys set (``...`` deletes a key). Dims stay tiny so one export takes a few seconds.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

BASE: dict[str, Any] = {
    "name": "tiny-feature",
    "embedding": {
        "vocab_size": 256,
        "max_position_embeddings": 96,
        "embedding_dim": 64,
        "positional_encoding": {"type": "rope", "rope_theta": 10000.0},
    },
    "num_layers": 2,
    "layer": {
        "hidden_dim": 64,
        "attention": {"num_heads": 4, "num_kv_heads": 2, "bias": False},
        "ffn": {"intermediate_size": 128, "activation": "swiglu", "use_gated_activation": True, "bias": False},
        "layer_norm": {"type": "rmsnorm", "eps": 1e-6},
    },
    "initialization": {"type": "gpt2", "std": 0.08},  # larger than GPT-2's 0.02, so every feature visibly moves the logits
}


def case(*pairs: Any, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """``base`` (default ``BASE``) with each dotted key of ``pairs`` (key, value, key, value, ...) set."""
    d = copy.deepcopy(base or BASE)
    for path, value in zip(pairs[::2], pairs[1::2], strict=True):
        *parents, last = path.split(".")
        node = d
        for p in parents:
            node = node.setdefault(p, {})
        if value is ...:
            node.pop(last, None)
        else:
            node[last] = value
    return d


ROPE = "embedding.positional_encoding"
ATT = "layer.attention"
FFN = "layer.ffn"
MLA = (f"{ATT}.mechanism", "mla", f"{ATT}.num_kv_heads", ..., f"{ATT}.mla_latent_dim", 16)
PLAIN_FFN = (f"{FFN}.use_gated_activation", False)
SCALING = {"factor": 2.0, "original_max_position_embeddings": 32}  # the long-context check crosses position 32


def _c(overrides: dict[str, Any]) -> dict[str, Any]:
    """``case`` from a {dotted key: value} dict; 64 positions keep the long-context check short."""
    return case(*[x for kv in {"embedding.max_position_embeddings": 64, **overrides}.items() for x in kv])


def _plain(activation: str) -> dict[str, Any]:
    return {f"{FFN}.activation": activation, f"{FFN}.use_gated_activation": False}


STEERING_NPY = str(Path(__file__).parent / "data" / "steering64.npy")  # (1, 1, 64), as Forge's obtain_vector saves
# ReaLLM-Forge's per-token options (tests/test_features_forge_mlp.py exports each on every target). Cases combine
# options that touch different code, so each export proves several.
FORGE_CASES: dict[str, dict[str, Any]] = {
    # Forge's swiglu: a GELU gate; pRMSNorm in the layers, kRMSNorm (first 8, fp16 slice) at the end; offsets
    "forge-prmsnorm-krmsnorm-first-gelu-gate-offsets": _c({
        f"{FFN}.activation": "gelu", f"{FFN}.x_offset": 0.1, f"{FFN}.y_offset": -0.05,
        "layer.layer_norm": {"type": "prmsnorm", "prmsnorm_pct": 0.2},
        "final_layer_norm": {"type": "krmsnorm", "krmsnorm_num": 8, "krmsnorm_select": "first"},
    }),
    # the hypersphere in the layers, kRMSNorm (last 10, no gain) at the end; PReLU; two summed down projections.
    # (kRMSNorm in every layer rounds each layer's slice to float16: a 1-ulp difference between runtimes can flip a
    # rounding, measured 8.6e-5 max|Δ|/σ over a 60-token prompt on onnx, past validate's float32 limit)
    "forge-krmsnorm-last-hypersphere-prelu-downprojs": _c({
        **_plain("prelu"), f"{FFN}.down_projections": 2,
        "layer.layer_norm": {"type": "hyperspherenorm", "hypersphere_radius": 3.0},
        "final_layer_norm": {"type": "krmsnorm", "elementwise_affine": False},
    }),
    # peri-LN (sandwich) with DyT everywhere but the final norm (identity); dual-path MLP with offsets
    "forge-peri-dyt-identity-dualpath": _c({
        **_plain("gelu"), f"{FFN}.variant": "dual_path", f"{FFN}.x_offset": 0.2, f"{FFN}.y_offset": 0.1,
        "layer.norm_placement": "sandwich", "layer.layer_norm": {"type": "dyt", "dyt_alpha_init": 0.8},
        "final_layer_norm": {"type": "identity"},
    }),
    # Forge's RMSNorm (no epsilon) and the knot activations; DyT with softsign and no shift; a stateless one
    "forge-rmsnorm-eps0-pfla": _c({**_plain("pfla"), "layer.layer_norm": {"type": "rmsnorm", "eps": 0.0}}),
    "forge-learned-spline-gated": _c({f"{FFN}.activation": "learned_spline"}),
    "forge-pfla_le-dyt-softsign-no-beta": _c({**_plain("pfla_le"), "layer.layer_norm": {"type": "dyt", "dyt_activation": "softsign", "dyt_beta": False}}),
    "forge-mish": _c(_plain("mish")),
    # factorized wte with one shared projection, learned scale, tied head on the raw table; quantized wte and wpe
    "forge-factorized-shared-proj-qwte-qwpe": _c({
        "embedding.embedding_dim": 32, "embedding.tie_projections": True, "embedding.learned_scale": True,
        "embedding.quantize_wte": {}, "tie_word_embeddings": True,
        ROPE: {"type": "learned"}, "embedding.quantize_wpe": {"method": "symmetric", "bits": 6},
    }),
    "forge-quantized-linear-sym4": _c({"layer.linear": {"type": "quantized", "method": "symmetric", "bits": 4}}),
    # BitNet b1.58 everywhere; the manual vector after block 1 and a one-hot LSV after the embeddings
    "forge-bitlinear-vector-lsv-one_hot": _c({
        "layer.linear": {"type": "bitlinear_1p58"},
        "steering": {"vector": {"file": STEERING_NPY, "layer": 1, "scale": 0.5},
                     "lsv": {"variant": "one_hot", "num_vectors": 3, "layer": 0, "index": 1, "scale": 2.0}},
    }),
    "forge-lsv-ohmt": _c({"steering": {"lsv": {"variant": "ohmt", "num_vectors": 3, "layer": 1}}}),
}  # fmt: skip


SOFTMAX = f"{ATT}.softmax"
# ReaLLM-Forge's softmax variants, with options that keep the attention weights O(1) on this model's scores
# (|x| ≲ 1: Forge's defaults, e.g. consmax's γ = 100, would shrink attention until parity could not see it) and
# that reach each variant's pieces (clamps, saturation, polymax's linear piece from −1); tests/test_features_forge.py
# runs every one, the feature grid below the first three (their exports are shared).
VARIANTS: dict[str, dict[str, Any]] = {
    "consmax_v2": {"type": "consmax_v2", "beta_init": 0.2, "gamma_init": 3.0, "clamp": 0.1, "base": 3.0},
    "strongermax": {"type": "strongermax", "base": 2.0, "temperature": 0.5, "obo": 1.0, "obo_per_head": True, "clamp": 0.3, "divisor": 2.0},
    # Forge's spline jumps at every knot (each x takes its right-hand segment): knots outside the bulk of this
    # model's scores (|x| ≲ 1) keep a rounding difference between PyTorch and ORT from flipping a score across
    # one in the parity grid; the formula tests (scores over ±3) cross them all
    "pfla_softmax": {
        "type": "pfla_softmax",
        "num_knots": 4,
        "x_min": -6.0,
        "x_max": 6.0,
        "mode": "quadratic",
        "learned_divisor": True,
        "learned_divisor_init": 3.0,
        "init_activation": "softplus",
    },  # fmt: skip
    "pfla_softmax-linear-quad-knots": {  # sigmoid knots: Σy stays well away from 0 (gelu's would not: a badly conditioned row)
        "type": "pfla_softmax",
        "num_knots": 6,
        "x_min": -1.0,
        "x_max": 1.0,
        "density": "quad",
        "init_activation": "sigmoid",
    },
    "softermax": {"type": "softermax"},
    "consmax": {"type": "consmax", "beta_init": 0.5, "gamma_init": 4.0, "base": 2.0},
    "consmax_quan": {"type": "consmax_quan", "beta_init": 0.537, "gamma_init": 3.14},
    "saturatingconsmax": {"type": "saturatingconsmax", "beta_init": 0.0, "gamma_init": 4.0, "saturation": 0.3},
    "polymax": {"type": "polymax", "x_intercept": -1.0, "divisor": 10.0},
    "vpolymax": {"type": "vpolymax", "x_intercept": -1.0, "divisor": 10.0},
    "exppolymax": {"type": "exppolymax", "power": 3.0, "divisor": 10.0},
    "strongermax-guess-no-sum": {"type": "strongermax", "xmax_guess": 0.5, "div_by_sum": False, "divisor": 8.0},
    "sigsoftmax": {"type": "sigsoftmax"},
    "relumax": {"type": "relumax", "divisor": 2.0},
    "relu2max": {"type": "relu2max", "divisor": 2.0},
    "sigmoidmax": {"type": "sigmoidmax", "divisor": 8.0},
    "softplus": {"type": "softplus", "divisor": 8.0},
}
FIRE = {"init_L": 4.0, "mlp_width": 8}  # a threshold the 40-token prompts cross: the absolute query position matters

# feature name (as in the schema's feature table) -> {case id: spec}. Every feature has at least one case;
# tests/test_feature_matrix.py exports each case on each target the table claims and checks parity.
FEATURES: dict[str, dict[str, dict[str, Any]]] = {
    "Factorized embeddings (embedding_dim ≠ hidden_dim)": {"factorized-embedding": case("embedding.embedding_dim", 32)},
    "Learned absolute positions": {"learned": case(ROPE, {"type": "learned"})},
    "RoPE": {"rope": case()},
    "ALiBi (any head count)": {
        "alibi-6-heads-gqa": case(ROPE, {"type": "alibi"}, f"{ATT}.mechanism", "alibi", f"{ATT}.num_heads", 6, f"{ATT}.head_dim", 16)
    },
    "Sinusoidal positions": {"sinusoidal": case(ROPE, {"type": "sinusoidal"})},
    "No positions (NoPE)": {"nope": case(ROPE, {"type": "none"})},
    "Partial rotary (partial_rotary_factor / rotary_dim)": {
        "partial-rotary-factor": case(f"{ROPE}.partial_rotary_factor", 0.5),
        "rotary-dim": case(f"{ROPE}.rotary_dim", 4),
    },
    "RoPE scaling: linear": {"rope-linear": case(f"{ROPE}.rope_scaling", {"type": "linear", **SCALING})},
    "RoPE scaling: dynamic NTK": {"rope-dynamic": case(f"{ROPE}.rope_scaling", {"type": "dynamic", **SCALING})},
    "RoPE scaling: llama3": {
        "rope-llama3": case(f"{ROPE}.rope_scaling", {"type": "llama3", "factor": 8.0, "original_max_position_embeddings": 32})
    },
    "RoPE scaling: YaRN": {
        "rope-yarn": case(f"{ROPE}.rope_scaling", {"type": "yarn", **SCALING}),
        # DeepSeek-V2: cos/sin × m(mscale)/m(mscale_all_dim), MLA's softmax scale × m(mscale_all_dim)²
        "rope-yarn-mscale-mla": case(*MLA, f"{ROPE}.rope_scaling", {"type": "yarn", **SCALING, "mscale": 0.5, "mscale_all_dim": 2.0}),
    },
    "RoPE scaling: LongRoPE": {  # Phi-4-mini: partial rotary (12 of 16 dims: 6 factors); the long-context check crosses 32
        "rope-longrope-partial": case(
            f"{ROPE}.partial_rotary_factor",
            0.75,
            f"{ROPE}.rope_scaling",
            {
                "type": "longrope",
                **SCALING,
                "short_factor": [1.0, 1.05, 1.2, 1.4, 1.8, 2.2],
                "long_factor": [1.0, 2.0, 4.5, 9.0, 20.0, 45.0],
            },
        )
    },
    "Embedding scale": {"embedding-scale": case("embedding.scale", "sqrt_hidden")},
    "MHA / GQA / MQA (num_kv_heads)": {"mha": case(f"{ATT}.num_kv_heads", ...), "mqa": case(f"{ATT}.num_kv_heads", 1)},
    "Separate QKV / output bias": {"qkv-bias-only": case(f"{ATT}.qkv_bias", True, f"{ATT}.out_bias", False)},
    "Dropout (training only; absent from the export)": {
        "dropout": case("embedding.dropout", 0.1, f"{ATT}.dropout", 0.1, f"{FFN}.dropout", 0.1, "layer.residual_dropout", 0.1)
    },
    "Multi-latent attention (MLA)": {
        "mla": case(*MLA),
        "mla-low-rank-query": case(*MLA, f"{ATT}.mla_rank", 24),
        "mla-learned-positions": case(*MLA, ROPE, {"type": "learned"}),
    },
    "Complex-valued attention": {"complex": case(f"{ATT}.mechanism", "complex")},
    "Bidirectional (non-causal) mask": {"bidirectional": case(f"{ATT}.causal", False)},
    "Sliding-window attention": {"window": case(f"{ATT}.window_size", 8)},
    "Attention logit soft-capping": {"attn-softcap": case(f"{ATT}.logit_softcap", 0.5)},
    "QK-norm": {
        "qk-norm-head": case(f"{ATT}.qk_norm", {"type": "rmsnorm", "scope": "head"}),
        "qk-norm-full-layernorm": case(f"{ATT}.qk_norm", {"type": "layernorm", "scope": "full"}),
    },
    "FFN activation: GELU (exact)": {"gelu": case(*PLAIN_FFN, f"{FFN}.activation", "gelu")},
    "FFN activation: GELU (tanh approximation)": {"gelu-tanh": case(*PLAIN_FFN, f"{FFN}.activation", "gelu_tanh")},
    "FFN activation: ReLU": {"relu": case(*PLAIN_FFN, f"{FFN}.activation", "relu")},
    "FFN activation: SiLU": {"silu": case(*PLAIN_FFN, f"{FFN}.activation", "silu")},
    "FFN activation: squared ReLU": {"squared-relu": case(*PLAIN_FFN, f"{FFN}.activation", "squared_relu")},
    "Gated FFN: SwiGLU": {"swiglu": case()},
    "Gated FFN: GeGLU": {"geglu": case(f"{FFN}.activation", "geglu")},
    "Gated FFN: GeGLU (tanh approximation)": {"geglu-tanh": case(f"{FFN}.activation", "geglu_tanh")},
    "Gated FFN: ReGLU": {"reglu": case(f"{FFN}.activation", "reglu")},
    "Mixture of experts (MoE)": {
        "moe-top2": case(f"{FFN}.moe", {"num_experts": 4, "top_k": 2}),
        "moe-shared-unnormalized-every-2nd": case(
            f"{FFN}.moe", {"num_experts": 4, "top_k": 2, "frequency": 2, "shared_expert_intermediate_size": 32, "normalize_top_k": False}
        ),
        "moe-first-dense-layer": case(f"{FFN}.moe", {"num_experts": 4, "top_k": 2, "first_dense_layers": 1}),
        "moe-group-limited": case(f"{FFN}.moe", {"num_experts": 8, "top_k": 3, "num_groups": 4, "top_groups": 2, "normalize_top_k": False}),
    },
    "MoE SparseMixer routing (Phi-3.5-MoE)": {
        # a threshold that masks some experts and keeps others, so both the mask and the softmax show
        "sparsemixer-top2": case(
            f"{FFN}.moe", {"num_experts": 4, "top_k": 2, "routing": "sparsemixer", "jitter_eps": 0.2, "normalize_top_k": False}
        ),
        "sparsemixer-top3-normalized-geglu": case(
            f"{FFN}.activation", "geglu", f"{FFN}.moe", {"num_experts": 6, "top_k": 3, "routing": "sparsemixer", "jitter_eps": 0.5}
        ),
    },
    "MoE router bias": {"moe-router-bias": case(f"{FFN}.moe", {"num_experts": 4, "top_k": 2, "router_bias": True})},
    "Clamped SwiGLU experts (GPT-OSS)": {  # a limit the gate and up projections cross (their std is ~0.6 here)
        "moe-clamped-swiglu": case(f"{FFN}.moe", {"num_experts": 4, "top_k": 2, "clamped_swiglu": {"limit": 0.5}})
    },
    "KAN FFN (Legendre KAL-Net, ReaLLM-Forge; a full-window graph, no KV cache)": {  # tests/test_full_window.py has the rest
        "kan": case(f"{FFN}.kan", {"middle_layers": [32], "poly_order": 3})
    },
    "LayerNorm": {"layernorm": case("layer.layer_norm", {"type": "layernorm"})},
    "RMSNorm": {"rmsnorm": case()},
    "Norm scale with unit offset (Gemma)": {"unit-offset": case("layer.layer_norm.unit_offset", True)},
    "Pre-norm": {"pre-norm": case()},
    "Post-norm": {"post-norm": case("layer.norm_placement", "post")},
    "Sandwich norm (peri-LN)": {"sandwich-norm": case("layer.norm_placement", "sandwich")},
    "Output norm (OLMo-2)": {"output-norm": case("layer.norm_placement", "output")},
    "Parallel attention + FFN (PaLM)": {"parallel": case("layer.parallel", True)},
    "Parallel block with separate attention / FFN norms (GPT-NeoX, Falcon)": {
        "parallel-separate-norms": case("layer.parallel", True, "layer.parallel_norms", "separate")
    },
    "Embedding layer norm (BLOOM)": {"embedding-layernorm": case("embedding_layer_norm", {"type": "layernorm", "eps": 1e-5})},
    "Tied LM head": {"tied": case("tie_word_embeddings", True)},
    "LM head bias": {
        "lm-head-bias": case("lm_head_bias", True),
        "lm-head-bias-tied": case("lm_head_bias", True, "tie_word_embeddings", True),
    },
    "Final logit soft-capping": {"final-softcap": case("final_logit_softcap", 0.5)},
    "Per-layer RoPE base": {"rope-theta-layer-1": case("layer_overrides", [{"layers": [1], "attention": {"rope_theta": 100.0}}])},
    "RoPE scaling on some layers only": {
        "rope-unscaled-layer-0": case(
            ROPE,
            {"type": "rope", "rope_scaling": {"type": "linear", "factor": 4.0}},
            "layer_overrides",
            [{"layers": [0], "attention": {"rope_unscaled": True, "rope_theta": 500.0}}],
        )
    },  # fmt: skip
    "Per-layer overrides (window size, logit softcap, NoPE, RoPE base and scaling)": {
        "override-window-layer-1": case("layer_overrides", [{"layers": [1], "attention": {"window_size": 8}}])
    },
    "Attention softmax scale": {"softmax-scale": case(f"{ATT}.softmax_scale", 0.5)},
    "Attention sinks": {"sinks": case(f"{ATT}.sinks", True)},  # with a window, softcap, per layer: tests/test_features_sinks.py
    "Residual branch scale": {
        "residual-scale": case("layer.residual_scale", 0.3),
        "residual-scale-parallel": case("layer.residual_scale", 0.3, "layer.parallel", True),
    },
    "Final logit scale": {"final-logit-scale": case("final_logit_scale", 0.25, "final_logit_softcap", 0.5)},
    "QKV clipping": {"qkv-clip": case(f"{ATT}.qkv_clip", 0.05), "qkv-clip-qk-norm": case(f"{ATT}.qkv_clip", 0.05, f"{ATT}.qk_norm", {})},
    "RoPE-free (NoPE) layers": {"nope-layer-1": case("layer_overrides", [{"layers": [1], "attention": {"nope": True}}])},
    # recurrent-state and stateless mixers among attention layers (layer_types); docs/recurrent.md
    "Identity mixer layers (ReaLLM-Forge attention_variant identity)": {"identity-layer-1": case("layer_types", ["attention", "identity"])},
    "Short-convolution layers with a conv state (LFM2)": {
        "short-conv-layer-0": case("layer_types", ["short_conv", "attention"], "layer.short_conv", {"L_cache": 4}),
        "short-conv-only-bias": case("layer_types", ["short_conv"], "layer.short_conv", {"bias": True}),  # no KV cache at all
    },
    "Infinite-heads attention layers (ReaLLM-Forge attention_variant infinite)": {  # key and value head sizes differ
        "infinite-heads-layer-0": case(
            "layer_types",
            ["infinite_attention", "attention"],
            "layer.infinite_attention",
            {"num_heads": 6, "num_kv_heads": 2, "qk_head_dim": 24, "v_head_dim": 8, "bias": True},
        ),
    },  # fmt: skip
    "Linear-attention layers with a recurrent state (ReaLLM-Forge attention_variant linear)": {
        "linear-attention-layer-0": case("layer_types", ["linear_attention", "attention"])
    },
    **{
        feature: {cid: FORGE_CASES[cid]}
        for feature, cid in {
            "pRMSNorm (ReaLLM-Forge)": "forge-prmsnorm-krmsnorm-first-gelu-gate-offsets",
            "kRMSNorm, float16 slice (ReaLLM-Forge)": "forge-krmsnorm-last-hypersphere-prelu-downprojs",
            "Hypersphere norm (ReaLLM-Forge)": "forge-krmsnorm-last-hypersphere-prelu-downprojs",
            "Dynamic Tanh norm, DyT (ReaLLM-Forge dact)": "forge-peri-dyt-identity-dualpath",
            "Identity norm (ReaLLM-Forge)": "forge-peri-dyt-identity-dualpath",
            "FFN activations of ReaLLM-Forge (relu6, sigmoid, tanh, softsign, identity, elu, celu, selu, leaky_relu, rrelu, mish, softplus)": "forge-mish",
            "FFN activations with a learned scalar (ReaLLM-Forge gelu_shifted, prelu)": "forge-krmsnorm-last-hypersphere-prelu-downprojs",
            "FFN knot activations (ReaLLM-Forge piecewise, pfla, pfla_le, learned_spline)": "forge-rmsnorm-eps0-pfla",
            "Gated FFN with any gate activation (ReaLLM-Forge swiglu)": "forge-prmsnorm-krmsnorm-first-gelu-gate-offsets",
            "Dual-path MLP (ReaLLM-Forge)": "forge-peri-dyt-identity-dualpath",
            "Summed down projections (ReaLLM-Forge mlp_down_projs)": "forge-krmsnorm-last-hypersphere-prelu-downprojs",
            "FFN activation x / y offsets (ReaLLM-Forge)": "forge-prmsnorm-krmsnorm-first-gelu-gate-offsets",
            "Learned embedding scale (ReaLLM-Forge use_embedding_scale)": "forge-factorized-shared-proj-qwte-qwpe",
            "Factorized embeddings with one shared projection (ReaLLM-Forge scale tying)": "forge-factorized-shared-proj-qwte-qwpe",
            "Quantized token-embedding table (ReaLLM-Forge quantize_wte)": "forge-factorized-shared-proj-qwte-qwpe",
            "Quantized position-embedding table (ReaLLM-Forge quantize_wpe)": "forge-factorized-shared-proj-qwte-qwpe",
            "Quantized linear weights (ReaLLM-Forge quantized_linear)": "forge-quantized-linear-sym4",
            "BitNet b1.58 linears (ReaLLM-Forge bitlinear_1p58)": "forge-bitlinear-vector-lsv-one_hot",
            "Steering vector from a .npy file (ReaLLM-Forge apply_vector_*)": "forge-bitlinear-vector-lsv-one_hot",
            "Learned steering vectors, one-hot (ReaLLM-Forge LSV one_hot)": "forge-bitlinear-vector-lsv-one_hot",
            "Learned steering MLPs (ReaLLM-Forge LSV one_hot_mlp, ohmg, ohmt, ohmm, ohma, mol)": "forge-lsv-ohmt",
        }.items()
    },
    "RoPE with interleaved pairs (rope_layout; ReaLLM-Forge's rope_length = rotary_dim)": {
        "rope-interleaved-partial": case(f"{ROPE}.rope_layout", "interleaved", f"{ROPE}.rotary_dim", 8)
    },
    "SOAP rotary positions (one frequency 2π/N; ReaLLM-Forge)": {
        "soap-16-angles": case(f"{ROPE}.rope_layout", "interleaved", f"{ROPE}.rope_variant", "soap", f"{ROPE}.soap_num_angles", 16)
    },
    "FIRE positional bias (ReaLLM-Forge)": {"fire": case(f"{ATT}.fire", FIRE)},
    "Attention softmax variants (ReaLLM-Forge; ort and onnx: MatMul attention, no GroupQueryAttention / Attention)": {
        f"softmax-{v}": case(SOFTMAX, VARIANTS[v]) for v in ("consmax_v2", "strongermax", "pfla_softmax")
    },
}
# validate reports "incremental" n/a there: dynamic NTK's and LongRoPE's cached keys keep the rotation of their
# own step, a bidirectional model's cached token never saw the tokens after it, and a full-window graph has no cache
NOT_INCREMENTAL = {"rope-dynamic", "rope-longrope-partial", "bidirectional", "kan"}  # kan: full-window, no cache
# Case the "feature changes the model" test compares with, where BASE would differ for another reason
# (BASE has RoPE: sinusoidal vs BASE would differ even if the sinusoidal table were never added).
LIVE_BASELINE = {
    "sinusoidal": "nope",
    "learned": "nope",
    "mla-low-rank-query": "mla",
    "geglu-tanh": "geglu",
    "rope-yarn-mscale-mla": "mla",
    "moe-first-dense-layer": "moe-top2",
    "moe-router-bias": "moe-top2",
    "moe-clamped-swiglu": "moe-top2",
}
# Cases that legitimately compute the same function as their baseline: dropout in an eval-mode model (its
# parity case shows that), and complex attention, which in our layout (real parts, then imaginary parts)
# is the real dot product with RoPE's half rotation; the op's complex-arithmetic reference proves the
# identity on every target (tests/test_ops_attention.py, docs/design.md).
NO_EFFECT_IN_EVAL = {"dropout", "complex"}

CASES_BY_ID = {cid: spec for cases in FEATURES.values() for cid, spec in cases.items()}
