"""Cross-field rules of ReaLLM-Forge's per-token options (norm variants, activations, MLP variants; see
docs/forge-layers.md). Like ``spec/rules.py``: each yields ``(key_path, message)`` from the schema-valid,
default-filled spec dict, before ``load._derive`` fills the derived values."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from yamlllm_export.spec.steering_file import read_steering_vector

Problem = tuple[str, str]

# each Forge norm variant's own keys (None on the other types)
NORM_KEYS = {
    "prmsnorm": ("prmsnorm_pct",),
    "krmsnorm": ("krmsnorm_num", "krmsnorm_select", "krmsnorm_quantize"),
    "hyperspherenorm": ("hypersphere_radius",),
    "dyt": ("dyt_activation", "dyt_alpha_init", "dyt_alpha", "dyt_beta", "dyt_gamma"),
}
GLU_NAMES = {"swiglu", "geglu", "geglu_tanh", "reglu"}
MOE_ACTIVATIONS = {"gelu", "gelu_tanh", "relu", "silu", "squared_relu", *GLU_NAMES}  # what the yamlllm::moe op computes
KNOT_ACTIVATIONS = {"piecewise", "pfla", "pfla_le", "learned_spline"}


def _norm(path: str, norm: dict[str, Any]) -> Iterator[Problem]:
    kind = norm["type"]
    for owner, keys in NORM_KEYS.items():
        for key in keys:
            if owner != kind and norm.get(key) is not None:
                yield f"{path}.{key}", f"applies to type {owner}, not {kind}"
    if norm.get("eps") == 0 and kind == "layernorm":
        yield f"{path}.eps", "0 is RMSNorm's no-epsilon form (ReaLLM-Forge); layernorm needs eps > 0"
    if norm.get("unit_offset") and kind not in ("layernorm", "rmsnorm"):
        yield f"{path}.unit_offset", f"applies to layernorm and rmsnorm, not {kind}"
    if kind == "krmsnorm" and norm.get("krmsnorm_select") == "random":
        yield (
            f"{path}.krmsnorm_select",
            "random draws a fresh random subset at every call in ReaLLM-Forge; no exported graph can reproduce it (use first or last)",
        )
    if kind == "krmsnorm" and norm.get("krmsnorm_quantize") in ("int8", "int16"):
        yield (
            f"{path}.krmsnorm_quantize",
            f"{norm['krmsnorm_quantize']} quantizes with per-tensor statistics of the whole window: a position's output depends on "
            "later tokens, so no KV cache reproduces it (full-window graphs only; use none: float16 rounding)",
        )


def norms(d: dict[str, Any]) -> Iterator[Problem]:
    for path, norm in (("layer.layer_norm", d["layer"]["layer_norm"]), ("final_layer_norm", d.get("final_layer_norm")),
                       ("embedding_layer_norm", d["embedding_layer_norm"])):  # fmt: skip
        if norm:
            yield from _norm(path, norm)


def ffn(d: dict[str, Any]) -> Iterator[Problem]:
    f = d["layer"]["ffn"]
    act, moe, path = f["activation"], f["moe"], "layer.ffn"
    if moe is not None:
        if act not in MOE_ACTIVATIONS:
            yield f"{path}.activation", f"'{act}' with moe: the experts compute {', '.join(sorted(MOE_ACTIVATIONS))} only"
        for key in ("x_offset", "y_offset"):
            if f[key] is not None:
                yield f"{path}.{key}", "applies to a dense FFN, not to moe experts"
        if f["down_projections"] != 1:
            yield f"{path}.down_projections", "applies to a dense FFN, not to moe experts"
        if f["variant"] != "mlp":
            yield f"{path}.variant", f"'{f['variant']}' with moe: the experts are plain or gated MLPs"
    if f["variant"] == "dual_path":
        if f["use_gated_activation"]:
            yield f"{path}.use_gated_activation", "dual_path has one up projection and no gate; set it false"
        if f["down_projections"] != 1:
            yield f"{path}.down_projections", "applies to variant mlp, not dual_path"
    if f["gelu_shift"] is not None and act != "gelu_shifted":
        yield f"{path}.gelu_shift", f"applies to activation gelu_shifted, not {act}"
    knots = f["activation_knots"]
    if knots is not None:
        if act not in KNOT_ACTIVATIONS:
            yield f"{path}.activation_knots", f"applies to the knot activations ({', '.join(sorted(KNOT_ACTIVATIONS))}), not {act}"
        elif knots["left_bound"] >= knots["right_bound"]:
            yield f"{path}.activation_knots.left_bound", f"{knots['left_bound']} must be below right_bound {knots['right_bound']}"
        elif act == "learned_spline" and knots["num"] < 3:
            yield f"{path}.activation_knots.num", f"{knots['num']}: a cubic spline needs at least 3 knots"


def weights(d: dict[str, Any]) -> Iterator[Problem]:
    """Embedding options and linear variants."""
    emb, layer = d["embedding"], d["layer"]
    factorized = emb["embedding_dim"] != layer["hidden_dim"]
    if emb["tie_projections"] and not factorized:
        yield "embedding.tie_projections", "applies to factorized embeddings (embedding_dim ≠ layer.hidden_dim)"
    if emb["quantize_wpe"] is not None and emb["positional_encoding"]["type"] != "learned":
        yield (
            "embedding.quantize_wpe",
            f"quantizes the learned position table; positional_encoding.type is '{emb['positional_encoding']['type']}'",
        )
    lin = layer["linear"]
    if lin is None:
        return
    att, f = layer["attention"], layer["ffn"]
    if "ffn" in lin["apply_to"] and f["moe"] is not None:
        yield "layer.linear.apply_to", "ffn with moe: the experts' weights are stacked, not linear layers (apply_to: [attention])"
    if "attention" in lin["apply_to"] and att["mechanism"] == "mla":
        yield "layer.linear.apply_to", "attention with mechanism 'mla': its latent projections are absorbed into the kernel"
    if lin["type"] == "quantized":
        biased = [k for k, on in (("layer.attention.bias", "attention" in lin["apply_to"] and (att["bias"] or att["qkv_bias"] or att["out_bias"])),
                                  ("layer.ffn.bias", "ffn" in lin["apply_to"] and f["bias"])) if on]  # fmt: skip
        if biased:
            yield (
                "layer.linear.type",
                f"quantized with {biased[0]} true: ReaLLM-Forge's quantized_linear crashes on a bias in eval (`if self.bias:`); "
                "set the bias false",
            )


def steering(d: dict[str, Any]) -> Iterator[Problem]:
    """Layers that exist, selectors that fit the variant, and a readable vector file of hidden_dim numbers."""
    st = d["steering"]
    if st is None:
        return
    vec, lsv, layers = st["vector"], st["lsv"], d["num_layers"]
    if vec is not None:
        if vec["layer"] > layers:
            yield "steering.vector.layer", f"{vec['layer']}: there is no block {vec['layer']} (num_layers {layers})"
        yield from _vector_file(vec["file"], d["layer"]["hidden_dim"])
    if lsv is None:
        return
    n, variant = lsv["num_vectors"], lsv["variant"]
    if lsv["layer"] > layers:
        yield "steering.lsv.layer", f"{lsv['layer']}: there is no block {lsv['layer']} (num_layers {layers})"
    if vec is not None and vec["layer"] == lsv["layer"]:
        yield "steering.lsv.layer", f"{lsv['layer']} is also steering.vector.layer; the order of the two at one layer is not defined"
    selected = variant in ("one_hot", "one_hot_mlp")
    if lsv["index"] is not None and not selected:
        yield "steering.lsv.index", f"applies to one_hot and one_hot_mlp, not {variant} (its router chooses)"
    elif lsv["index"] is not None and lsv["index"] >= n:
        yield "steering.lsv.index", f"{lsv['index']} is not below num_vectors {n}"
    if lsv["scale"] is not None and variant != "one_hot":
        yield "steering.lsv.scale", f"applies to one_hot, not {variant} (Forge scales no other variant)"
    mix = lsv["mixture"]
    if mix is not None:
        if not selected:
            yield "steering.lsv.mixture", f"applies to one_hot and one_hot_mlp, not {variant}"
        elif len(mix) != n:
            yield "steering.lsv.mixture", f"has {len(mix)} weights; num_vectors is {n}"
        elif lsv["index"] is not None or lsv["scale"] is not None:
            yield "steering.lsv.mixture", "replaces the one-hot selection; leave index and scale unset with a mixture"


def _vector_file(path: str, dim: int) -> Iterator[Problem]:
    try:
        read_steering_vector(path, dim)
    except (OSError, ValueError) as err:
        yield "steering.vector.file", f"{path}: {err}"


RULES = (norms, ffn, weights, steering)
