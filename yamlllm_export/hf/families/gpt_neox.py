"""GPT-NeoX / Pythia: partial RoPE (``rotary_pct``, half-rotation layout as ours), LayerNorm, exact GELU,
untied head; ``use_parallel_residual`` is the parallel block with two norms, x + Attn(N1(x)) + FFN(N2(x)),
otherwise sequential pre-norm.

``query_key_value`` fuses q, k, v per head: rows (num_heads, 3, head_dim). The head is ``embed_out`` in
older checkpoints, ``lm_head`` in what transformers 5 writes; older ones also carry mask and inv_freq
buffers (dropped)."""

from __future__ import annotations

from typing import Any

from yamlllm_export.errors import BuildError
from yamlllm_export.hf.config import HFConfig
from yamlllm_export.hf.families.base import Family, State, grouped_qkv, layer_norm, plain_activation, renamed, rope_positions, unfused

_LAYER = r"gpt_neox\.layers\.(\d+)\."


def _rules(parallel: bool) -> list[tuple[str, str | None]]:
    attn_norm, ffn_norm = ("norm", "ffn_norm") if parallel else ("attn_norms.pre", "ffn_norms.pre")
    return [
        (r"gpt_neox\.embed_in\.weight", "embed.weight"),
        (_LAYER + r"input_layernorm\.(weight|bias)", rf"blocks.\1.{attn_norm}.\2"),
        (_LAYER + r"attention\.query_key_value\.([qkv])\.(weight|bias)", r"blocks.\1.attn.\2_proj.\3"),
        (_LAYER + r"attention\.dense\.(weight|bias)", r"blocks.\1.attn.o_proj.\2"),
        (_LAYER + r"post_attention_layernorm\.(weight|bias)", rf"blocks.\1.{ffn_norm}.\2"),
        (_LAYER + r"mlp\.dense_h_to_4h\.(weight|bias)", r"blocks.\1.ffn.up.\2"),
        (_LAYER + r"mlp\.dense_4h_to_h\.(weight|bias)", r"blocks.\1.ffn.down.\2"),
        (r"gpt_neox\.final_layer_norm\.(weight|bias)", r"final_norm.\1"),
        (r"(?:lm_head|embed_out)\.weight", "lm_head.weight"),
        (_LAYER + r"attention\.(?:bias|masked_bias|rotary_emb\.inv_freq)", None),  # buffers of old checkpoints
    ]


def _rope(cfg: HFConfig) -> tuple[float, float]:
    """(rotary share of each head, theta) from transformers 5's rope_parameters or the older rotary_pct / rotary_emb_base."""
    params = cfg.get("rope_parameters", {})
    share = params.get("partial_rotary_factor", cfg.get("rotary_pct", 0.25))
    theta = params.get("rope_theta", cfg.get("rotary_emb_base", 10000.0))
    return float(share), float(theta)


def neox_spec(cfg: HFConfig) -> dict[str, Any]:
    d, nh = cfg.require("hidden_size"), cfg.require("num_attention_heads")
    head_dim = d // nh
    share, theta = _rope(cfg)
    rotary_dim = int(head_dim * share)
    if rotary_dim % 2 or rotary_dim < 2:
        raise BuildError(f"{cfg.where}: rotary share {share} of head_dim {head_dim} is {rotary_dim} dims; RoPE needs an even count >= 2")
    positions = rope_positions(cfg, head_dim=head_dim, rotary_dim=rotary_dim)
    parallel = bool(cfg.get("use_parallel_residual", True))
    norm = layer_norm(cfg, "layer_norm_eps")
    return {
        "embedding": {
            "vocab_size": cfg.require("vocab_size"),
            "max_position_embeddings": cfg.require("max_position_embeddings"),
            "embedding_dim": d,
            "positional_encoding": {**positions, "rope_theta": theta},
        },
        "num_layers": cfg.require("num_hidden_layers"),
        "layer": {
            "hidden_dim": d,
            "attention": {"num_heads": nh, "bias": bool(cfg.get("attention_bias", True))},
            "ffn": {"intermediate_size": cfg.require("intermediate_size"), "activation": plain_activation(cfg, "hidden_act", "gelu")},
            "layer_norm": norm,
            **({"parallel": True, "parallel_norms": "separate"} if parallel else {}),
        },
        "final_layer_norm": dict(norm),  # a copy: the same object would be a YAML alias
        "tie_word_embeddings": bool(cfg.get("tie_word_embeddings", False)),
    }


def neox_weights(cfg: HFConfig, state: State) -> State:
    nh = cfg.require("num_attention_heads")
    hd = cfg.require("hidden_size") // nh
    split = unfused(state, r".*attention\.query_key_value\.(weight|bias)", lambda t: grouped_qkv(t, groups=nh, q_per_group=1, head_dim=hd))
    return renamed(cfg, split, _rules(bool(cfg.get("use_parallel_residual", True))))


FAMILY = Family(model_types=("gpt_neox",), to_spec=neox_spec, convert=neox_weights)
