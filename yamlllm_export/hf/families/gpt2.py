"""GPT-2: learned absolute positions, LayerNorm, GELU (tanh approximation, HF's gelu_new), tied head.

Its linear layers are ``Conv1D``: weights stored (in, out), so transposed here; ``c_attn`` fuses
[q, k, v] along the output. Hub checkpoints come with or without the ``transformer.`` prefix, and older
ones carry the causal-mask buffers ``attn.bias`` / ``attn.masked_bias`` (dropped)."""

from __future__ import annotations

import re
from typing import Any

import torch

from yamlllm_export.hf.config import HFConfig
from yamlllm_export.hf.families.base import Family, State, layer_norm, plain_activation, refuse_if, renamed, unfused

_LAYER = r"(?:transformer\.)?h\.(\d+)\."
CONV1D = r"(?:transformer\.)?h\.\d+\.(?:attn\.c_attn|attn\.c_proj|mlp\.c_fc|mlp\.c_proj)\.weight"
RULES = [
    (r"(?:transformer\.)?wte\.weight", "embed.weight"),
    (r"(?:transformer\.)?wpe\.weight", "positions.embedding.weight"),
    (_LAYER + r"ln_1\.(weight|bias)", r"blocks.\1.attn_norms.pre.\2"),
    (_LAYER + r"attn\.c_attn\.([qkv])\.(weight|bias)", r"blocks.\1.attn.\2_proj.\3"),
    (_LAYER + r"attn\.c_proj\.(weight|bias)", r"blocks.\1.attn.o_proj.\2"),
    (_LAYER + r"ln_2\.(weight|bias)", r"blocks.\1.ffn_norms.pre.\2"),
    (_LAYER + r"mlp\.c_fc\.(weight|bias)", r"blocks.\1.ffn.up.\2"),
    (_LAYER + r"mlp\.c_proj\.(weight|bias)", r"blocks.\1.ffn.down.\2"),
    (r"(?:transformer\.)?ln_f\.(weight|bias)", r"final_norm.\1"),
    (r"lm_head\.weight", "lm_head.weight"),
    (_LAYER + r"attn\.(?:bias|masked_bias)", None),  # causal-mask buffers of old checkpoints
]


def gpt2_spec(cfg: HFConfig) -> dict[str, Any]:
    refuse_if(cfg, "scale_attn_weights", False, "attention scores are always scaled by 1/sqrt(head_dim)")
    refuse_if(cfg, "scale_attn_by_inverse_layer_idx", True, "no per-layer attention scale")
    refuse_if(cfg, "reorder_and_upcast_attn", True, "no separately upcast attention")
    refuse_if(cfg, "add_cross_attention", True, "decoder-only models have no cross-attention")
    d = cfg.require("n_embd")
    norm = layer_norm(cfg, "layer_norm_epsilon")
    return {
        "embedding": {"vocab_size": cfg.require("vocab_size"), "max_position_embeddings": cfg.require("n_positions"), "embedding_dim": d},
        "num_layers": cfg.require("n_layer"),
        "layer": {
            "hidden_dim": d,
            "attention": {"num_heads": cfg.require("n_head")},
            "ffn": {"intermediate_size": cfg.get("n_inner", 4 * d), "activation": plain_activation(cfg, "activation_function", "gelu_new")},
            "layer_norm": norm,
        },
        "final_layer_norm": dict(norm),  # a copy: the same object would be a YAML alias
        "tie_word_embeddings": bool(cfg.get("tie_word_embeddings", True)),
    }


def _thirds(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    q, k, v = t.chunk(3, dim=0)  # c_attn: [q; k; v] along the output
    return q, k, v


def gpt2_weights(cfg: HFConfig, state: State) -> State:
    state = {name: t.t() if re.fullmatch(CONV1D, name) else t for name, t in state.items()}  # Conv1D: (in, out) → (out, in)
    return renamed(cfg, unfused(state, r".*attn\.c_attn\.(weight|bias)", _thirds), RULES)


FAMILY = Family(model_types=("gpt2",), to_spec=gpt2_spec, convert=gpt2_weights)
