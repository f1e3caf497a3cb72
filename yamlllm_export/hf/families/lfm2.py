"""LFM2 (model_type ``lfm2``, Liquid AI): a hybrid of gated short-convolution layers (``layer_types``
``short_conv``; its conv state is ``past.{i}.conv``) and GQA attention layers with a per-head RMSNorm on q
and k, RMSNorm pre-norm blocks, a SwiGLU FFN whose size LFM2 adjusts (2/3, multiplier, rounded up to
``block_multiple_of``), and a final RMSNorm that transformers calls ``embedding_norm``."""

from __future__ import annotations

import math
from typing import Any

from yamlllm_export.hf.config import HFConfig
from yamlllm_export.hf.families.base import Family, State, renamed, rope_embedding
from yamlllm_export.hf.families.llama import attention_dims

_LAYER = r"model\.layers\.(\d+)\."
RULES = [
    (r"model\.embed_tokens\.weight", "embed.weight"),
    (_LAYER + r"self_attn\.([qkv])_proj\.weight", r"blocks.\1.attn.\2_proj.weight"),
    (_LAYER + r"self_attn\.out_proj\.weight", r"blocks.\1.attn.o_proj.weight"),
    (_LAYER + r"self_attn\.([qk])_layernorm\.weight", r"blocks.\1.attn.\2_norm.norm.weight"),
    (_LAYER + r"conv\.(in_proj|out_proj)\.(weight|bias)", r"blocks.\1.attn.\2.\3"),
    (_LAYER + r"conv\.conv\.weight", r"blocks.\1.attn.conv_weight"),  # (d, 1, L): squeezed below
    (_LAYER + r"conv\.conv\.bias", r"blocks.\1.attn.conv_bias"),
    (_LAYER + r"feed_forward\.w1\.weight", r"blocks.\1.ffn.gate.weight"),
    (_LAYER + r"feed_forward\.w3\.weight", r"blocks.\1.ffn.up.weight"),
    (_LAYER + r"feed_forward\.w2\.weight", r"blocks.\1.ffn.down.weight"),
    (_LAYER + r"operator_norm\.weight", r"blocks.\1.attn_norms.pre.weight"),
    (_LAYER + r"ffn_norm\.weight", r"blocks.\1.ffn_norms.pre.weight"),
    (r"model\.embedding_norm\.weight", "final_norm.weight"),  # applied after the last layer, despite its name
    (r"lm_head\.weight", "lm_head.weight"),
]
KINDS = {"conv": "short_conv", "full_attention": "attention"}


def ffn_size(cfg: HFConfig) -> int:
    """Lfm2MLP's hidden size: with ``block_auto_adjust_ff_dim`` (default), int(2/3 · I), × the multiplier,
    rounded up to ``block_multiple_of``."""
    size = int(cfg.require("intermediate_size"))
    if cfg.get("block_auto_adjust_ff_dim", True):
        size = int(2 * size / 3)
        multiplier = cfg.get("block_ffn_dim_multiplier", 1.0)
        if multiplier is not None:
            size = int(multiplier * size)
            m = int(cfg.get("block_multiple_of", 256))
            size = m * math.ceil(size / m)
    return size


def layer_types(cfg: HFConfig) -> list[str]:
    """Each layer's kind from ``layer_types`` (or ``full_attn_idxs``, which Lfm2Config turns into it)."""
    layers = cfg.require("num_hidden_layers")
    kinds = cfg.get("layer_types")
    if kinds is None:
        attn = cfg.get("full_attn_idxs", list(range(layers)))
        kinds = ["full_attention" if i in attn else "conv" for i in range(layers)]
    if len(kinds) != layers:
        raise cfg.refuse("layer_types", f"one entry per layer is needed ({layers} layers)")
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        raise cfg.refuse("layer_types", f"layer kind {unknown[0]!r}; supported: {', '.join(KINDS)}")
    return [KINDS[k] for k in kinds]


def lfm2_spec(cfg: HFConfig) -> dict[str, Any]:
    dims = attention_dims(cfg)
    d = cfg.require("hidden_size")
    head_dim = dims.get("head_dim", d // dims["num_heads"])
    norm = {"type": "rmsnorm", "eps": cfg.get("norm_eps", 1e-5)}
    kinds = layer_types(cfg)
    layer: dict[str, Any] = {
        "hidden_dim": d,
        "attention": {**dims, "bias": False, "qk_norm": {**norm, "scope": "head"}},
        "ffn": {"intermediate_size": ffn_size(cfg), "activation": "swiglu", "use_gated_activation": True, "bias": False},
        "layer_norm": norm,
    }
    if "short_conv" in kinds:
        layer["short_conv"] = {"L_cache": int(cfg.get("conv_L_cache", 3)), "bias": bool(cfg.get("conv_bias", False))}
    embedding = rope_embedding(cfg, head_dim)
    if not (cfg.get("rope_parameters") or {}).get("rope_theta") and cfg.get("rope_theta") is None:
        embedding["positional_encoding"]["rope_theta"] = 1e6  # Lfm2Config's default base
    spec: dict[str, Any] = {
        "embedding": embedding,
        "num_layers": len(kinds),
        "layer_types": kinds,
        "layer": layer,
        "final_layer_norm": norm,
        "tie_word_embeddings": bool(cfg.get("tie_word_embeddings", cfg.get("tie_embedding", True))),
    }
    return spec


def lfm2_weights(cfg: HFConfig, state: State) -> State:
    out = renamed(cfg, state, RULES)
    return {name: t.squeeze(1) if name.endswith("attn.conv_weight") else t for name, t in out.items()}


FAMILY = Family(model_types=("lfm2",), to_spec=lfm2_spec, convert=lfm2_weights)
