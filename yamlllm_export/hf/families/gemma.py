"""Gemma (model_type ``gemma``): LLaMA's layout and tensor names with GeGLU (tanh gelu), RMSNorm scaled by
(1 + w) (``unit_offset``), token embeddings times √hidden_size, an explicit head_dim, MQA/GQA and a head
tied to the embeddings by default."""

from __future__ import annotations

from typing import Any

from yamlllm_export.hf.config import HFConfig
from yamlllm_export.hf.families.base import Family, State, drop_empty, renamed, rope_embedding
from yamlllm_export.hf.families.llama import RULES, attention_dims, rms_norm

# the GLU for the gate activation: tanh-approximate gelu (Gemma's own) or exact
GATES = {"gelu_pytorch_tanh": "geglu_tanh", "gelu_new": "geglu_tanh", "gelu_fast": "geglu_tanh", "gelu": "geglu"}


def gated_gelu(cfg: HFConfig) -> dict[str, Any]:
    """transformers 4.x Gemma read ``hidden_activation`` (tanh gelu when unset) and ignored ``hidden_act``;
    5.x reads ``hidden_act``. A config naming ``hidden_activation`` means it; otherwise ``hidden_act``."""
    key = "hidden_activation" if cfg.get("hidden_activation") is not None else "hidden_act"
    name = cfg.get(key, "gelu_pytorch_tanh")
    if name not in GATES:
        raise cfg.refuse(key, f"Gemma's gated FFN is mapped as GeGLU (supported: {', '.join(GATES)})")
    return {"intermediate_size": cfg.require("intermediate_size"), "activation": GATES[name], "use_gated_activation": True, "bias": False}


def gemma_norm(cfg: HFConfig) -> dict[str, Any]:
    return {**rms_norm(cfg), "unit_offset": True}


def gemma_spec(cfg: HFConfig) -> dict[str, Any]:
    if cfg.get("use_bidirectional_attention", False):
        raise cfg.refuse("use_bidirectional_attention", "only the causal language model is mapped")
    dims = attention_dims(cfg)
    d = cfg.require("hidden_size")
    head_dim = dims.get("head_dim", d // dims["num_heads"])
    return {
        "embedding": {**rope_embedding(cfg, head_dim), "scale": "sqrt_hidden"},
        "num_layers": cfg.require("num_hidden_layers"),
        "layer": {
            "hidden_dim": d,
            "attention": drop_empty({**dims, "bias": bool(cfg.get("attention_bias", False))}),
            "ffn": gated_gelu(cfg),
            "layer_norm": gemma_norm(cfg),
        },
        "final_layer_norm": gemma_norm(cfg),
        "tie_word_embeddings": bool(cfg.get("tie_word_embeddings", True)),
    }


def gemma_weights(cfg: HFConfig, state: State) -> State:
    return renamed(cfg, state, RULES)


FAMILY = Family(model_types=("gemma",), to_spec=gemma_spec, convert=gemma_weights)
