"""Semantic rules the JSON Schema cannot say. Each rule yields ``(key_path, message)``; all are collected.

Rules see the schema-valid, default-filled spec before derived values are filled in (``load._derive``), so
a field the user left unset is still ``None`` here.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from yamlllm_export.spec import forge_rules

GATED = {"swiglu", "geglu", "geglu_tanh", "reglu"}
FACTOR_AT_LEAST_ONE = {"dynamic", "llama3", "yarn", "longrope"}

Problem = tuple[str, str]


def _head_dim(d: dict[str, Any]) -> int:
    att = d["layer"]["attention"]
    return int(att["head_dim"] or d["layer"]["hidden_dim"] // att["num_heads"])


def _attention(d: dict[str, Any]) -> Iterator[Problem]:
    layer, att = d["layer"], d["layer"]["attention"]
    heads, kv = att["num_heads"], att["num_kv_heads"]
    if att["alibi_max_positions"] is not None:  # a key of the dialect that nothing here could honour
        yield (
            "layer.attention.alibi_max_positions",
            "has no effect: the ALiBi bias is computed from the mask for any length; remove it and set "
            "embedding.max_position_embeddings for the longest context",
        )
    if att["use_flash_attention"]:
        yield (
            "layer.attention.use_flash_attention",
            "has no effect: the attention kernel follows build --target (ort: GroupQueryAttention, onnx: Attention, "
            "portable: MatMul/Softmax); remove it",
        )
    if kv is not None:
        if kv > heads:
            yield "layer.attention.num_kv_heads", f"{kv} exceeds num_heads {heads}"
        elif heads % kv:
            yield "layer.attention.num_kv_heads", f"{kv} does not divide num_heads {heads}"
    if att["head_dim"] is None and layer["hidden_dim"] % heads:
        yield (
            "layer.hidden_dim",
            f"{layer['hidden_dim']} is not divisible by num_heads {heads}; set layer.attention.head_dim",
        )
    if att["window_size"] is not None and not att["causal"]:
        yield "layer.attention.window_size", "a sliding window needs causal attention (attention.causal is false)"
    if att["softmax_scale"] is not None and att["mechanism"] == "mla":
        yield "layer.attention.softmax_scale", "MLA derives its scale from the head sizes and YaRN's mscale_all_dim"
    if att["qkv_clip"] is not None and att["mechanism"] == "mla":
        yield "layer.attention.qkv_clip", "MLA has no per-head q/k/v projections to clip"
    if att["sinks"] and att["mechanism"] == "mla":
        yield "layer.attention.sinks", "not available with mechanism 'mla' (its kernel has no sink input)"
    for key in ("nope", "rope_theta", "rope_unscaled"):
        if att[key]:
            yield from _nope(d, f"layer.attention.{key}")
    if att["mechanism"] == "complex" and _head_dim(d) % 2:
        yield "layer.attention.head_dim", f"{_head_dim(d)} is odd; complex attention pairs real and imaginary halves"
    pe = d["embedding"]["positional_encoding"]
    partial = pe["partial_rotary_factor"] != 1.0 or pe["rotary_dim"] not in (None, _head_dim(d))
    if att["mechanism"] == "complex" and pe["type"] == "rope" and partial:
        yield (
            "embedding.positional_encoding.rotary_dim",
            "complex attention rotates every (real, imaginary) pair by its phase; partial rotary cannot be expressed (leave rotary_dim and partial_rotary_factor unset)",
        )


def _mla(d: dict[str, Any]) -> Iterator[Problem]:
    att, pe = d["layer"]["attention"], d["embedding"]["positional_encoding"]
    if att["mechanism"] != "mla":
        for key in ("mla_latent_dim", "mla_rank", "mla_rope_head_dim", "mla_v_head_dim"):
            if att[key] is not None:
                yield f"layer.attention.{key}", f"is set but attention.mechanism is '{att['mechanism']}', not 'mla'"
        return
    if att["mla_latent_dim"] is None:
        yield "layer.attention.mla_latent_dim", "required with mechanism 'mla' (the rank of the compressed KV latent)"
    if pe["type"] == "alibi":
        yield (
            "embedding.positional_encoding.type",
            "'alibi' with attention.mechanism 'mla'; MLA cannot take ALiBi biases (use rope, learned, sinusoidal or none)",
        )
    if pe["type"] != "rope" and att["mla_rope_head_dim"] not in (None, 0):
        yield (
            "layer.attention.mla_rope_head_dim",
            f"is set but positional_encoding.type is '{pe['type']}'; MLA's decoupled RoPE part needs type: rope",
        )
    if att["num_kv_heads"] not in (None, att["num_heads"]):
        yield "layer.attention.num_kv_heads", "MLA derives every head's keys and values from one shared latent; leave num_kv_heads unset"
    if att["qk_norm"] is not None:
        yield "layer.attention.qk_norm", "not available with mechanism 'mla' (MLA normalises its latents itself)"
    if pe["type"] == "rope" and att["mla_rope_head_dim"] == 0:
        yield (
            "layer.attention.mla_rope_head_dim",
            "0 with positional_encoding.type 'rope' leaves MLA nothing to rotate; give a positive even size, or use "
            "positional_encoding.type: none (MLA without RoPE caches the latent alone)",
        )
    if att["mla_rope_head_dim"] is not None and att["mla_rope_head_dim"] % 2:
        yield "layer.attention.mla_rope_head_dim", f"{att['mla_rope_head_dim']} is odd; RoPE rotates pairs of dimensions"
    rope_dim = att["mla_rope_head_dim"] or _head_dim(d) // 2
    # a normalised spec (model.yaml) carries the derived rotary_dim = mla_rope_head_dim: that one is fine
    if pe["rotary_dim"] not in (None, rope_dim) or pe["partial_rotary_factor"] != 1.0:
        yield (
            "embedding.positional_encoding.rotary_dim",
            "MLA rotates its whole decoupled RoPE part (mla_rope_head_dim); leave rotary_dim and partial_rotary_factor unset",
        )


def _positions(d: dict[str, Any]) -> Iterator[Problem]:
    emb = d["embedding"]
    pe, mech = emb["positional_encoding"], d["layer"]["attention"]["mechanism"]
    if pe["type"] == "alibi" and mech != "alibi":
        yield (
            "layer.attention.mechanism",
            f"'{mech}' with positional_encoding.type 'alibi'; ALiBi requires attention.mechanism: alibi",
        )
    if mech == "alibi" and pe["type"] != "alibi":
        yield (
            "embedding.positional_encoding.type",
            f"'{pe['type']}' with attention.mechanism 'alibi'; ALiBi requires positional_encoding.type: alibi",
        )
    pe_max = pe.get("max_position_embeddings")
    if pe_max is not None and pe_max != emb["max_position_embeddings"]:
        yield (
            "embedding.positional_encoding.max_position_embeddings",
            f"{pe_max} disagrees with embedding.max_position_embeddings {emb['max_position_embeddings']}",
        )
    if emb["padding_idx"] is not None and emb["padding_idx"] >= emb["vocab_size"]:
        yield "embedding.padding_idx", f"{emb['padding_idx']} is outside vocab_size {emb['vocab_size']}"
    if pe["type"] != "rope":
        for key, unset in (("rotary_dim", None), ("partial_rotary_factor", 1.0), ("rope_scaling", None)):
            if pe[key] != unset:
                yield f"embedding.positional_encoding.{key}", f"applies to RoPE, but positional_encoding.type is '{pe['type']}'"
        return
    yield from _rope(d, pe)


def _rope(d: dict[str, Any], pe: dict[str, Any]) -> Iterator[Problem]:
    path = "embedding.positional_encoding"
    if d["layer"]["attention"]["mechanism"] != "mla":
        head_dim = _head_dim(d)
        derived = int(head_dim * pe["partial_rotary_factor"]) // 2 * 2
        # a normalised spec (model.yaml) carries both, the rotary_dim derived from the factor: that one is fine
        if pe["rotary_dim"] not in (None, derived) and pe["partial_rotary_factor"] != 1.0:
            yield f"{path}.rotary_dim", "set either rotary_dim or partial_rotary_factor, not both"
        elif pe["rotary_dim"] is not None and (pe["rotary_dim"] % 2 or pe["rotary_dim"] > head_dim):
            yield f"{path}.rotary_dim", f"{pe['rotary_dim']} must be even and at most head_dim {head_dim}"
        elif pe["rotary_dim"] is None and int(head_dim * pe["partial_rotary_factor"]) < 2:
            yield f"{path}.partial_rotary_factor", f"{pe['partial_rotary_factor']} of head_dim {head_dim} rotates no pair of dimensions"
        elif pe["rotary_dim"] is None and pe["partial_rotary_factor"] == 1.0 and head_dim % 2:
            yield "layer.attention.head_dim", f"{head_dim} is odd; RoPE rotates pairs of dimensions"
    scaling = pe["rope_scaling"]
    if scaling is None:
        return
    kind = scaling["type"]
    if kind in FACTOR_AT_LEAST_ONE and scaling["factor"] < 1:
        yield f"{path}.rope_scaling.factor", f"{scaling['factor']} is below 1; {kind} scaling extends the context"
    if kind == "llama3" and scaling["high_freq_factor"] <= scaling["low_freq_factor"]:
        yield (
            f"{path}.rope_scaling.high_freq_factor",
            f"{scaling['high_freq_factor']} must exceed low_freq_factor {scaling['low_freq_factor']}",
        )
    for key in ("mscale", "mscale_all_dim"):
        if kind != "yarn" and scaling[key] is not None:
            yield f"{path}.rope_scaling.{key}", f"applies to yarn scaling, not {kind}"
    if kind != "yarn" and not scaling["truncate"]:
        yield f"{path}.rope_scaling.truncate", f"applies to yarn scaling, not {kind}"
    if kind == "yarn" and scaling["beta_fast"] <= scaling["beta_slow"]:
        yield f"{path}.rope_scaling.beta_fast", f"{scaling['beta_fast']} must exceed beta_slow {scaling['beta_slow']}"
    yield from _longrope(d, pe)


def _rotary_dim(d: dict[str, Any], pe: dict[str, Any]) -> int:
    """The rotary dim ``load._derive`` will fill in when unset."""
    att = d["layer"]["attention"]
    if att["mechanism"] == "mla":
        return att["mla_rope_head_dim"] or _head_dim(d) // 2
    return pe["rotary_dim"] or int(_head_dim(d) * pe["partial_rotary_factor"]) // 2 * 2


def _longrope(d: dict[str, Any], pe: dict[str, Any]) -> Iterator[Problem]:
    """short_factor and long_factor: both with longrope, one factor per rotated pair; neither otherwise."""
    path, scaling = "embedding.positional_encoding.rope_scaling", pe["rope_scaling"]
    for key in ("short_factor", "long_factor"):
        factors = scaling[key]
        if scaling["type"] != "longrope":
            if factors is not None:
                yield f"{path}.{key}", f"applies to longrope scaling, not {scaling['type']}"
        elif factors is None:
            yield f"{path}.{key}", "required with longrope scaling (one rescale factor per rotated pair)"
        elif len(factors) != _rotary_dim(d, pe) // 2:
            yield f"{path}.{key}", f"has {len(factors)} factors; rotary_dim {_rotary_dim(d, pe)} needs {_rotary_dim(d, pe) // 2}"


def _ffn(d: dict[str, Any]) -> Iterator[Problem]:
    ffn = d["layer"]["ffn"]
    act, gated = ffn["activation"], ffn["use_gated_activation"]
    if act in GATED and not gated:
        yield "layer.ffn.use_gated_activation", f"'{act}' is a gated activation and requires use_gated_activation: true"
    inputs = [k for k in ("expansion_factor", "multiple_of", "ffn_dim_multiplier") if ffn[k] is not None]
    if ffn["intermediate_size"] is not None and inputs:
        from yamlllm_export.spec.load import ffn_size

        # a normalised spec (model.yaml) carries both, the size derived from them: that one is fine
        if ffn["intermediate_size"] != ffn_size(d["layer"]["hidden_dim"], ffn):
            yield f"layer.ffn.{inputs[0]}", "set either intermediate_size or the values it is derived from, not both"
    if ffn["ffn_dim_multiplier"] is not None and ffn["multiple_of"] is None:
        yield "layer.ffn.ffn_dim_multiplier", "needs layer.ffn.multiple_of (LLaMA rounding)"
    if ffn["kan"] is not None and ffn["moe"] is not None:
        yield "layer.ffn.kan", "replaces the dense MLP; it cannot be combined with layer.ffn.moe"
    moe = ffn["moe"]
    if moe is not None:
        if moe["top_k"] > moe["num_experts"]:
            yield "layer.ffn.moe.top_k", f"{moe['top_k']} exceeds num_experts {moe['num_experts']}"
        outside = [i for i in moe["dense_layers"] if i >= d["num_layers"]]
        if outside:
            yield "layer.ffn.moe.dense_layers", f"layer {outside[0]} does not exist (num_layers {d['num_layers']})"
        elif moe["frequency"] > d["num_layers"]:
            yield "layer.ffn.moe.frequency", f"{moe['frequency']} exceeds num_layers {d['num_layers']}: no layer would be MoE"
        elif not any((i + 1) % moe["frequency"] == 0 for i in range(moe["first_dense_layers"], d["num_layers"])):
            yield (
                "layer.ffn.moe.first_dense_layers",
                f"{moe['first_dense_layers']} dense layers leave no MoE layer (num_layers {d['num_layers']}, frequency {moe['frequency']})",
            )
        elif not any(
            (i + 1) % moe["frequency"] == 0 and i not in moe["dense_layers"] for i in range(moe["first_dense_layers"], d["num_layers"])
        ):
            yield (
                "layer.ffn.moe.dense_layers",
                f"{moe['dense_layers']} leave no MoE layer (num_layers {d['num_layers']}, frequency {moe['frequency']})",
            )
        yield from _moe_groups(moe)
        yield from _moe_routing(moe)
        if moe["clamped_swiglu"] is not None and act != "swiglu":
            yield (
                "layer.ffn.moe.clamped_swiglu",
                f"clamps a SwiGLU's gate and up projections; layer.ffn.activation is '{act}', not 'swiglu'",
            )


def _moe_groups(moe: dict[str, Any]) -> Iterator[Problem]:
    """Group-limited routing: equal groups, and enough experts in the chosen groups for top_k."""
    groups, top, experts = moe["num_groups"], moe["top_groups"], moe["num_experts"]
    if experts % groups:
        yield "layer.ffn.moe.num_groups", f"{groups} does not divide num_experts {experts} into equal groups"
    elif top is not None and top > groups:
        yield "layer.ffn.moe.top_groups", f"{top} exceeds num_groups {groups}"
    elif top is not None and moe["top_k"] > top * (experts // groups):
        yield "layer.ffn.moe.top_k", f"{moe['top_k']} exceeds the {top * (experts // groups)} experts of top_groups {top} groups"


def _moe_routing(moe: dict[str, Any]) -> Iterator[Problem]:
    """SparseMixer picks its experts pass by pass over all of them: no groups; its threshold only applies to it."""
    if moe["routing"] == "sparsemixer" and moe["num_groups"] != 1:
        yield "layer.ffn.moe.num_groups", f"{moe['num_groups']} groups with routing sparsemixer (group-limited routing is softmax's)"
    if moe["routing"] != "sparsemixer" and moe["jitter_eps"] is not None:
        yield "layer.ffn.moe.jitter_eps", f"applies to routing sparsemixer, not {moe['routing']}"


def _layout(d: dict[str, Any]) -> Iterator[Problem]:
    layer = d["layer"]
    if layer["parallel"] and layer["norm_placement"] != "pre":
        yield (
            "layer.parallel",
            f"a parallel block is pre-norm (one norm feeds attention and FFN); norm_placement is '{layer['norm_placement']}'",
        )
    if layer["parallel_norms"] != "shared" and not layer["parallel"]:
        yield "layer.parallel_norms", f"'{layer['parallel_norms']}' applies to a parallel block; layer.parallel is false"
    norms = (("layer.layer_norm", layer["layer_norm"]), ("final_layer_norm", d.get("final_layer_norm")))
    for path, norm in (*norms, ("embedding_layer_norm", d["embedding_layer_norm"])):
        if norm and norm.get("unit_offset") and not norm.get("elementwise_affine", True):
            yield f"{path}.unit_offset", "needs elementwise_affine: true (the offset applies to the learned scale)"
    for k, entry in enumerate(d["layer_overrides"]):
        for index in entry["layers"]:
            if index >= d["num_layers"]:
                yield f"layer_overrides[{k}].layers", f"layer {index} does not exist (num_layers {d['num_layers']})"
        window = entry.get("attention", {}).get("window_size")
        if window is not None and not layer["attention"]["causal"]:
            yield f"layer_overrides[{k}].attention.window_size", "a sliding window needs causal attention (attention.causal is false)"
        for key in ("nope", "rope_theta", "rope_unscaled"):
            if entry.get("attention", {}).get(key):
                yield from _nope(d, f"layer_overrides[{k}].attention.{key}")
        if entry.get("attention", {}).get("sinks") and layer["attention"]["mechanism"] == "mla":
            yield f"layer_overrides[{k}].attention.sinks", "not available with mechanism 'mla' (its kernel has no sink input)"


def _nope(d: dict[str, Any], path: str) -> Iterator[Problem]:
    """Per-layer RoPE settings (none, another base, unscaled) need RoPE to change, in an attention that
    rotates q and k itself."""
    kind = d["embedding"]["positional_encoding"]["type"]
    if kind != "rope":
        yield path, f"needs embedding.positional_encoding.type rope (it is {kind})"
    elif d["layer"]["attention"]["mechanism"] == "mla":
        yield path, "MLA's decoupled rotary part cannot be changed per layer"


def _tokens(d: dict[str, Any]) -> Iterator[Problem]:
    vocab, tokens = d["embedding"]["vocab_size"], d["tokens"]
    for key, value in tokens.items():
        for token in value if isinstance(value, list) else [value]:
            if token is not None and token >= vocab:
                yield f"tokens.{key}", f"{token} is not below embedding.vocab_size {vocab}"


def _forge_positions(d: dict[str, Any]) -> Iterator[Problem]:
    """Interleaved pairs and SOAP change the RoPE tables and rotation of standard attention; MLA and complex
    attention rotate in their own layouts."""
    pe, mech = d["embedding"]["positional_encoding"], d["layer"]["attention"]["mechanism"]
    path = "embedding.positional_encoding"
    changed = [(k, pe[k]) for k, default in (("rope_layout", "half"), ("rope_variant", "rope")) if pe[k] != default]
    for key, value in changed:
        if pe["type"] != "rope":
            yield f"{path}.{key}", f"{value!r} applies to RoPE, but positional_encoding.type is '{pe['type']}'"
        elif mech in ("mla", "complex"):
            yield f"{path}.{key}", f"{value!r} is not available with attention.mechanism '{mech}' (it rotates in its own layout)"
    if pe["rope_variant"] == "soap" and pe["rope_scaling"] is not None:
        yield f"{path}.rope_scaling", "SOAP turns every pair by one frequency 2π/N; RoPE scaling does not apply to it"
    if pe["soap_num_angles"] is not None and (pe["type"] != "rope" or pe["rope_variant"] != "soap"):
        yield f"{path}.soap_num_angles", "applies to rope_variant soap"


def _forge_attention(d: dict[str, Any]) -> Iterator[Problem]:
    """A softmax variant and FIRE: standard attention only; the variant's options must be ones it reads."""
    from yamlllm_export.spec.forge import SOFTMAX_COMMON, SOFTMAX_OPTIONS

    att = d["layer"]["attention"]
    path = "layer.attention"
    for key in ("softmax", "fire"):
        if att[key] is not None and att["mechanism"] != "standard":
            yield f"{path}.{key}", f"is implemented for attention.mechanism standard, not '{att['mechanism']}'"
    if att["fire"] is not None and not att["causal"]:
        yield f"{path}.fire", "FIRE needs causal attention (attention.causal is false): its normaliser reads the query's position"
    softmax = att["softmax"]
    if softmax is None:
        return
    kind = softmax["type"]
    if kind == "squareplus":
        yield (
            f"{path}.softmax.type",
            "'squareplus' is broken upstream (ReaLLM-Forge): it is NaN at a masked score (-inf), so causal attention gives NaN; choose another variant",
        )
        return
    if softmax["div_by_seq_len"]:
        yield (
            f"{path}.softmax.div_by_seq_len",
            "divides every row by the length of the whole window, which a KV cache cannot reproduce (a row's weights would "
            "depend on later tokens); it needs a full-window graph, which this build does not have",
        )
    for key, value in softmax.items():
        if key not in SOFTMAX_COMMON and value is not None and key not in SOFTMAX_OPTIONS[kind]:
            reason = " (only the Euler base works upstream)" if key == "base" and kind in ("sigsoftmax", "exppolymax") else ""
            yield f"{path}.softmax.{key}", f"is not an option of softmax variant '{kind}'{reason}"
    if kind == "pfla_softmax":
        bounds = {k: softmax[k] if softmax[k] is not None else SOFTMAX_OPTIONS[kind][k] for k in ("x_min", "x_max")}
        if bounds["x_min"] >= bounds["x_max"]:
            yield f"{path}.softmax.x_min", f"{bounds['x_min']} must be below x_max {bounds['x_max']}"
    if kind == "pfla_softmax" and softmax["learned_divisor_init"] is not None and not softmax["learned_divisor"]:
        yield f"{path}.softmax.learned_divisor_init", "applies with learned_divisor: true"
    if att["sinks"]:
        yield (
            f"{path}.sinks",
            "a sink joins the softmax's denominator; not with a softmax variant (strongermax has its own off-by-one, obo)",
        )
    for k, entry in enumerate(d["layer_overrides"]):
        if entry.get("attention", {}).get("sinks"):
            yield f"layer_overrides[{k}].attention.sinks", "not with layer.attention.softmax (a sink belongs to the softmax)"


