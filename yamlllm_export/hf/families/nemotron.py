"""Nemotron (model_type ``nemotron``, Nemotron-3/4, Minitron): LayerNorm with the weight stored as an offset
from one ("layernorm1p": ``unit_offset``), an MLP without gate whose activation is squared ReLU
(``relu2`` → ``squared_relu``), partial rotary (half of each head by default), GQA and optional biases."""

from __future__ import annotations

from typing import Any

from yamlllm_export.hf.config import HFConfig
from yamlllm_export.hf.families.base import Family, State, drop_empty, plain_activation, renamed, rope_embedding
from yamlllm_export.hf.families.llama import attention_dims
from yamlllm_export.hf.families.phi import partial_rotary_dim

_LAYER = r"model\.layers\.(\d+)\."
RULES = [
    (r"model\.embed_tokens\.weight", "embed.weight"),
    (_LAYER + r"self_attn\.([qkvo])_proj\.(weight|bias)", r"blocks.\1.attn.\2_proj.\3"),
    (_LAYER + r"mlp\.(up|down)_proj\.(weight|bias)", r"blocks.\1.ffn.\2.\3"),
    (_LAYER + r"input_layernorm\.(weight|bias)", r"blocks.\1.attn_norms.pre.\2"),
    (_LAYER + r"post_attention_layernorm\.(weight|bias)", r"blocks.\1.ffn_norms.pre.\2"),
    (r"model\.norm\.(weight|bias)", r"final_norm.\1"),
    (r"lm_head\.weight", "lm_head.weight"),
]
PARTIAL_ROTARY = 0.5  # NemotronConfig's default when the config names none


def _activation(cfg: HFConfig) -> str:
    """relu2 (the default) is squared ReLU; any other name as the plain activations map it."""
    return "squared_relu" if cfg.get("hidden_act", "relu2") == "relu2" else plain_activation(cfg, "hidden_act", "relu2")


def nemotron_spec(cfg: HFConfig) -> dict[str, Any]:
    raw = dict(cfg.raw)
    if "partial_rotary_factor" not in (cfg.get("rope_parameters") or {}) and cfg.get("partial_rotary_factor") is None:
        raw["partial_rotary_factor"] = PARTIAL_ROTARY
    cfg = HFConfig(cfg.folder, raw, cfg.source)
    dims = attention_dims(cfg)
    d = cfg.require("hidden_size")
    head_dim = dims.get("head_dim", d // dims["num_heads"])
    norm = {"type": "layernorm", "eps": cfg.get("norm_eps", 1e-5), "unit_offset": True}
    ffn = {"intermediate_size": cfg.require("intermediate_size"), "activation": _activation(cfg), "bias": bool(cfg.get("mlp_bias", False))}
    return {
        "embedding": rope_embedding(cfg, head_dim, rotary_dim=partial_rotary_dim(cfg, head_dim)),
        "num_layers": cfg.require("num_hidden_layers"),
        "layer": {
            "hidden_dim": d,
            "attention": drop_empty({**dims, "bias": bool(cfg.get("attention_bias", False))}),
            "ffn": ffn,
            "layer_norm": norm,
        },
        "final_layer_norm": norm,
        "tie_word_embeddings": bool(cfg.get("tie_word_embeddings", False)),
    }


def nemotron_weights(cfg: HFConfig, state: State) -> State:
    return renamed(cfg, state, RULES)


FAMILY = Family(model_types=("nemotron",), to_spec=nemotron_spec, convert=nemotron_weights)
