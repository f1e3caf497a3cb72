"""How each key of a ReaLLM-Forge checkpoint's ``model_args`` becomes our spec: one row per key.

A row says what its key does here:

- ``map``: ``apply(draft, args)`` writes the spec keys it becomes into the draft; ``accept(args)`` returns why
  a value is not expressible (the import is then refused), or None. A map row may depend on other keys.
- ``ignore``: training-only or without effect on the logits; a non-default value gets a ``note:`` line.
- ``refuse``: broken upstream, not exportable, or not in the dialect yet; a non-default value refuses the
  import with one line naming the key and why.

``FAMILIES`` cover the parameters of an option (``consmax_*`` of the consmax softmax, ``fire_*`` of FIRE, …):
while the option is off they change nothing (a note); while it is on, its own row decides. A key with a
non-default value that neither a row nor a family covers is refused, naming it: nothing passes unread.

Defaults are Forge's argparse defaults (``model_args_defaults.json``), which is what ``train.py`` stores.
To support another option, add (or change) its row here: the importer reads nothing else.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from yamlllm_export.forge import options as opt

Args = dict[str, Any]
Draft = dict[str, Any]

KAN_ACTIVATIONS = ("silu", "gelu", "relu", "squared_relu")
ADDED_KEYS = ("lsv_dataset_num",)  # model_args keys train.py adds beside the argparse ones (with --dataset_list)


@cache
def defaults() -> Args:
    return dict(json.loads((Path(__file__).with_name("model_args_defaults.json")).read_text())["defaults"])


@dataclass(frozen=True)
class Row:
    key: str
    kind: str  # map | ignore | refuse
    why: str  # map: the spec keys it becomes (documentation); ignore / refuse: the reason
    apply: Callable[[Draft, Args], None] | None = None
    accept: Callable[[Args], str | None] | None = None


@dataclass(frozen=True)
class Family:
    """Parameters of one option: ``keys`` (or names starting with ``prefixes``), inert while ``active`` is false."""

    option: str  # how the note names the option
    active: Callable[[Args], bool]
    prefixes: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()

    def covers(self, key: str) -> bool:
        return key in self.keys or key.startswith(self.prefixes)


def _set(draft: Draft, path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node = draft
    for p in parents:
        node = node.setdefault(p, {})
    node[last] = value


def _value(key: str, path: str, convert: Callable[[Any], Any] = lambda v: v) -> Callable[[Draft, Args], None]:
    """An ``apply`` writing ``key``'s value (converted) at ``path``."""
    return lambda draft, args: _set(draft, path, convert(args[key]))


# ---- rows that read several keys -------------------------------------------------------------------------


def head_dim(args: Args) -> int:
    return int(args["n_embd"]) // int(args["n_head"])


def qk_head_dim(args: Args) -> int:
    """The q/k head size RoPE rotates within: n_qk_head_dim for infinite heads, else n_embd / n_head."""
    infinite = "infinite" in opt.mixers(args)
    return int(args["n_qk_head_dim"] or head_dim(args)) if infinite else head_dim(args)


def rope_length(args: Args) -> int:
    """Forge rotates the first rope_length dims of a head (all of its q/k head when unset)."""
    return int(args["rope_length"] or qk_head_dim(args))


def _positions(draft: Draft, args: Args) -> None:
    if args["use_rotary_embeddings"]:
        # Forge pairs dims (2i, 2i+1); the importer permutes q/k rows into our half layout (forge/weights.py),
        # which leaves every score q·k unchanged. θ_i = 10000^(-2i/R) with R = rope_length in both; SOAP: one
        # frequency 2π/N on every pair.
        pe = {"type": "rope", "rope_theta": 10000.0, "rotary_dim": rope_length(args)}
        if args["rope_variant"] == "soap":
            pe.update(rope_variant="soap", soap_num_angles=int(args["sym_rot_num_angles"]))
    elif args["use_abs_pos_embeddings"]:
        pe = {"type": "learned"}
    else:
        pe = {"type": "none"}
    _set(draft, "embedding.positional_encoding", pe)


