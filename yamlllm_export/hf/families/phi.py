"""Phi-1, Phi-1.5 and Phi-2 (model_type ``phi``): one LayerNorm feeding attention and MLP in parallel
(``layer.parallel``), partial rotary, gelu_new MLP, biases everywhere including the LM head, and the
optional per-head LayerNorm on queries and keys (``qk_layernorm``)."""

from __future__ import annotations

from typing import Any

from yamlllm_export.hf.config import HFConfig
from yamlllm_export.hf.families.base import Family, State, drop_empty, plain_activation, renamed, rope_embedding
from yamlllm_export.hf.families.llama import attention_dims

_LAYER = r"model\.layers\.(\d+)\."
RULES = [
    (r"model\.embed_tokens\.weight", "embed.weight"),
    (_LAYER + r"self_attn\.([qkv])_proj\.(weight|bias)", r"blocks.\1.attn.\2_proj.\3"),
    (_LAYER + r"self_attn\.dense\.(weight|bias)", r"blocks.\1.attn.o_proj.\2"),
    (_LAYER + r"self_attn\.([qk])_layernorm\.(weight|bias)", r"blocks.\1.attn.\2_norm.norm.\3"),
    (_LAYER + r"mlp\.fc1\.(weight|bias)", r"blocks.\1.ffn.up.\2"),
    (_LAYER + r"mlp\.fc2\.(weight|bias)", r"blocks.\1.ffn.down.\2"),
    (_LAYER + r"input_layernorm\.(weight|bias)", r"blocks.\1.norm.\2"),
    (r"model\.final_layernorm\.(weight|bias)", r"final_norm.\1"),
    (r"lm_head\.(weight|bias)", r"lm_head.\1"),
    (r"model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq", None),  # a buffer old checkpoints saved
]


def partial_rotary_dim(cfg: HFConfig, head_dim: int) -> int:
    """HF rotates int(head_dim · partial_rotary_factor) dims; the factor sits at the top level (4.x) or in
    rope_parameters (5.x)."""
    factor = (cfg.get("rope_parameters") or {}).get("partial_rotary_factor") or cfg.get("partial_rotary_factor", 1.0)
    rotary = int(head_dim * factor)
    if rotary % 2:
        raise cfg.refuse("partial_rotary_factor", f"it rotates an odd number of dims ({rotary}); RoPE rotates pairs")
    return rotary


def phi_spec(cfg: HFConfig) -> dict[str, Any]:
    dims = attention_dims(cfg)
    d = cfg.require("hidden_size")
    head_dim = dims.get("head_dim", d // dims["num_heads"])
    norm = {"type": "layernorm", "eps": cfg.get("layer_norm_eps", 1e-5)}
    qk_norm = {**norm, "scope": "head"} if cfg.get("qk_layernorm", False) else None
    if qk_norm and head_dim != d // dims["num_heads"]:
        raise cfg.refuse("qk_layernorm", "HF sizes the q/k LayerNorm hidden_size / num_attention_heads, not head_dim")
    return {
        "embedding": rope_embedding(cfg, head_dim, rotary_dim=partial_rotary_dim(cfg, head_dim)),
        "num_layers": cfg.require("num_hidden_layers"),
        "layer": {
            "hidden_dim": d,
            "attention": drop_empty({**dims, "qk_norm": qk_norm}),
            "ffn": {"intermediate_size": cfg.require("intermediate_size"), "activation": plain_activation(cfg, "hidden_act", "gelu_new")},
            "layer_norm": norm,
            "parallel": True,
        },
        "final_layer_norm": norm,
        "tie_word_embeddings": bool(cfg.get("tie_word_embeddings", False)),
        "lm_head_bias": True,
    }


def phi_weights(cfg: HFConfig, state: State) -> State:
    return renamed(cfg, state, RULES)


FAMILY = Family(model_types=("phi",), to_spec=phi_spec, convert=phi_weights)
