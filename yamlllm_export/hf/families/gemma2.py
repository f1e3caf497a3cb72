"""Gemma 2 (model_type ``gemma2``): Gemma with a norm before and after each sub-layer (``norm_placement:
sandwich``), soft-capped attention scores and logits, and a sliding window on every other layer."""

from __future__ import annotations

from typing import Any

from yamlllm_export.hf.config import HFConfig
from yamlllm_export.hf.families.base import Family, State, renamed, window_overrides
from yamlllm_export.hf.families.gemma import gemma_spec
from yamlllm_export.hf.families.llama import RULES as LLAMA_RULES

_LAYER = r"model\.layers\.(\d+)\."
RULES = [
    (_LAYER + r"input_layernorm\.weight", r"blocks.\1.attn_norms.pre.weight"),
    (_LAYER + r"post_attention_layernorm\.weight", r"blocks.\1.attn_norms.post.weight"),
    (_LAYER + r"pre_feedforward_layernorm\.weight", r"blocks.\1.ffn_norms.pre.weight"),
    (_LAYER + r"post_feedforward_layernorm\.weight", r"blocks.\1.ffn_norms.post.weight"),
    *LLAMA_RULES,  # the rest as in LLaMA; first match wins, so the four norms above take precedence
]


def _layer_types(cfg: HFConfig, num_layers: int) -> list[str]:
    """``layer_types``, or what configs written before it meant: even layers (0, 2, ...) slide."""
    kinds = cfg.get("layer_types")
    return list(kinds) if kinds is not None else ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(num_layers)]


def gemma2_spec(cfg: HFConfig) -> dict[str, Any]:
    spec = gemma_spec(cfg)
    layer, att = spec["layer"], spec["layer"]["attention"]
    head_dim = att.get("head_dim", layer["hidden_dim"] // att["num_heads"])
    if cfg.get("query_pre_attn_scalar", head_dim) != head_dim:
        raise cfg.refuse("query_pre_attn_scalar", f"attention scores are scaled by 1/sqrt(head_dim) = 1/sqrt({head_dim})")
    layers = spec["num_layers"]
    typed = HFConfig(cfg.folder, {**cfg.raw, "layer_types": _layer_types(cfg, layers)}, cfg.source)
    window, overrides = window_overrides(typed, cfg.get("sliding_window"), layers)
    att.update({k: v for k, v in (("window_size", window), ("logit_softcap", cfg.get("attn_logit_softcapping"))) if v is not None})
    layer["norm_placement"] = "sandwich"
    if cfg.get("final_logit_softcapping") is not None:
        spec["final_logit_softcap"] = cfg.get("final_logit_softcapping")
    if overrides:
        spec["layer_overrides"] = overrides
    return spec


def gemma2_weights(cfg: HFConfig, state: State) -> State:
    return renamed(cfg, state, RULES)


FAMILY = Family(model_types=("gemma2",), to_spec=gemma2_spec, convert=gemma2_weights)