def _positions_ok(args: Args) -> str | None:
    if args["use_rotary_embeddings"] and args["use_abs_pos_embeddings"]:
        return "True together with use_rotary_embeddings: learned positions and RoPE at once are not expressible (pass --no-use_abs_pos_embeddings)"
    return None


def _rope_ok(args: Args) -> str | None:
    if not args["use_rotary_embeddings"]:
        return None
    if args["rope_variant"] not in ("rope", "soap"):
        return f"{args['rope_variant']!r} is not a Forge rope variant (rope, soap)"
    if args["rope_variant"] == "soap" and int(args["sym_rot_num_angles"]) < 1:
        return f"sym_rot_num_angles {args['sym_rot_num_angles']} must be >= 1"
    r, kinds = rope_length(args), set(opt.mixers(args))
    if not args["rope_length"] and "infinite" in kinds and kinds & {"causal", "linear"} and qk_head_dim(args) != head_dim(args):
        return "rope_length unset with infinite heads of another q/k size than the other layers': one rotary_dim cannot be both"
    if r % 2 or r > min(qk_head_dim(args), head_dim(args) if kinds - {"infinite", "identity"} else r):
        return f"rope_length {r} must be even and at most the head size"
    return None


def _widths(draft: Draft, args: Args) -> None:
    _set(draft, "layer.hidden_dim", int(args["n_embd"]))
    _set(draft, "embedding.embedding_dim", int(args["n_embd_wte"] or args["n_embd"]))  # factorized: the table's width


def _placement(draft: Draft, args: Args) -> None:
    pre, post, peri = args["use_pre_ln"], args["use_post_ln"], args["use_peri_ln"]
    if args["use_parallel_mlp"]:
        _set(draft, "layer.parallel", True)
        return
    placement = {(True, False, False): "pre", (False, True, False): "post", (True, False, True): "sandwich", (False, False, True): "output"}
    _set(draft, "layer.norm_placement", placement[(pre, post, peri)])


def _placement_ok(args: Args) -> str | None:
    pre, post, peri = bool(args["use_pre_ln"]), bool(args["use_post_ln"]), bool(args["use_peri_ln"])
    if args["use_parallel_mlp"]:
        return (
            None if (pre, post, peri) == (True, False, False) else "with use_post_ln / use_peri_ln or without use_pre_ln is not expressible"
        )
    if (pre, post, peri) in ((True, False, False), (False, True, False), (True, False, True), (False, False, True)):
        return None
    return f"use_pre_ln {pre}, use_post_ln {post}, use_peri_ln {peri}: this combination of norms is not expressible"


def mlp_bias(args: Args) -> tuple[bool, bool]:
    up = args["mlp_up_bias"] if args["mlp_up_bias"] is not None else args["bias"]
    down = args["mlp_down_bias"] if args["mlp_down_bias"] is not None else args["bias"]
    return bool(up), bool(down)


def _ffn(draft: Draft, args: Args) -> None:
    variant = args["mlp_variant"]
    if variant == "kan":
        kan = {"middle_layers": list(args["kan_middle_layers"]), "poly_order": int(args["kan_poly_order"])}
        _set(draft, "layer.ffn", {"bias": False, "kan": {**kan, "base_activation": args["kan_base_activation"]}})
        return
    hidden = args["mlp_size"] or int(args["mlp_expansion_factor"]) * int(args["n_embd"])
    ffn: dict[str, Any] = {"intermediate_size": int(hidden), "bias": mlp_bias(args)[0]}
    opt.activation(ffn, args)
    if variant == "swiglu":
        ffn["use_gated_activation"] = True
    _set(draft, "layer.ffn", ffn)


