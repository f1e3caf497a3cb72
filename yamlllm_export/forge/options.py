"""The research options of ReaLLM-Forge's ``model_args`` → our spec keys (rows of ``forge/table.py``).

Each option has an ``apply`` (write its keys into the draft) and an ``accept`` (why a value cannot be imported,
or None). Names and defaults of our keys: docs/forge.md (positions, softmax variants) and docs/forge-layers.md
(norms, activations, MLPs, embeddings, linears, steering). A value outside our schema's bounds is refused here,
naming the ``model_args`` key, before the schema would name our key instead.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

Args = dict[str, Any]
Draft = dict[str, Any]


def put(draft: Draft, path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node = draft
    for p in parents:
        node = node.setdefault(p, {})
    node[last] = value


# ---- softmax variants (layer.attention.softmax) ----------------------------------------------------------

# our option ← Forge's model_args key, per variant (docs/forge.md); a clamp is read only with its flag on
_CONSMAX = {"beta_init": "consmax_initial_beta", "gamma_init": "consmax_initial_gamma"}
_POLY = {"x_intercept": "polymax_x_intercept", "y_intercept": "polymax_y_intercept", "power": "polymax_power", "divisor": "polymax_divisor"}
SOFTMAX_OPTIONS: dict[str, dict[str, str]] = {
    "softermax": {"use_xmax": "softermax_use_xmax"},
    "consmax": _CONSMAX,
    "consmax_v2": _CONSMAX,
    "consmax_quan": _CONSMAX,
    "saturatingconsmax": {**_CONSMAX, "saturation": "consmax_saturation"},
    "polymax": _POLY,
    "vpolymax": _POLY,
    "exppolymax": {"y_intercept": "exppolymax_y_intercept", "power": "exppolymax_power", "divisor": "exppolymax_divisor"},
    "strongermax": {
        "base": "strongermax_strength",
        "use_xmax": "strongermax_use_xmax",
        "xmax_guess": "strongermax_xmax_guess",
        "div_by_sum": "strongermax_div_by_sum_of_terms",
        "divisor": "strongermax_divisor",
        "obo": "strongermax_obo",
        "obo_per_head": "strongermax_use_learned_obo_per_head",
        "temperature": "strongermax_temperature_factor",
    },
    "sigsoftmax": {},
    "relumax": {"divisor": "relumax_divisor"},
    "relu2max": {"divisor": "relu2max_divisor"},
    "sigmoidmax": {"divisor": "sigmoidmax_divisor"},
    "softplus": {"divisor": "softplus_divisor"},
    "pfla_softmax": {
        "num_knots": "pfla_softmax_num_points",
        "x_min": "pfla_softmax_left_bound",
        "x_max": "pfla_softmax_right_bound",
        "density": "pfla_softmax_density",
        "mode": "pfla_softmax_mode",
        "init_activation": "pfla_softmax_init_activation",
        "learned_divisor": "pfla_softmax_use_learned_divisor",
        "learned_divisor_init": "pfla_softmax_gamma_init",
    },
}
_CONSMAX_BASE = ("consmax", "consmax_v2", "saturatingconsmax")  # read consmax_base unless consmax_use_euler_base


def softmax(draft: Draft, args: Args) -> None:
    variant = args["softmax_variant_attn"]
    if variant == "softmax":
        return
    spec: dict[str, Any] = {"type": variant}
    spec.update({ours: args[forge] for ours, forge in SOFTMAX_OPTIONS[variant].items() if args[forge] is not None})
    if variant in _CONSMAX_BASE and not args["consmax_use_euler_base"]:
        spec["base"] = float(args["consmax_base"])
    if variant == "consmax_v2" and args["consmax_v2_clamping"]:
        spec["clamp"] = float(args["consmax_v2_clamp_value"])
    if variant == "strongermax" and args["strongermax_clamping"]:
        spec["clamp"] = float(args["strongermax_clamp_value"])
    if variant == "strongermax" and not args["strongermax_use_learned_obo_per_head"]:
        spec.pop("obo_per_head")
    if variant == "pfla_softmax" and not args["pfla_softmax_use_learned_divisor"]:
        spec.pop("learned_divisor_init")  # read only with the learned divisor
    put(draft, "layer.attention.softmax", spec)


def softmax_ok(args: Args) -> str | None:
    variant = args["softmax_variant_attn"]
    if variant == "softmax":
        return None
    if variant == "squareplus":
        return "'squareplus' is NaN at a masked (-inf) score upstream, so causal attention is NaN"
    if variant not in SOFTMAX_OPTIONS:
        return f"{variant!r} is not a softmax variant this exporter takes (docs/forge.md)"
    if args["div_by_seq_len"]:
        return "with div_by_seq_len: every row divided by the window's length has no exact KV cache"
    if variant == "sigsoftmax" and not args["sigsoftmax_use_euler_base"]:
        return "sigsoftmax with a non-Euler base (sigsoftmax_use_euler_base false) crashes upstream"
    if variant == "exppolymax" and not args["exppolymax_use_euler_base"]:
        return "exppolymax with a non-Euler base (exppolymax_use_euler_base false) crashes upstream"
    if variant == "strongermax" and args["strongermax_overflow_recompute"]:
        return "strongermax_overflow_recompute is a data-dependent global branch: not exportable"
    if variant == "strongermax" and float(args["strongermax_obo"]) < 0:
        return f"strongermax_obo {args['strongermax_obo']} is negative (our obo must be >= 0)"
    if variant == "pfla_softmax" and (args["pfla_softmax_use_obo"] or args["pfla_softmax_use_learned_obo"]):
        return "pfla_softmax's OBO options crash upstream"
    return None


# ---- FIRE and SOAP ---------------------------------------------------------------------------------------

_FIRE = {
    "mlp_width": "fire_mlp_width",
    "num_hidden_layers": "fire_num_hidden_layers",
    "outermost_relu": "fire_outermost_sigma",
    "init_c": "fire_init_c",
    "init_L": "fire_init_L",
    "log_bias": "fire_log_bias",
    "shared": "shared_fire_embeddings",
}


def fire(draft: Draft, args: Args) -> None:
    if args["use_fire_embeddings"]:
        put(draft, "layer.attention.fire", {ours: args[forge] for ours, forge in _FIRE.items()})


def fire_ok(args: Args) -> str | None:
    if not args["use_fire_embeddings"]:
        return None
    if not float(args["fire_init_c"]) > 0:
        return f"fire_init_c {args['fire_init_c']} must be > 0: log(c·x + b) is NaN upstream otherwise"
    if not float(args["fire_log_bias"]) >= 1:
        return f"fire_log_bias {args['fire_log_bias']} must be >= 1: the normalised distance's logs are undefined otherwise"
    if int(args["fire_num_hidden_layers"]) < 0 or int(args["fire_mlp_width"]) < 1:
        return "fire_num_hidden_layers must be >= 0 and fire_mlp_width >= 1"
    return None


# ---- norms (layer.layer_norm, final_layer_norm) -----------------------------------------------------------

NORMS = ("rmsnorm", "layernorm", "prmsnorm", "krmsnorm", "hyperspherenorm", "dact", "identity")


def norm(kind: str, args: Args) -> dict[str, Any]:
    """Our norm spec for Forge's ``norm_variant_*`` value ``kind`` (no variant of Forge has an epsilon but LayerNorm)."""
    if kind == "rmsnorm":
        return {"type": "rmsnorm", "eps": 0.0, "elementwise_affine": True}
    if kind == "layernorm":
        return {"type": "layernorm", "eps": 1e-5, "elementwise_affine": True}
    if kind == "prmsnorm":
        return {"type": "prmsnorm", "prmsnorm_pct": float(args["prmsnorm_pct"])}
    if kind == "krmsnorm":
        return {
            "type": "krmsnorm",
            "krmsnorm_num": int(args["krmsnorm_num"]),
            "krmsnorm_select": args["krmsnorm_selection_type"],
            "krmsnorm_quantize": args["krmsnorm_quantize_type"],
            "elementwise_affine": bool(args["krmsnorm_enable_gain"]),
        }
    if kind == "hyperspherenorm":
        radius = args["hsnorm_radius"]
        return {"type": "hyperspherenorm", "hypersphere_radius": None if radius is None else float(radius)}
    if kind == "dact":
        return {
            "type": "dyt",
            "dyt_activation": args["dact_activation"],
            "dyt_alpha_init": float(args["dact_alpha_init"]),
            "dyt_alpha": bool(args["dact_use_alpha"]),
            "dyt_beta": bool(args["dact_use_beta"]),
            "dyt_gamma": bool(args["dact_use_gamma"]),
        }
    return {"type": "identity"}


