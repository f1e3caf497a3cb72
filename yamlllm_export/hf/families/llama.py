"""LLaMA 1/2/3, Mistral and Qwen2: RoPE (llama3 / linear / dynamic / YaRN scaling), RMSNorm, SwiGLU, GQA;
Mistral's sliding window; Qwen2's bias on q/k/v only and its per-layer sliding window."""

from __future__ import annotations

from typing import Any

from yamlllm_export.hf.config import HFConfig
from yamlllm_export.hf.families.base import Family, State, drop_empty, renamed, rope_positions, window_overrides

_LAYER = r"model\.layers\.(\d+)\."
RULES = [
    (r"model\.embed_tokens\.weight", "embed.weight"),
    (_LAYER + r"self_attn\.([qkvo])_proj\.(weight|bias)", r"blocks.\1.attn.\2_proj.\3"),
    (_LAYER + r"mlp\.(gate|up|down)_proj\.(weight|bias)", r"blocks.\1.ffn.\2.\3"),
    (_LAYER + r"input_layernorm\.weight", r"blocks.\1.attn_norms.pre.weight"),
    (_LAYER + r"post_attention_layernorm\.weight", r"blocks.\1.ffn_norms.pre.weight"),
    (r"model\.norm\.weight", "final_norm.weight"),
    (r"lm_head\.weight", "lm_head.weight"),
    (r"model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq", None),  # a buffer old checkpoints saved
]


def attention_dims(cfg: HFConfig) -> dict[str, Any]:
    """num_heads, num_kv_heads and head_dim, each only where it differs from our derived default."""
    d, nh = cfg.require("hidden_size"), cfg.require("num_attention_heads")
    nkv, hd = cfg.get("num_key_value_heads", nh), cfg.get("head_dim", d // nh)
    return drop_empty({"num_heads": nh, "num_kv_heads": nkv if nkv != nh else None, "head_dim": hd if hd != d // nh else None})


def swiglu_ffn(cfg: HFConfig, *, bias: bool, act_key: str = "hidden_act") -> dict[str, Any]:
    if cfg.get(act_key, "silu") != "silu":
        raise cfg.refuse(act_key, "the gated FFN is mapped as SwiGLU, which needs silu")
    return {"intermediate_size": cfg.require("intermediate_size"), "activation": "swiglu", "use_gated_activation": True, "bias": bias}


def rms_norm(cfg: HFConfig, eps_key: str = "rms_norm_eps") -> dict[str, Any]:
    return {"type": "rmsnorm", "eps": cfg.get(eps_key, 1e-6)}


def llama_spec(cfg: HFConfig) -> dict[str, Any]:
    dims = attention_dims(cfg)
    d, layers = cfg.require("hidden_size"), cfg.require("num_hidden_layers")
    head_dim = dims.get("head_dim", d // dims["num_heads"])
    qwen = cfg.model_type in ("qwen2", "qwen3")
    window = cfg.get("sliding_window") if (cfg.model_type == "mistral" or cfg.get("use_sliding_window", False)) else None
    kinds = None
    if qwen and window:  # transformers' Qwen2Config without layer_types: the window only on layers ≥ max_window_layers
        first = cfg.get("max_window_layers", 28)
        kinds = ["sliding_attention" if i >= first else "full_attention" for i in range(layers)]
    window, overrides = window_overrides(cfg, window, layers, kinds)
    bias = bool(cfg.get("attention_bias", False))
    attention = {
        **dims,
        "bias": bias,
        **({"qkv_bias": True, "out_bias": False} if cfg.model_type == "qwen2" else {}),
        "window_size": window,
    }
    spec = {
        "embedding": {
            "vocab_size": cfg.require("vocab_size"),
            "max_position_embeddings": cfg.require("max_position_embeddings"),
            "embedding_dim": d,
            "positional_encoding": rope_positions(cfg, head_dim=head_dim),
        },
        "num_layers": layers,
        "layer": {
            "hidden_dim": d,
            "attention": drop_empty(attention),
            "ffn": swiglu_ffn(cfg, bias=bool(cfg.get("mlp_bias", False))),
            "layer_norm": rms_norm(cfg),
        },
        "final_layer_norm": rms_norm(cfg),
        "tie_word_embeddings": bool(cfg.get("tie_word_embeddings", False)),
    }
    if overrides:
        spec["layer_overrides"] = overrides
    return spec


def llama_weights(cfg: HFConfig, state: State) -> State:
    return renamed(cfg, state, RULES)


FAMILY = Family(model_types=("llama", "mistral", "qwen2"), to_spec=llama_spec, convert=llama_weights)