def _mixers(d: dict[str, Any]) -> Iterator[Problem]:
    """Per-layer mixer kinds (``layer_types``): a recurrent state is causal, and a kind's block fits its width."""
    kinds = d["layer_types"] or ["attention"]
    layer = d["layer"]
    recurrent = sorted({k for k in kinds if k in ("short_conv", "linear_attention")})
    if recurrent and not layer["attention"]["causal"]:
        yield "layer_types", f"{', '.join(recurrent)} layers are causal (a recurrent state); layer.attention.causal is false"
    lin = layer["linear_attention"]
    heads = (lin or {}).get("num_heads")
    if heads is not None and layer["hidden_dim"] % heads:
        yield "layer.linear_attention.num_heads", f"{heads} does not divide hidden_dim {layer['hidden_dim']}"
    if heads is None and "linear_attention" in kinds and layer["hidden_dim"] % layer["attention"]["num_heads"]:
        yield (
            "layer.linear_attention.num_heads",
            f"null takes layer.attention.num_heads, which does not divide hidden_dim {layer['hidden_dim']}",
        )
    inf = layer["infinite_attention"] or {}
    if inf or "infinite_attention" in kinds:
        yield from _infinite(d, inf)
    if "attention" not in kinds and d["layer_overrides"]:
        yield "layer_overrides", "override attention settings, but layer_types has no attention layer"