def norm_ok(key: str) -> Callable[[Args], str | None]:
    def check(args: Args) -> str | None:
        kind = args[key]
        if kind not in NORMS:
            return f"{kind!r} is not a Forge norm this exporter takes ({', '.join(NORMS)})"
        if kind == "krmsnorm" and args["krmsnorm_selection_type"] not in ("first", "last"):
            return f"krmsnorm_selection_type {args['krmsnorm_selection_type']!r}: a fresh random subset per call is not a function"
        if kind == "krmsnorm" and args["krmsnorm_quantize_type"] != "none":
            return (
                f"krmsnorm_quantize_type {args['krmsnorm_quantize_type']!r}: per-tensor statistics over the whole window "
                "(no KV cache reproduces them; not in the dialect even as a full-window graph)"
            )
        if kind == "krmsnorm" and args["krmsnorm_recompute_percentage"] is not None:
            return "krmsnorm_recompute_percentage: the recomputation branch is not in the dialect"
        if kind == "hyperspherenorm" and args["hsnorm_radius"] is not None and not float(args["hsnorm_radius"]) > 0:
            return f"hsnorm_radius {args['hsnorm_radius']} must be > 0"
        return None

    return check


# ---- activations and MLPs (layer.ffn) -----------------------------------------------------------------------

