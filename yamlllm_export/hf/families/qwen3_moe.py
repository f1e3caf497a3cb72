"""Qwen3-MoE (model_type ``qwen3_moe``): Qwen3's attention (per-head qk RMSNorm) with a sparse mixture of
SwiGLU experts every ``decoder_sparse_step`` layers (``moe.frequency``): softmax router → top-k, renormalised
when ``norm_topk_prob`` (our ``moe.normalize_top_k``); ``mlp_only_layers``, anywhere, keep the dense MLP
(``moe.dense_layers``). A config that leaves no layer sparse is a dense Qwen3 with this FFN size."""

from __future__ import annotations

from typing import Any

from yamlllm_export.hf.config import HFConfig
from yamlllm_export.hf.families.base import Family, State, renamed, stacked_experts
from yamlllm_export.hf.families.qwen3 import RULES as QWEN3_RULES
from yamlllm_export.hf.families.qwen3 import qwen3_spec

_LAYER = r"model\.layers\.(\d+)\."
RULES = [
    (_LAYER + r"mlp\.gate\.weight", r"blocks.\1.ffn.router.weight"),
    (r"blocks\.\d+\.ffn\.experts\.(gate|up|down)\.weight", r"\g<0>"),  # stacked by stacked_experts
    *QWEN3_RULES,
]


def qwen3_moe_spec(cfg: HFConfig) -> dict[str, Any]:
    if cfg.get("use_sliding_window", False) and cfg.get("layer_types") is not None:
        raise cfg.refuse("layer_types", "Qwen3-MoE slides on every layer when use_sliding_window; per-layer kinds are not read")
    spec = qwen3_spec(cfg)
    # the hub's configs say num_experts; transformers 5 writes its attribute-map name num_local_experts
    experts = cfg.get("num_experts", cfg.get("num_local_experts"))
    if experts is None:
        cfg.require("num_experts")
    step, dense = cfg.get("decoder_sparse_step", 1), sorted(set(cfg.get("mlp_only_layers", [])))
    if experts == 0 or not any((i + 1) % step == 0 and i not in dense for i in range(spec["num_layers"])):
        return spec  # Qwen3MoeDecoderLayer's test: no layer is sparse
    moe = {
        "num_experts": experts,
        "top_k": cfg.get("num_experts_per_tok", 8),
        "intermediate_size": cfg.require("moe_intermediate_size"),
        "normalize_top_k": bool(cfg.get("norm_topk_prob", False)),
        "frequency": step,
        "dense_layers": [i for i in dense if i < spec["num_layers"]],
    }
    spec["layer"]["ffn"]["moe"] = {k: v for k, v in moe.items() if k != "dense_layers" or v}
    return spec


def qwen3_moe_weights(cfg: HFConfig, state: State) -> State:
    experts = stacked_experts(cfg, state, _LAYER + r"mlp\.", {"gate_proj": "gate", "up_proj": "up", "down_proj": "down"})
    return renamed(cfg, experts, RULES)


FAMILY = Family(model_types=("qwen3_moe",), to_spec=qwen3_moe_spec, convert=qwen3_moe_weights)