def _infinite(d: dict[str, Any], inf: dict[str, Any]) -> Iterator[Problem]:
    """Infinite heads: GQA groups divide the heads; RoPE rotates within the q/k head; ALiBi's per-head bias has
    the attention layers' head count."""
    heads, kv = inf.get("num_heads") or d["layer"]["attention"]["num_heads"], inf.get("num_kv_heads")
    if kv is not None and (kv > heads or heads % kv):
        yield "layer.infinite_attention.num_kv_heads", f"{kv} does not divide num_heads {heads}"
    pe = d["embedding"]["positional_encoding"]
    qk = inf.get("qk_head_dim") or _head_dim(d)
    if pe["type"] == "rope" and _rotary_dim(d, pe) > qk:
        yield "layer.infinite_attention.qk_head_dim", f"{qk} is smaller than the rotary dim {_rotary_dim(d, pe)}"
    if pe["type"] == "alibi":
        yield "layer_types", "infinite_attention layers take no ALiBi bias (embedding.positional_encoding.type alibi)"


RULES = (_attention, _mla, _positions, _forge_positions, _forge_attention, _ffn, _layout, _mixers, _tokens, *forge_rules.RULES)


def problems(filled: dict[str, Any]) -> list[Problem]:
    """All semantic problems of a schema-valid, default-filled spec dict, in rule order."""
    return [p for rule in RULES for p in rule(filled)]