ACTIVATIONS = (
    "gelu", "relu", "silu", "squared_relu", "relu6", "sigmoid", "tanh", "softsign", "identity", "elu", "celu", "selu",
    "leaky_relu", "rrelu", "mish", "softplus", "gelu_shifted", "prelu", "piecewise", "pfla", "pfla_le", "learned_spline",
)  # fmt: skip
_KNOTS = {
    "piecewise": ("pla_num_points", "pla_left_bound", "pla_right_bound"),
    "pfla": ("pfla_num_points", "pfla_left_bound", "pfla_right_bound"),
    "pfla_le": ("pfla_num_points", "pfla_left_bound", "pfla_right_bound"),
}


GATED = {"silu": "swiglu", "gelu": "geglu", "relu": "reglu"}  # Forge's swiglu with these gates → our GLU names


def has_offsets(args: Args) -> bool:
    return bool(args["mlp_x_offset"] or args["mlp_y_offset"] or args["learn_mlp_x_offset"] or args["learn_mlp_y_offset"])


def activation(ffn: dict[str, Any], args: Args) -> None:
    """``activation_variant`` and its parameters, the offsets and dual_path into the ffn spec being drafted."""
    act = args["activation_variant"]
    if args["mlp_variant"] == "swiglu" and act in GATED and not has_offsets(args):
        ffn["activation"] = GATED[act]  # the fused GLU names: the same function
    else:
        ffn["activation"] = act
    if act == "gelu_shifted":
        ffn["gelu_shift"] = float(args["shifted_gelu_initial_shift"])
    if act in _KNOTS:
        n, left, right = (args[k] for k in _KNOTS[act])
        ffn["activation_knots"] = {"num": int(n), "left_bound": float(left), "right_bound": float(right)}
    if act == "learned_spline":
        # Forge stores lsa_num_knots but builds its knots from the constructor's default, 10 on [-5, 5]
        ffn["activation_knots"] = {"num": 10, "left_bound": -5.0, "right_bound": 5.0}
    if has_offsets(args):
        ffn["x_offset"], ffn["y_offset"] = float(args["mlp_x_offset"]), float(args["mlp_y_offset"])
    if args["mlp_variant"] == "dual_path":
        ffn["variant"] = "dual_path"