def _ffn_ok(args: Args) -> str | None:
    variant, act = args["mlp_variant"], args["activation_variant"]
    if variant == "kan":
        return None  # kan_base_activation's row checks its activation
    if variant not in ("mlp", "swiglu", "dual_path"):
        why = {"identity": "is broken upstream (NameError at construction)"}
        return f"{variant!r} {why.get(variant, 'is not a Forge MLP variant')}"
    if act not in opt.ACTIVATIONS:
        return None  # activation_variant's own row names it
    if variant == "dual_path" and int(args["mlp_down_projs"]) > 1:
        return "dual_path with mlp_down_projs > 1 is not expressible (summed down projections are for the plain MLP)"
    up, down = mlp_bias(args)
    if up != down:
        return "mlp_up_bias and mlp_down_bias differ: one ffn.bias covers both projections here"
    return None


def _kan_ok(args: Args) -> str | None:
    if args["mlp_variant"] == "kan" and args["kan_base_activation"] not in KAN_ACTIVATIONS:
        return f"{args['kan_base_activation']!r}: the KAN base activation must be one of {', '.join(KAN_ACTIVATIONS)}"
    return None


ROWS: tuple[Row, ...] = (
    # sizes
    Row(
        "vocab_size",
        "map",
        "embedding.vocab_size",
        _value("vocab_size", "embedding.vocab_size", int),
        lambda a: None if isinstance(a["vocab_size"], int) else "is not set (train.py fills it from the dataset's meta.pkl)",
    ),
    Row("block_size", "map", "embedding.max_position_embeddings", _value("block_size", "embedding.max_position_embeddings", int)),
    Row("n_layer", "map", "num_layers", _value("n_layer", "num_layers", int)),
    Row(
        "n_embd",
        "map",
        "layer.hidden_dim, embedding.embedding_dim",
        _widths,
    ),
    Row("n_embd_wte", "map", "embedding.embedding_dim (factorized: scale_up / scale_down become the embedding and head projections)"),
    Row("n_embd_wte_scale_tying", "map", "embedding.tie_projections (with n_embd_wte)"),
    Row(
        "n_head",
        "map",
        "layer.attention.num_heads",
        _value("n_head", "layer.attention.num_heads", int),
        lambda a: None if int(a["n_embd"]) % int(a["n_head"]) == 0 else f"{a['n_head']} does not divide n_embd {a['n_embd']}",
    ),
    Row(
        "n_kv_group",
        "map",
        "layer.attention.num_kv_heads (null: n_head)",
        lambda d, a: _set(d, "layer.attention.num_kv_heads", int(a["n_kv_group"] or a["n_head"])),
    ),
    Row(
        "bias",
        "map",
        "layer.attention.bias (and ffn.bias unless mlp_up_bias / mlp_down_bias)",
        lambda d, a: _set(d, "layer.attention.bias", bool(a["bias"])),
    ),
    Row("mlp_up_bias", "map", "layer.ffn.bias (with mlp_down_bias)"),
    Row("mlp_down_bias", "map", "layer.ffn.bias (with mlp_up_bias)"),
    # positions
    Row("use_abs_pos_embeddings", "map", "embedding.positional_encoding.type learned", _positions, _positions_ok),
    Row(
        "use_rotary_embeddings", "map", "embedding.positional_encoding.type rope (rope_theta 10000, rotary_dim rope_length)", None, _rope_ok
    ),
    Row("rope_variant", "map", "rope; soap: embedding.positional_encoding.rope_variant soap (with use_rotary_embeddings)"),
    Row("sym_rot_num_angles", "map", "embedding.positional_encoding.soap_num_angles (with rope_variant soap)"),
    Row("rope_length", "map", "embedding.positional_encoding.rotary_dim"),
    # attention
    Row(
        "attention_variant",
        "map",
        "causal: attention; identity, linear, infinite: layer_types [identity | linear_attention | infinite_attention]",
        opt.layer_types,
        opt.mixers_ok,
    ),
    Row("attention_list", "map", "layer_types (cycling over the layers, as Forge's list)"),
    Row(
        "window_size",
        "map",
        "layer.attention.window_size = window_size + 1 (Forge's window keeps window_size keys before the query)",
        lambda d, a: _set(d, "layer.attention.window_size", None if a["window_size"] is None else int(a["window_size"]) + 1),
    ),
    Row(
        "attn_logit_softcapping",
        "map",
        "layer.attention.logit_softcap (the CLI's bare flag stores True: cap 1.0)",
        lambda d, a: _set(
            d, "layer.attention.logit_softcap", None if a["attn_logit_softcapping"] is None else float(a["attn_logit_softcapping"])
        ),
    ),
    Row("softmax_variant_attn", "map", "layer.attention.softmax {type, options} (docs/forge.md)", opt.softmax, opt.softmax_ok),
    Row("shared_fire_embeddings", "map", "layer.attention.fire.shared (with use_fire_embeddings)"),
    Row(
        "use_fire_embeddings",
        "map",
        "layer.attention.fire {mlp_width, num_hidden_layers, outermost_relu, init_c, init_L, log_bias, shared}",
        opt.fire,
        opt.fire_ok,
    ),
    Row("softmax_variant_output", "ignore", "used only to sample (renormalised by torch.multinomial): the logits are unchanged"),
    Row("disable_flash_attention", "ignore", "the flash and manual paths compute the same attention for every mapped option"),
    Row("use_flex_attn", "ignore", "flex attention computes the same sliding window as the manual path"),
    Row("use_qk_norm", "refuse", "Forge's q/(‖q‖+1e-6) has no learned scale and an epsilon outside the root: not our qk_norm"),
    Row("use_qk_norm_scale", "refuse", "its flash and manual paths give different logits upstream"),
    Row("gate", "refuse", "builds a fresh random Linear at every forward: not a function of the checkpoint"),
    # feed-forward
    Row("mlp_variant", "map", "mlp: layer.ffn; swiglu: gated layer.ffn; kan: layer.ffn.kan (a full-window graph)", _ffn, _ffn_ok),
    Row(
        "activation_variant",
        "map",
        "layer.ffn.activation (+ gelu_shift, activation_knots); swiglu: silu/gelu/relu as the GLU names, any other gate with use_gated_activation",
        None,
        opt.activation_ok,
    ),
    Row("mlp_expansion_factor", "map", "layer.ffn.intermediate_size = factor · n_embd"),
    Row("mlp_size", "map", "layer.ffn.intermediate_size"),
    Row(
        "mlp_down_projs",
        "map",
        "layer.ffn (the k down projections are summed into one at import)",
        accept=lambda a: None if int(a["mlp_down_projs"]) >= 1 else f"{a['mlp_down_projs']} is less than 1",
    ),
    Row("kan_poly_order", "map", "layer.ffn.kan.poly_order"),
    Row("kan_base_activation", "map", "layer.ffn.kan.base_activation", None, _kan_ok),
    Row("kan_middle_layers", "map", "layer.ffn.kan.middle_layers"),
    Row("mlp_x_offset", "map", "layer.ffn.x_offset"),
    Row("mlp_y_offset", "map", "layer.ffn.y_offset"),
    # norms and placement
    Row(
        "norm_variant_attn",
        "map",
        "layer.layer_norm (rmsnorm eps 0, layernorm eps 1e-5, prmsnorm, krmsnorm, hyperspherenorm, dact → dyt, identity)",
        lambda d, a: _set(d, "layer.layer_norm", opt.norm(a["norm_variant_attn"], a)),
        opt.norm_ok("norm_variant_attn"),
    ),
    Row(
        "norm_variant_output",
        "map",
        "final_layer_norm",
        lambda d, a: _set(d, "final_layer_norm", opt.norm(a["norm_variant_output"], a)),
        opt.norm_ok("norm_variant_output"),
    ),
    Row("use_pre_ln", "map", "layer.norm_placement (with use_post_ln, use_peri_ln, use_parallel_mlp)", _placement, _placement_ok),
    Row("use_post_ln", "map", "layer.norm_placement post"),
    Row("use_peri_ln", "map", "layer.norm_placement sandwich (out_ln_* / peri_ln_* weights)"),
    Row("use_parallel_mlp", "map", "layer.parallel"),
    # head
    Row("wte_weight_tying", "map", "tie_word_embeddings", _value("wte_weight_tying", "tie_word_embeddings", bool)),
    Row(
        "final_logit_softcapping",
        "map",
        "final_logit_softcap",
        lambda d, a: _set(d, "final_logit_softcap", None if a["final_logit_softcapping"] is None else float(a["final_logit_softcapping"])),
    ),
    # embeddings, linears, steering
    Row("use_embedding_scale", "map", "embedding.learned_scale (starting at sqrt(n_embd))", opt.embedding_extras),
    Row("quantize_wte", "map", "embedding.quantize_wte {method, bits}", *opt.quantize_table("wte")),
    Row("quantize_wpe", "map", "embedding.quantize_wpe {method, bits}", *opt.quantize_table("wpe")),
    *(
        Row(
            k,
            "map",
            "layer.linear {type: quantized | bitlinear_1p58, apply_to}",
            *((opt.linear, opt.linear_ok) if k == "linear_variant_attn" else ()),
        )
        for k in opt.LINEAR_KEYS
    ),
    Row(
        "use_lsv",
        "map",
        "steering.lsv {variant, num_vectors, layer; one_hot: index 0, scale 1; one_hot_mlp: index 0 (the sampler's defaults)}",
        opt.lsv,
        opt.lsv_ok,
    ),
    Row(
        "lsv_index",
        "ignore",
        "not read by Forge's forward (the sampler picks the vector: index 0 unless --lsv_size); edit steering.lsv.index",
    ),
    Row("apply_vector_at_layer_idx", "map", "steering.vector {file, layer, scale}", opt.steering_vector, opt.steering_vector_ok),
    # training only
    *(Row(k, "ignore", "training only (dropout is off at inference)") for k in ("dropout",)),
    *(
        Row(k, "ignore", "training only: initialisation (the checkpoint holds the trained values)")
        for k in (
            "init_variant",
            "init_scale",
            "init_wte_npy",
            "init_radius",
            "gaussian_min_norm",
            "gaussian_max_norm",
            "embedding_mean_init",
            "embedding_std_init",
            "linear_mean_init",
            "linear_std_init",
            "resid_gaussian_mean_init",
            "resid_gaussian_std_init",
            "import_wte_npy",
            "import_wte_freeze",
            "import_scale_matrices_npz",
            "import_scale_matrices_freeze",
        )
    ),
    *(
        Row(k, "ignore", "training only: writes files during training")
        for k in (
            "export_wte_npy",
            "export_wte_each_eval",
            "export_scale_matrices_npz",
            "export_scale_matrices_each_eval",
            "store_activations",
            "softmax_io_logging",
            "softmax_io_log_interval",
            "consmax_beta_gamma_logging",
        )
    ),
    *(
        Row(k, "ignore", "training only: quantization schedule (eval quantizes fully)")
        for k in ("quant_scheduler", "full_quant_iteration", "start_quant_level", "quantization_warmup_iters")
    ),
    *(Row(k, "ignore", "training only: recomputation for memory") for k in ("use_gradient_checkpointing", "recompute_backward_pass")),
    Row("eval_interval", "ignore", "training only: evaluation schedule"),
    *(
        Row(k, "ignore", "weight sharing only (the state dict repeats the shared tensors under each layer)")
        for k in (
            "shared_mlp_size",
            "shared_mlp_sym",
            "shared_mlp_seq",
            "shared_attn_size",
            "shared_attn_sym",
            "shared_attn_seq",
        )
    ),
    Row("lsv_dataset_num", "map", "steering.lsv.num_vectors (with use_lsv)"),
    # not in the dialect yet (other options of issue 23 add them; turn the row into a map row then)
    *(
        Row(k, "refuse", why)
        for k, why in (
            ("use_moe", "Forge's MoE layers are not mapped yet"),
            ("quantize_attn_act", "activation fake-quant (per-tensor statistics: a full-window option) is not in the dialect yet"),
            ("quantize_mlp_act", "activation fake-quant (per-tensor statistics: a full-window option) is not in the dialect yet"),
            (
                "use_flash_lobo",
                "Forge's flash path prepends the zero key but keeps SDPA's top-left causal mask, so each query loses its own key"
                " (the manual path ignores lobo): not a sink our attention expresses",
            ),
            ("n_lpe", "learned position-embedding transformers are not in the dialect"),
            ("use_ln_f_input_mixer", "mixing the layers' outputs before ln_f is not in the dialect"),
            ("use_attn_resid_scaling", "learned residual scaling is not in the dialect"),
            ("use_mlp_resid_scaling", "learned residual scaling is not in the dialect"),
            ("use_attn_resid_const", "learned residual constants are not in the dialect"),
            ("use_mlp_resid_const", "learned residual constants are not in the dialect"),
            ("n_head_layerlist", "per-layer head counts are not in the dialect yet"),
            ("n_qk_head_dim_layerlist", "per-layer head sizes are not in the dialect yet"),
            ("n_v_head_dim_layerlist", "per-layer head sizes are not in the dialect yet"),
            ("mlp_size_layerlist", "per-layer MLP sizes are not in the dialect yet"),
        )
    ),
    # broken or not exportable upstream
    Row("obtain_vector_at_layer_idx", "refuse", "analysis only upstream: it returns None, which breaks the forward"),
    Row("obtain_vector_file", "ignore", "analysis output file (with obtain_vector_at_layer_idx)"),
    Row("multicontext", "refuse", "several token streams with their own vocabularies are not in the dialect"),
    Row("multidataset_wte", "refuse", "one embedding table per dataset is not in the dialect"),
    Row("vocab_sizes", "refuse", "several vocabularies are not in the dialect"),
)

