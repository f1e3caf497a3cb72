"""SmolLM3 (model_type ``smollm3``): LLaMA's block with RoPE switched off on the layers ``no_rope_layers``
marks 0 (every fourth layer by default: ``layer_overrides`` with ``attention.nope``), and a sliding window
on the layers ``layer_types`` names."""

from __future__ import annotations

from typing import Any

from yamlllm_export.hf.config import HFConfig
from yamlllm_export.hf.families.base import Family, State, renamed
from yamlllm_export.hf.families.llama import RULES as LLAMA_RULES
from yamlllm_export.hf.families.llama import llama_spec


def _uses_rope(cfg: HFConfig, num_layers: int) -> list[int]:
    """``no_rope_layers`` (1: the layer rotates), or SmolLM3Config's default from ``no_rope_layer_interval``."""
    flags = cfg.get("no_rope_layers")
    if flags is None:
        interval = cfg.get("no_rope_layer_interval", 4)
        return [int((i + 1) % interval != 0) for i in range(num_layers)]
    if len(flags) != num_layers:
        raise cfg.refuse("no_rope_layers", f"it has {len(flags)} entries for num_hidden_layers {num_layers}")
    return list(flags)


def smollm3_spec(cfg: HFConfig) -> dict[str, Any]:
    layers = cfg.require("num_hidden_layers")
    rope = _uses_rope(cfg, layers)
    raw = dict(cfg.raw)
    if raw.get("layer_types") is None:  # SmolLM3Config's default: the window (if any) on the RoPE-free layers
        window = cfg.get("use_sliding_window", False) and cfg.get("sliding_window") is not None
        raw["layer_types"] = ["sliding_attention" if window and not r else "full_attention" for r in rope]
    raw.setdefault("tie_word_embeddings", True)  # SmolLM3Config's default, unlike LLaMA's
    spec = llama_spec(HFConfig(cfg.folder, raw, cfg.source))
    nope = [i for i, r in enumerate(rope) if not r]
    if nope:
        spec["layer_overrides"] = [*spec.get("layer_overrides", []), {"layers": nope, "attention": {"nope": True}}]
    return spec


def smollm3_weights(cfg: HFConfig, state: State) -> State:
    return renamed(cfg, state, LLAMA_RULES)


FAMILY = Family(model_types=("smollm3",), to_spec=smollm3_spec, convert=smollm3_weights)