def activation_ok(args: Args) -> str | None:
    if args["mlp_variant"] == "kan":
        return None  # unused by the KAN MLP
    act = args["activation_variant"]
    if act == "glu":
        return "'glu' halves the width and is broken upstream"
    if act not in ACTIVATIONS:
        return f"{act!r} is not a Forge activation this exporter takes"
    return None


# ---- embeddings, linears, steering ----------------------------------------------------------------------------

QUANT_METHODS = {"affine_quant": "affine", "symmetric_quant": "symmetric", "ternary_quant": "ternary"}


def quantize_table(which: str) -> tuple[Callable[[Draft, Args], None], Callable[[Args], str | None]]:
    key = f"quantize_{which}"

    def apply(draft: Draft, args: Args) -> None:
        if args[key]:
            method = QUANT_METHODS[args[f"{key}_method"]]
            put(draft, f"embedding.{key}", {"method": method, "bits": int(args[f"{key}_bits"])})

    def accept(args: Args) -> str | None:
        if not args[key]:
            return None
        if args[f"{key}_method"] not in QUANT_METHODS:
            return f"{key}_method {args[f'{key}_method']!r} is not one of {', '.join(QUANT_METHODS)}"
        if not 1 <= int(args[f"{key}_bits"]) <= 16:
            return f"{key}_bits {args[f'{key}_bits']} is outside 1..16"
        return None

    return apply, accept


def embedding_extras(draft: Draft, args: Args) -> None:
    if args["use_embedding_scale"]:
        put(draft, "embedding.learned_scale", True)
        put(draft, "embedding.scale", math.sqrt(int(args["n_embd"])))  # Forge starts it at sqrt(n_embd)
    if args["n_embd_wte"] and args["n_embd_wte_scale_tying"]:
        put(draft, "embedding.tie_projections", True)


LSV_VARIANTS = ("one_hot", "one_hot_mlp", "ohmg", "ohmt", "ohmm", "ohma", "mol")


def lsv(draft: Draft, args: Args) -> None:
    if args["use_lsv"]:
        # Forge's sampler selects vector 0 at scale 1 unless --lsv_size / --lsv_scaling_factor / --lsv_mixture say
        # otherwise (the LSV module starts at index 0; model_args' lsv_index is not read by the forward)
        spec = {"variant": args["lsv_variant"], "num_vectors": int(args["lsv_dataset_num"]), "layer": int(args["apply_lsv_at_layer_idx"])}
        if args["lsv_variant"] == "one_hot":
            spec.update(index=0, scale=1.0)
        elif args["lsv_variant"] == "one_hot_mlp":
            spec.update(index=0)  # Forge scales no other variant
        put(draft, "steering.lsv", spec)


def lsv_ok(args: Args) -> str | None:
    if not args["use_lsv"]:
        return None
    if args["lsv_variant"] not in LSV_VARIANTS:
        return f"lsv_variant {args['lsv_variant']!r} is not one of {', '.join(LSV_VARIANTS)} (linear_comb is broken upstream)"
    if not isinstance(args.get("lsv_dataset_num"), int) or args["lsv_dataset_num"] < 1:
        return "needs lsv_dataset_num >= 1 (train.py sets it from --dataset_list)"
    if args["apply_lsv_at_layer_idx"] is None or not 0 <= int(args["apply_lsv_at_layer_idx"]) <= int(args["n_layer"]):
        return f"apply_lsv_at_layer_idx {args['apply_lsv_at_layer_idx']!r} must be a layer slot 0..n_layer (None: the LSV never fires)"
    return None


def steering_vector(draft: Draft, args: Args) -> None:
    layer = args["apply_vector_at_layer_idx"]
    if layer is not None:
        put(
            draft,
            "steering.vector",
            # Forge's np.load reads the path from the working directory: so does the importer (written absolute)
            {
                "file": str(Path(args["apply_vector_file"]).resolve()),
                "layer": int(layer),
                "scale": float(args["apply_vector_scaling_factor"]),
            },
        )


