"""Gemma 3 text (model_type ``gemma3_text``): Gemma 2's sandwich norms and GeGLU with an RMSNorm (1 + w)
over each head's query and key (mapped to a plain RMSNorm with 1 + w folded into its weight), attention
scaled by query_pre_attn_scalar^-1/2 (``softmax_scale``), sliding layers from ``layer_types``, a RoPE per
layer kind: the sliding layers' own base (10 000) without scaling (``rope_theta`` / ``rope_unscaled``
overrides), the global ones' base (1 000 000) with the scaling; logits soft-capped when
``final_logit_softcapping`` is set."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from yamlllm_export.hf.config import HFConfig
from yamlllm_export.hf.families.base import Family, State, renamed, window_overrides
from yamlllm_export.hf.families.gemma import gemma_spec
from yamlllm_export.hf.families.gemma2 import RULES as GEMMA2_RULES
from yamlllm_export.hf.families.llama import rms_norm

_LAYER = r"model\.layers\.(\d+)\."
RULES = [(_LAYER + r"self_attn\.([qk])_norm\.weight", r"blocks.\1.attn.\2_norm.norm.weight"), *GEMMA2_RULES]
THETA = {"full_attention": 1_000_000.0, "sliding_attention": 10_000.0}  # Gemma3TextConfig's defaults
# Gemma3TextConfig's defaults (transformers 5.17), which transformers reads for a key config.json leaves out:
# the hub's multimodal configs name only a few keys of their text_config (gemma-3-4b-it: sizes, layers, window)
DEFAULTS: dict[str, Any] = {
    "vocab_size": 262_208, "hidden_size": 2304, "intermediate_size": 9216, "num_hidden_layers": 26, "num_attention_heads": 8,
    "num_key_value_heads": 4, "head_dim": 256, "hidden_activation": "gelu_pytorch_tanh", "max_position_embeddings": 131_072,
    "rms_norm_eps": 1e-6, "tie_word_embeddings": True, "attention_bias": False, "query_pre_attn_scalar": 256, "sliding_window": 4096,
}  # fmt: skip


def _rope_by_kind(cfg: HFConfig) -> dict[str, dict[str, Any]]:
    """{layer kind: RoPE parameters} from transformers 5's nested ``rope_parameters`` or 4.x's ``rope_theta``,
    ``rope_local_base_freq`` and ``rope_scaling`` (the scaling on the global layers only)."""
    nested = cfg.get("rope_parameters") or {}
    if "full_attention" in nested or "sliding_attention" in nested:
        return {kind: {"rope_theta": THETA[kind], **(nested.get(kind) or {})} for kind in THETA}
    full = {"rope_theta": cfg.get("rope_theta", THETA["full_attention"]), **(cfg.get("rope_scaling") or {}), **nested}
    return {"full_attention": full, "sliding_attention": {"rope_theta": cfg.get("rope_local_base_freq", THETA["sliding_attention"])}}


def _layer_types(cfg: HFConfig, num_layers: int) -> list[str]:
    kinds = cfg.get("layer_types")
    if kinds is None:  # Gemma3TextConfig's default: every sliding_window_pattern-th layer is global
        pattern = cfg.get("sliding_window_pattern", 6)
        kinds = ["sliding_attention" if (i + 1) % pattern else "full_attention" for i in range(num_layers)]
    return list(kinds)


def text_spec(cfg: HFConfig) -> dict[str, Any]:
    """The decoder's spec from a Gemma3TextConfig's keys (``gemma3_text``'s config.json, ``gemma3``'s text_config);
    the logit soft-cap is the caller's: only Gemma3ForCausalLM applies it."""
    cfg = dataclasses.replace(cfg, raw={**DEFAULTS, **cfg.raw})
    rope = _rope_by_kind(cfg)
    local = rope["sliding_attention"]
    if local.get("rope_type", "default") != "default":
        raise cfg.refuse("rope_parameters", "scaling on the sliding layers' RoPE is not mapped; only the global layers' is")
    if cfg.get("attn_logit_softcapping") is not None:  # Gemma3Attention keeps it but never passes it to the kernel
        raise cfg.refuse("attn_logit_softcapping", "transformers' Gemma 3 never applies it, with any attention implementation")
    flat = {k: v for k, v in cfg.raw.items() if k not in ("rope_parameters", "rope_scaling", "rope_theta")}
    spec = gemma_spec(dataclasses.replace(cfg, raw={**flat, "rope_parameters": rope["full_attention"]}))
    layers, layer, att = spec["num_layers"], spec["layer"], spec["layer"]["attention"]
    kinds = _layer_types(cfg, layers)
    att.update(qk_norm={**rms_norm(cfg), "scope": "head"}, softmax_scale=float(cfg.get("query_pre_attn_scalar")) ** -0.5)
    layer["norm_placement"] = "sandwich"
    window, overrides = window_overrides(dataclasses.replace(cfg, raw={**flat, "layer_types": kinds}), cfg.get("sliding_window"), layers)
    if window:
        att["window_size"] = window
    sliding = [i for i, k in enumerate(kinds[:layers]) if k == "sliding_attention"]
    scaled = "rope_scaling" in spec["embedding"]["positional_encoding"]
    if sliding:
        local_rope = {"rope_theta": float(local["rope_theta"]), **({"rope_unscaled": True} if scaled else {})}
        overrides.append({"layers": sliding, "attention": local_rope})
    if overrides:
        spec["layer_overrides"] = overrides
    return spec


def gemma3_spec(cfg: HFConfig) -> dict[str, Any]:
    spec = text_spec(cfg)
    if cfg.get("final_logit_softcapping") is not None:
        spec["final_logit_softcap"] = cfg.get("final_logit_softcapping")
    return spec


def gemma3_weights(cfg: HFConfig, state: State) -> State:
    """Gemma 3's q/k norms scale by (1 + w); ours, a plain RMSNorm per head, gets 1 + w as its weight."""
    out = renamed(cfg, state, RULES)
    for name, t in out.items():
        if name.endswith(("attn.q_norm.norm.weight", "attn.k_norm.norm.weight")):
            out[name] = (t.float() + 1.0).to(t.dtype) if t.dtype != torch.float32 else t + 1.0
    return out


FAMILY = Family(model_types=("gemma3_text",), to_spec=gemma3_spec, convert=gemma3_weights)
