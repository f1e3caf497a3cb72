"""Phi-3.5-MoE (model_type ``phimoe``): Phi-3's attention (GQA, RoPE, optional sliding window; separate
q/k/v projections, with bias when ``attention_bias``), LayerNorm with bias in place of RMSNorm, an LM head
bias when ``lm_head_bias``, and a mixture of SwiGLU experts in every layer routed by SparseMixer (our
``moe.routing: sparsemixer``, threshold ``router_jitter_noise``, weights not renormalised).

The embedding and RoPE mapping is Phi-3's (``phi3.phi3_spec``). transformers' PhiMoE LongRoPE is not Phi-3's:
it keeps the short factors past ``original_max_position_embeddings`` (5.17 computes its frequencies without
the sequence length) and scales cos/sin by ``short_mscale`` below that length, ``long_mscale`` past it. With
equal mscales (Phi-3.5-MoE-instruct's config) that is our longrope with long factors = short factors and
attention factor = the mscale, exact on both sides of the switch; unequal ones are refused.
``input_jitter_noise`` and the Gumbel sampling of the router act only in training."""

from __future__ import annotations

import dataclasses
from typing import Any

from yamlllm_export.hf.config import HFConfig
from yamlllm_export.hf.families import phi3
from yamlllm_export.hf.families.base import Family, State, drop_empty, layer_norm, renamed, stacked_experts
from yamlllm_export.hf.families.llama import RULES as LLAMA_RULES

_LAYER = r"model\.layers\.(\d+)\."
# the hub names the MoE block block_sparse_moe and its router gate; transformers 5 calls them mlp and router
RULES = [
    (_LAYER + r"(?:block_sparse_moe\.gate|mlp\.router)\.weight", r"blocks.\1.ffn.router.weight"),
    (r"blocks\.\d+\.ffn\.experts\.(gate|up|down)\.weight", r"\g<0>"),  # stacked by stacked_experts
    (_LAYER + r"input_layernorm\.(weight|bias)", r"blocks.\1.attn_norms.pre.\2"),
    (_LAYER + r"post_attention_layernorm\.(weight|bias)", r"blocks.\1.ffn_norms.pre.\2"),
    (r"model\.norm\.(weight|bias)", r"final_norm.\1"),
    (r"lm_head\.(weight|bias)", r"lm_head.\1"),
    *LLAMA_RULES,
]


def _as_longrope(cfg: HFConfig) -> HFConfig:
    """config.json with PhiMoE's LongRoPE rewritten as the longrope ``phi3_spec`` reads (module docstring)."""
    theta, scaling = cfg.rope(1e6)
    if scaling is None:
        return cfg
    key = "rope_parameters" if cfg.get("rope_parameters") else "rope_scaling"
    if scaling.get("rope_type", scaling.get("type")) not in ("longrope", "su"):
        raise cfg.refuse(key, "PhiMoE scales RoPE by longrope only")
    mscale = scaling.get("short_mscale")
    if mscale is None or scaling.get("long_mscale") != mscale:
        raise cfg.refuse(key, "transformers' PhiMoE switches short_mscale to long_mscale past the original context; only equal ones map")
    short = scaling.get("short_factor")
    params = {"rope_type": "longrope", "rope_theta": theta, "short_factor": short, "long_factor": short, "attention_factor": mscale}
    raw = {k: v for k, v in cfg.raw.items() if k not in ("rope_scaling", "rope_parameters")}
    return dataclasses.replace(cfg, raw={**raw, "rope_parameters": params})


def _refusals(cfg: HFConfig) -> None:
    factor = (cfg.get("rope_parameters") or {}).get("partial_rotary_factor") or cfg.get("partial_rotary_factor", 1.0)
    if factor != 1.0:
        raise cfg.refuse("partial_rotary_factor", "transformers' PhiMoE rotates whole heads")
    if cfg.get("num_experts_per_tok", 2) != 2:
        raise cfg.refuse("num_experts_per_tok", "transformers' sparsemixer always routes to 2 experts")


def phimoe_spec(cfg: HFConfig) -> dict[str, Any]:
    _refusals(cfg)
    spec = phi3.phi3_spec(_as_longrope(cfg))
    spec["embedding"]["positional_encoding"]["rope_theta"] = cfg.rope(1e6)[0]  # PhimoeConfig's default base, not Phi-3's
    layer = spec["layer"]
    layer["attention"]["bias"] = bool(cfg.get("attention_bias", False))
    layer["layer_norm"] = spec["final_layer_norm"] = layer_norm(cfg, "rms_norm_eps")  # nn.LayerNorm(eps=rms_norm_eps)
    layer["ffn"]["moe"] = drop_empty(
        {
            "num_experts": cfg.require("num_local_experts"),
            "top_k": 2,
            "normalize_top_k": False,
            "routing": "sparsemixer",
            "jitter_eps": eps if (eps := cfg.get("router_jitter_noise", 0.01)) != 0.01 else None,  # 0.01: our default too
        }
    )
    if cfg.get("lm_head_bias", False):
        spec["lm_head_bias"] = True
    return spec


def phimoe_weights(cfg: HFConfig, state: State) -> State:
    experts = stacked_experts(cfg, state, _LAYER + r"(?:block_sparse_moe|mlp)\.", {"w1": "gate", "w3": "up", "w2": "down"})
    return renamed(cfg, experts, RULES)


FAMILY = Family(model_types=("phimoe",), to_spec=phimoe_spec, convert=phimoe_weights)
