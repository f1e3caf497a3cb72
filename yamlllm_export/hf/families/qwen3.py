"""Qwen3 (model_type ``qwen3``): LLaMA's block with an RMSNorm over each head's query and key before RoPE
(``qk_norm`` scope ``head``), bias on all four projections when ``attention_bias``, and Qwen2's sliding
window on the layers ``layer_types`` names."""

from __future__ import annotations

from typing import Any

from yamlllm_export.hf.config import HFConfig
from yamlllm_export.hf.families.base import Family, State, renamed
from yamlllm_export.hf.families.llama import RULES as LLAMA_RULES
from yamlllm_export.hf.families.llama import llama_spec, rms_norm

_LAYER = r"model\.layers\.(\d+)\."
RULES = [(_LAYER + r"self_attn\.([qk])_norm\.weight", r"blocks.\1.attn.\2_norm.norm.weight"), *LLAMA_RULES]
HEAD_DIM = 128  # Qwen3Config's default: a config.json without head_dim means 128, not hidden_size / heads


def qwen3_spec(cfg: HFConfig) -> dict[str, Any]:
    spec = llama_spec(HFConfig(cfg.folder, {"head_dim": HEAD_DIM, **{k: v for k, v in cfg.raw.items() if v is not None}}, cfg.source))
    spec["layer"]["attention"]["qk_norm"] = {**rms_norm(cfg), "scope": "head"}
    return spec


def qwen3_weights(cfg: HFConfig, state: State) -> State:
    return renamed(cfg, state, RULES)


FAMILY = Family(model_types=("qwen3",), to_spec=qwen3_spec, convert=qwen3_weights)
