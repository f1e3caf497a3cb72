"""Mixtral: Mistral's attention (GQA, RoPE, sliding window) with a sparse mixture of SwiGLU experts in every
layer: softmax router → top-k → renormalised (our ``moe.normalize_top_k``). ``router_jitter_noise`` and the
auxiliary loss act only in training."""

from __future__ import annotations

from typing import Any

from yamlllm_export.hf.config import HFConfig
from yamlllm_export.hf.families import llama
from yamlllm_export.hf.families.base import Family, State, renamed, stacked_experts, window_overrides

_LAYER = r"model\.layers\.(\d+)\."
# the hub names the MoE block block_sparse_moe; transformers 5 calls it mlp (and fuses the experts)
RULES = [
    (_LAYER + r"(?:block_sparse_moe|mlp)\.gate\.weight", r"blocks.\1.ffn.router.weight"),
    (r"blocks\.\d+\.ffn\.experts\.(gate|up|down)\.weight", r"\g<0>"),  # stacked by stacked_experts
    *llama.RULES,
]


def mixtral_spec(cfg: HFConfig) -> dict[str, Any]:
    spec = llama.llama_spec(cfg)
    layer = spec["layer"]
    window, overrides = window_overrides(cfg, cfg.get("sliding_window"), spec["num_layers"])
    if window:
        layer["attention"]["window_size"] = window
    if overrides:
        spec["layer_overrides"] = overrides
    layer["ffn"]["moe"] = {"num_experts": cfg.require("num_local_experts"), "top_k": cfg.get("num_experts_per_tok", 2)}
    return spec


def mixtral_weights(cfg: HFConfig, state: State) -> State:
    experts = stacked_experts(cfg, state, _LAYER + r"(?:block_sparse_moe|mlp)\.", {"w1": "gate", "w3": "up", "w2": "down"})
    return renamed(cfg, experts, RULES)


FAMILY = Family(model_types=("mixtral",), to_spec=mixtral_spec, convert=mixtral_weights)