def steering_vector_ok(args: Args) -> str | None:
    layer = args["apply_vector_at_layer_idx"]
    if layer is None:
        return None
    if not args["apply_vector_file"]:
        return "needs apply_vector_file (the .npy of the vector)"
    if not 1 <= int(layer) <= int(args["n_layer"]):
        return f"{layer}: the vector is added after block 1..n_layer (Forge's 0 never fires)"
    return None


LINEAR_KEYS = {
    "linear_variant_attn": "attention",
    "linear_variant_q": "attention",
    "linear_variant_k": "attention",
    "linear_variant_v": "attention",
    "linear_variant_attn_proj": "attention",
    "linear_variant_mlp": "ffn",
    "linear_variant_mlp_up": "ffn",
    "linear_variant_mlp_down": "ffn",
}
_LINEAR_TYPES = {"quantized_linear": "quantized", "bitlinear_1p58": "bitlinear_1p58"}


def _linear_choice(args: Args) -> dict[str, str]:
    """{our apply_to group: the Forge variant} for every group whose variant is not a plain linear."""
    groups: dict[str, set[str]] = {"attention": set(), "ffn": set()}
    for key, group in LINEAR_KEYS.items():
        coarse = "linear_variant_attn" if group == "attention" else "linear_variant_mlp"
        value = args[key] if args[key] is not None else args[coarse]
        groups[group].add(value)
    return {g: next(iter(v)) for g, v in groups.items() if len(v) == 1 and next(iter(v)) != "linear"} | {
        g: "mixed" for g, v in groups.items() if len(v) > 1
    }


def linear(draft: Draft, args: Args) -> None:
    choice = _linear_choice(args)
    if choice:
        kind = _LINEAR_TYPES[next(iter(choice.values()))]
        spec: dict[str, Any] = {"type": kind, "apply_to": sorted(choice)}
        if kind == "quantized":
            spec.update(method=QUANT_METHODS[args["quantize_linear_method"]], bits=int(args["quantize_linear_bits"]))
        put(draft, "layer.linear", spec)


def linear_ok(args: Args) -> str | None:
    choice = _linear_choice(args)
    if "mixed" in choice.values() or len(set(choice.values())) > 1:
        return "different linear variants within attention or the MLP (or between them) are not expressible (one layer.linear)"
    for v in choice.values():
        if v not in _LINEAR_TYPES:
            return f"{v!r}: only quantized_linear and bitlinear_1p58 are in the dialect"
    if "ffn" in choice and int(args["mlp_down_projs"]) > 1:
        return "a linear variant on an MLP with mlp_down_projs > 1 (quantized as one k·C matrix upstream) is not expressible"
    if "quantized_linear" in choice.values():
        if args["quantize_linear_method"] not in QUANT_METHODS:
            return f"quantize_linear_method {args['quantize_linear_method']!r} is not one of {', '.join(QUANT_METHODS)}"
        if any(args[k] is not None for k in args if k.startswith("quantize_linear_") and k.count("_") > 3):
            return "per-projection quantize_linear_*_method / _bits are not expressible (one method and bits)"
    return None


# ---- per-layer mixers (layer_types) ---------------------------------------------------------------------------

MIXERS = {"causal": "attention", "identity": "identity", "linear": "linear_attention", "infinite": "infinite_attention"}


def mixers(args: Args) -> list[str]:
    return list(args["attention_list"] or [args["attention_variant"]])


