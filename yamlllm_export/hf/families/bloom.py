"""BLOOM: ALiBi, a LayerNorm right after the token embeddings, GELU (tanh approximation), tied head.

``query_key_value`` fuses q, k, v per head: rows (num_heads, 3, head_dim). Hub checkpoints come with or
without the ``transformer.`` prefix. ``pretraining_tp`` / ``slow_but_exact`` only change how the output
projections are summed (the same maths), so they are accepted."""

from __future__ import annotations

from typing import Any

from yamlllm_export.hf.config import HFConfig
from yamlllm_export.hf.families.base import Family, State, grouped_qkv, layer_norm, refuse_if, renamed, unfused

LAYER = r"(?:transformer\.)?h\.(\d+)\."
# the names BLOOM and Falcon share (all but the norms inside the layers)
SHARED_RULES = [
    (r"(?:transformer\.)?word_embeddings\.weight", "embed.weight"),
    (LAYER + r"self_attention\.query_key_value\.([qkv])\.(weight|bias)", r"blocks.\1.attn.\2_proj.\3"),
    (LAYER + r"self_attention\.dense\.(weight|bias)", r"blocks.\1.attn.o_proj.\2"),
    (LAYER + r"mlp\.dense_h_to_4h\.(weight|bias)", r"blocks.\1.ffn.up.\2"),
    (LAYER + r"mlp\.dense_4h_to_h\.(weight|bias)", r"blocks.\1.ffn.down.\2"),
    (r"(?:transformer\.)?ln_f\.(weight|bias)", r"final_norm.\1"),
    (r"lm_head\.weight", "lm_head.weight"),
]
RULES = [
    *SHARED_RULES,
    (r"(?:transformer\.)?word_embeddings_layernorm\.(weight|bias)", r"embed_norm.\1"),
    (LAYER + r"input_layernorm\.(weight|bias)", r"blocks.\1.attn_norms.pre.\2"),
    (LAYER + r"post_attention_layernorm\.(weight|bias)", r"blocks.\1.ffn_norms.pre.\2"),
]
DEFAULT_CONTEXT = 2048  # ALiBi has no position table; BLOOM trained on 2048 tokens (its config's seq_length)


def hidden_size(cfg: HFConfig) -> int:
    """``hidden_size``, or ``n_embed`` in older BLOOM and Falcon configs."""
    return cfg.get("hidden_size") or cfg.require("n_embed")


def bloom_spec(cfg: HFConfig) -> dict[str, Any]:
    refuse_if(cfg, "apply_residual_connection_post_layernorm", True, "the residual is the layer input, not its normed copy")
    d = hidden_size(cfg)
    norm = layer_norm(cfg, "layer_norm_epsilon")
    return {
        "embedding": {
            "vocab_size": cfg.require("vocab_size"),
            "max_position_embeddings": cfg.get("seq_length", DEFAULT_CONTEXT),
            "embedding_dim": d,
            "positional_encoding": {"type": "alibi"},
        },
        "num_layers": cfg.require("n_layer"),
        "layer": {
            "hidden_dim": d,
            "attention": {"num_heads": cfg.require("n_head"), "mechanism": "alibi"},
            "ffn": {"intermediate_size": 4 * d, "activation": "gelu_tanh"},
            "layer_norm": norm,
        },
        "embedding_layer_norm": dict(norm),
        "final_layer_norm": dict(norm),  # a copy: the same object would be a YAML alias
        "tie_word_embeddings": bool(cfg.get("tie_word_embeddings", True)),
    }


def bloom_weights(cfg: HFConfig, state: State) -> State:
    nh = cfg.require("n_head")
    hd = hidden_size(cfg) // nh
    split = unfused(state, r".*query_key_value\.(weight|bias)", lambda t: grouped_qkv(t, groups=nh, q_per_group=1, head_dim=hd))
    return renamed(cfg, split, RULES)


FAMILY = Family(model_types=("bloom",), to_spec=bloom_spec, convert=bloom_weights)
