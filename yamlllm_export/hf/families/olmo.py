"""OLMo 1 (model_type ``olmo``): LLaMA's attention and SwiGLU with LayerNorms that have no weight or bias
(``elementwise_affine: false``, eps 1e-5 fixed in transformers) and the query, key and value projections
clamped to [-clip_qkv, clip_qkv] (``layer.attention.qkv_clip``)."""

from __future__ import annotations

from typing import Any

from yamlllm_export.hf.config import HFConfig
from yamlllm_export.hf.families.base import Family, State, drop_empty, renamed, rope_embedding
from yamlllm_export.hf.families.llama import RULES as LLAMA_RULES
from yamlllm_export.hf.families.llama import attention_dims, swiglu_ffn

NORM = {"type": "layernorm", "eps": 1e-5, "elementwise_affine": False}  # OlmoLayerNorm: eps is not read from the config


def olmo_spec(cfg: HFConfig) -> dict[str, Any]:
    dims = attention_dims(cfg)
    d = cfg.require("hidden_size")
    head_dim = dims.get("head_dim", d // dims["num_heads"])
    attention = {**dims, "bias": bool(cfg.get("attention_bias", False)), "qkv_clip": cfg.get("clip_qkv")}
    return {
        "embedding": rope_embedding(cfg, head_dim),
        "num_layers": cfg.require("num_hidden_layers"),
        "layer": {"hidden_dim": d, "attention": drop_empty(attention), "ffn": swiglu_ffn(cfg, bias=False), "layer_norm": NORM},
        "final_layer_norm": NORM,
        "tie_word_embeddings": bool(cfg.get("tie_word_embeddings", False)),
    }


def olmo_weights(cfg: HFConfig, state: State) -> State:
    return renamed(cfg, state, LLAMA_RULES)


FAMILY = Family(model_types=("olmo",), to_spec=olmo_spec, convert=olmo_weights)