FAMILIES: tuple[Family, ...] = (
    Family("mlp_variant kan", lambda a: a["mlp_variant"] == "kan", prefixes=("kan_",)),
    Family(
        "softmax_variant_attn",
        lambda a: a["softmax_variant_attn"] != "softmax",
        prefixes=(
            "consmax_",
            "polymax_",
            "relumax_",
            "relu2max_",
            "sigmoidmax_",
            "sigsoftmax_",
            "strongermax_",
            "exppolymax_",
            "softermax_",
            "softplus_",
            "squareplus_",
            "pfla_softmax_",
        ),
        keys=("div_by_seq_len",),
    ),
    Family("use_fire_embeddings", lambda a: bool(a["use_fire_embeddings"]), prefixes=("fire_",)),
    Family("norm_variant krmsnorm", lambda a: "krmsnorm" in (a["norm_variant_attn"], a["norm_variant_output"]), prefixes=("krmsnorm_",)),
    Family("norm_variant prmsnorm", lambda a: "prmsnorm" in (a["norm_variant_attn"], a["norm_variant_output"]), keys=("prmsnorm_pct",)),
    Family(
        "norm_variant hyperspherenorm",
        lambda a: "hyperspherenorm" in (a["norm_variant_attn"], a["norm_variant_output"]),
        prefixes=("hsnorm_",),
    ),
    Family("norm_variant dact", lambda a: "dact" in (a["norm_variant_attn"], a["norm_variant_output"]), prefixes=("dact_",)),
    Family("activation_variant gelu_shifted", lambda a: a["activation_variant"] == "gelu_shifted", prefixes=("shifted_gelu_",)),
    Family(
        "activation_variant piecewise / pfla / learned_spline",
        lambda a: a["activation_variant"] in ("piecewise", "pfla", "pfla_le", "learned_spline"),
        prefixes=("pla_", "pfla_num", "pfla_left", "pfla_right", "lsa_"),
    ),
    Family(
        "learned MLP activation offsets",
        opt.has_offsets,
        keys=("learn_mlp_x_offset", "learn_mlp_y_offset"),
    ),
    Family("attention_variant ssm", lambda a: a["attention_variant"] == "ssm", prefixes=("ssm_",)),
    Family("attention_variant mla", lambda a: a["attention_variant"] == "mla", prefixes=("mla_",), keys=("use_mla_lobo",)),
    Family("attention_variant co4", lambda a: a["attention_variant"] == "co4", keys=("n_latent", "triadic_loops", "mod_fn")),
    Family(
        "attention_variant / attention_list infinite",
        lambda a: "infinite" in opt.mixers(a),
        keys=("n_qk_head_dim", "n_v_head_dim", "n_cproj", "use_concat_heads"),
    ),
    Family(
        "use_flash_lobo",
        lambda a: bool(a["use_flash_lobo"]),
        keys=("use_flash_lobo_per_head", "use_flash_obo_const", "flash_lobo_log_const"),
    ),
    Family("use_moe", lambda a: bool(a["use_moe"]), prefixes=("moe_",), keys=("n_experts",)),
    Family("use_lsv", lambda a: bool(a["use_lsv"]), prefixes=("lsv_",), keys=("apply_lsv_at_layer_idx",)),
    Family(
        "apply_vector_at_layer_idx",
        lambda a: a["apply_vector_at_layer_idx"] is not None,
        keys=("apply_vector_file", "apply_vector_scaling_factor"),
    ),
    Family("n_lpe", lambda a: bool(a["n_lpe"]), prefixes=("lpe_",), keys=("target_layer_in_lpe", "target_layer_out_lpe")),
    Family("use_ln_f_input_mixer", lambda a: bool(a["use_ln_f_input_mixer"]), prefixes=("ln_f_",)),
    Family(
        "use_attn_resid_scaling / const",
        lambda a: bool(a["use_attn_resid_scaling"] or a["use_attn_resid_const"]),
        keys=("attn_confidence_variant", "attn_resid_const", "learn_attn_resid_const"),
    ),
    Family(
        "use_mlp_resid_scaling / const",
        lambda a: bool(a["use_mlp_resid_scaling"] or a["use_mlp_resid_const"]),
        keys=("mlp_confidence_variant", "mlp_resid_const", "learn_mlp_resid_const"),
    ),
    Family("quantize_wte", lambda a: bool(a["quantize_wte"]), keys=("quantize_wte_method", "quantize_wte_bits")),
    Family("quantize_wpe", lambda a: bool(a["quantize_wpe"]), keys=("quantize_wpe_method", "quantize_wpe_bits")),
    Family(
        "activation quantization",
        lambda a: any(bool(v) for k, v in a.items() if k.startswith("quantize_") and "_act" in k and not k.endswith("_bits")),
        prefixes=("quantize_attn_act_", "quantize_mlp_act_"),
        keys=("activations_quant_method", "quantize_attn_act_bits", "quantize_mlp_act_bits"),
    ),
    Family(
        "quantized linear variants",
        lambda a: any(a[k] not in (None, "linear") for k in a if k.startswith("linear_variant_")),
        prefixes=("quantize_linear_",),
    ),
)


def row_for(key: str) -> Row | None:
    return _ROWS.get(key)


def family_for(key: str) -> Family | None:
    return next((f for f in FAMILIES if f.covers(key)), None)


_ROWS = {r.key: r for r in ROWS}
assert len(_ROWS) == len(ROWS), "one row per model_args key"


def markdown() -> str:
    """The mapped / ignored / refused tables and the option families, as docs/forge-import.md shows them."""

    def esc(text: str) -> str:
        return text.replace("|", "\\|")

    out = []
    for kind, title, head in (("map", "Mapped", "becomes"), ("ignore", "Ignored", "why"), ("refuse", "Refused", "why")):
        out += [f"### {title}", "", f"| `model_args` key | {head} |", "|---|---|"]
        out += [f"| `{r.key}` | {esc(r.why)} |" for r in ROWS if r.kind == kind]
        out.append("")
    out += ["### Parameters of an option (inert while it is off)", "", "| option | keys |", "|---|---|"]
    for f in FAMILIES:
        keys = [f"`{p}*`" for p in f.prefixes] + [f"`{k}`" for k in f.keys]
        out.append(f"| {esc(f.option)} | {', '.join(keys)} |")
    return "\n".join(out) + "\n"
