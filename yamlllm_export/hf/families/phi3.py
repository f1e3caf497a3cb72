"""Phi-3 and Phi-4-mini (model_type ``phi3``): LLaMA's architecture with fused projections, ``qkv_proj`` as
[q; k; v] rows and ``gate_up_proj`` as [gate; up] rows, split at import; partial rotary (Phi-4-mini rotates
3/4 of each head), Mistral's sliding window when ``sliding_window`` is set, and LongRoPE (Phi-3 128k,
Phi-3.5, Phi-4-mini: ``base.longrope_scaling``)."""

from __future__ import annotations

import dataclasses
from typing import Any

from yamlllm_export.hf.config import HFConfig
from yamlllm_export.hf.families.base import Family, State, drop_empty, renamed, rope_embedding
from yamlllm_export.hf.families.llama import RULES as LLAMA_RULES
from yamlllm_export.hf.families.llama import attention_dims, rms_norm, swiglu_ffn
from yamlllm_export.hf.families.phi import partial_rotary_dim

_LAYER = r"model\.layers\.(\d+)\."


def as_phi3_config(cfg: HFConfig) -> HFConfig:
    """config.json as ``Phi3Config`` reads it: "su" and "yarn" scaling mean longrope, and the top-level
    ``original_max_position_embeddings`` (a class default of 4096 when absent) outranks the scaling's own."""
    raw = {**cfg.raw, "original_max_position_embeddings": cfg.get("original_max_position_embeddings", 4096)}
    for key in ("rope_scaling", "rope_parameters"):
        params = raw.get(key)
        if isinstance(params, dict) and params.get("rope_type", params.get("type")) in ("su", "yarn"):
            raw[key] = {**{k: v for k, v in params.items() if k != "type"}, "rope_type": "longrope"}
    return dataclasses.replace(cfg, raw=raw)


def phi3_spec(cfg: HFConfig) -> dict[str, Any]:
    cfg = as_phi3_config(cfg)
    _, scaling = cfg.rope()
    if scaling is not None and scaling.get("rope_type", scaling.get("type")) != "longrope":
        raise cfg.refuse(
            "rope_parameters" if cfg.get("rope_parameters") else "rope_scaling", "Phi-3 scales RoPE by longrope, su or yarn only"
        )
    dims = attention_dims(cfg)
    d = cfg.require("hidden_size")
    head_dim = dims.get("head_dim", d // dims["num_heads"])
    attention = {**dims, "bias": False, "window_size": cfg.get("sliding_window")}
    return {
        "embedding": rope_embedding(cfg, head_dim, rotary_dim=partial_rotary_dim(cfg, head_dim)),
        "num_layers": cfg.require("num_hidden_layers"),
        "layer": {"hidden_dim": d, "attention": drop_empty(attention), "ffn": swiglu_ffn(cfg, bias=False), "layer_norm": rms_norm(cfg)},
        "final_layer_norm": rms_norm(cfg),
        "tie_word_embeddings": bool(cfg.get("tie_word_embeddings", False)),
    }


def phi3_weights(cfg: HFConfig, state: State) -> State:
    dims = attention_dims(cfg)
    d = cfg.require("hidden_size")
    head_dim = dims.get("head_dim", d // dims["num_heads"])
    q_rows, kv_rows = dims["num_heads"] * head_dim, dims.get("num_kv_heads", dims["num_heads"]) * head_dim
    out: State = {}
    for name, t in state.items():
        stem = name.removesuffix("qkv_proj.weight")
        if stem != name:
            q, k, v = t.split([q_rows, kv_rows, kv_rows])
            out.update({f"{stem}{p}_proj.weight": x.contiguous() for p, x in zip("qkv", (q, k, v), strict=True)})
        elif name.endswith("mlp.gate_up_proj.weight"):
            gate, up = t.chunk(2)
            stem = name.removesuffix("gate_up_proj.weight")
            out[stem + "gate_proj.weight"], out[stem + "up_proj.weight"] = gate.contiguous(), up.contiguous()
        else:
            out[name] = t
    return renamed(cfg, out, LLAMA_RULES)


FAMILY = Family(model_types=("phi3",), to_spec=phi3_spec, convert=phi3_weights)