def layer_types(draft: Draft, args: Args) -> None:
    kinds = mixers(args)
    if kinds == ["causal"]:
        return
    put(draft, "layer_types", [MIXERS[k] for k in kinds])
    if "infinite" in kinds:
        hs = int(args["n_embd"]) // int(args["n_head"])
        qk = int(args["n_qk_head_dim"] or hs)
        put(
            draft,
            "layer.infinite_attention",
            {"num_heads": int(args["n_head"]), "num_kv_heads": int(args["n_kv_group"] or args["n_head"]),
             "qk_head_dim": qk, "v_head_dim": int(args["n_v_head_dim"] or qk), "bias": bool(args["bias"])},
        )  # fmt: skip
    if "infinite" in kinds and "causal" not in kinds:
        # no softmax-attention layer: layer.attention.head_dim is free, and our rotary_dim is bounded by it
        put(draft, "layer.attention.head_dim", int(args["n_qk_head_dim"] or int(args["n_embd"]) // int(args["n_head"])))
    if "linear" in kinds:
        put(draft, "layer.linear_attention", {"num_heads": int(args["n_head"])})


def mixers_ok(args: Args) -> str | None:
    broken = {
        "ssm": "'ssm' is not constructible upstream (commented out of attention_dictionary)",
        "co4": "'co4' is non-causal by design and experimental upstream (do not export)",
    }
    for kind in mixers(args):
        if kind in broken:
            return broken[kind]
        if kind not in MIXERS:
            return f"{kind!r} is not an attention variant this exporter takes ({', '.join(MIXERS)})"
    if "infinite" in mixers(args) and args["use_concat_heads"]:
        return "use_concat_heads: concatenated infinite heads are not in the dialect (heads summed are)"
    return None


# ---- our key path → the model_args key it came from (to name Forge's key when our schema refuses a value) ----

_NORM_SOURCES = {
    "prmsnorm_pct": "prmsnorm_pct",
    "krmsnorm_num": "krmsnorm_num",
    "krmsnorm_select": "krmsnorm_selection_type",
    "krmsnorm_quantize": "krmsnorm_quantize_type",
    "hypersphere_radius": "hsnorm_radius",
    "dyt_activation": "dact_activation",
    "dyt_alpha_init": "dact_alpha_init",
}
_SOURCES = {
    "embedding.positional_encoding.rotary_dim": "rope_length",
    "embedding.positional_encoding.soap_num_angles": "sym_rot_num_angles",
    "embedding.quantize_wte.bits": "quantize_wte_bits",
    "embedding.quantize_wpe.bits": "quantize_wpe_bits",
    "layer.ffn.intermediate_size": "mlp_size",
    "layer.ffn.x_offset": "mlp_x_offset",
    "layer.ffn.y_offset": "mlp_y_offset",
    "layer.ffn.gelu_shift": "shifted_gelu_initial_shift",
    "layer.infinite_attention.qk_head_dim": "n_qk_head_dim",
    "layer.infinite_attention.v_head_dim": "n_v_head_dim",
    "layer.linear.bits": "quantize_linear_bits",
    "steering.lsv.num_vectors": "lsv_dataset_num",
    "steering.lsv.layer": "apply_lsv_at_layer_idx",
    "steering.vector.file": "apply_vector_file",
    "steering.vector.layer": "apply_vector_at_layer_idx",
    "steering.vector.scale": "apply_vector_scaling_factor",
    **{f"layer.attention.fire.{ours}": forge for ours, forge in _FIRE.items()},
}


def source_key(path: str, args: Args) -> str | None:
    """The ``model_args`` key our spec key ``path`` was written from, or None when it is not one of these options."""
    if path in _SOURCES:
        return _SOURCES[path]
    head, _, leaf = path.rpartition(".")
    if head == "layer.attention.softmax":
        variant = args["softmax_variant_attn"]
        extra = {"clamp": "consmax_v2_clamp_value" if variant == "consmax_v2" else "strongermax_clamp_value", "base": "consmax_base"}
        return SOFTMAX_OPTIONS.get(variant, {}).get(leaf) or extra.get(leaf)
    if head in ("layer.layer_norm", "final_layer_norm") and leaf in _NORM_SOURCES:
        return _NORM_SOURCES[leaf]
    if head == "layer.ffn.activation_knots":
        keys = _KNOTS.get(args["activation_variant"])
        return None if keys is None else dict(zip(("num", "left_bound", "right_bound"), keys, strict=True)).get(leaf)
    return None
