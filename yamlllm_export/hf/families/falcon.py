"""Falcon (model_type falcon): RoPE, LayerNorm, exact GELU, bias on or off, tied head; three layouts.

- new decoder architecture (40B, 180B): GQA with ``num_kv_heads``, a parallel block with two norms
  (``ln_attn`` / ``ln_mlp``; one ``input_layernorm`` when ``num_ln_in_parallel_attn`` is 1), fused QKV
  as num_kv_heads groups of [q × nh/nkv, k, v];
- old architecture with ``multi_query`` (7B): one key/value head, fused [q × nh, k, v], and the parallel
  block with one shared norm;
- old architecture without it: fused per head (nh, 3, hd); ``parallel_attn`` false makes it sequential
  (``post_attention_layernorm`` before the MLP).

Weights may carry the ``transformer.`` prefix or not. ALiBi Falcons (falcon-rw) are refused: see
``falcon_spec``."""

from __future__ import annotations

from typing import Any

from yamlllm_export.hf.config import HFConfig
from yamlllm_export.hf.families.base import (
    Family,
    State,
    grouped_qkv,
    layer_norm,
    plain_activation,
    refuse_if,
    renamed,
    rope_positions,
    unfused,
)
from yamlllm_export.hf.families.bloom import LAYER, SHARED_RULES, hidden_size


def _layout(cfg: HFConfig) -> tuple[int, int, str]:
    """(KV heads, query heads per fused group, block kind: sequential | shared | separate)."""
    nh = _heads(cfg)
    if cfg.get("new_decoder_architecture", False):
        nkv = cfg.get("num_kv_heads") or cfg.get("n_head_kv") or nh
        return nkv, nh // nkv, "separate" if cfg.get("num_ln_in_parallel_attn", 2) == 2 else "shared"
    kind = "shared" if cfg.get("parallel_attn", True) else "sequential"
    return (1, nh, kind) if cfg.get("multi_query", True) else (nh, 1, kind)


def _heads(cfg: HFConfig) -> int:
    return cfg.get("num_attention_heads") or cfg.require("n_head")


def _rules(kind: str) -> list[tuple[str, str | None]]:
    attn_norm = "attn_norms.pre" if kind == "sequential" else "norm"
    return [
        *SHARED_RULES,
        (LAYER + r"(?:input_layernorm|ln_attn)\.(weight|bias)", rf"blocks.\1.{attn_norm}.\2"),
        (LAYER + r"ln_mlp\.(weight|bias)", r"blocks.\1.ffn_norm.\2"),
        (LAYER + r"post_attention_layernorm\.(weight|bias)", r"blocks.\1.ffn_norms.pre.\2"),
    ]


def falcon_spec(cfg: HFConfig) -> dict[str, Any]:
    # transformers' ALiBi Falcon rounds the slopes to bfloat16, scales the biases by 1/sqrt(head_dim), and in
    # its eager path adds them twice (its SDPA path once): no single reference to match
    refuse_if(cfg, "alibi", True, "ALiBi Falcon (falcon-rw) is not mapped; RoPE Falcons are")
    new_arch = bool(cfg.get("new_decoder_architecture", False))
    if new_arch:
        refuse_if(cfg, "parallel_attn", False, "transformers' new decoder architecture always runs attention and MLP in parallel")
    d, nh = hidden_size(cfg), _heads(cfg)
    nkv, _, kind = _layout(cfg)
    bias = bool(cfg.get("bias", False))
    norm = layer_norm(cfg, "layer_norm_epsilon")
    parallel = {"parallel": True, **({"parallel_norms": "separate"} if kind == "separate" else {})} if kind != "sequential" else {}
    return {
        "embedding": {
            "vocab_size": cfg.require("vocab_size"),
            "max_position_embeddings": cfg.get("max_position_embeddings", 2048),
            "embedding_dim": d,
            "positional_encoding": rope_positions(cfg, head_dim=d // nh),
        },
        "num_layers": cfg.get("num_hidden_layers") or cfg.require("n_layer"),
        "layer": {
            "hidden_dim": d,
            "attention": {"num_heads": nh, **({"num_kv_heads": nkv} if nkv != nh else {}), "bias": bias},
            "ffn": {
                "intermediate_size": cfg.get("ffn_hidden_size", 4 * d),
                "activation": plain_activation(cfg, "activation", "gelu"),
                "bias": bias,
            },
            "layer_norm": norm,
            **parallel,
        },
        "final_layer_norm": dict(norm),  # a copy: the same object would be a YAML alias
        "tie_word_embeddings": bool(cfg.get("tie_word_embeddings", True)),
    }


def falcon_weights(cfg: HFConfig, state: State) -> State:
    nkv, per_group, kind = _layout(cfg)
    hd = hidden_size(cfg) // _heads(cfg)
    split = unfused(state, r".*query_key_value\.(weight|bias)", lambda t: grouped_qkv(t, groups=nkv, q_per_group=per_group, head_dim=hd))
    return renamed(cfg, split, _rules(kind))


FAMILY = Family(model_types=("falcon",), to_spec=falcon_spec, convert=falcon_weights)
