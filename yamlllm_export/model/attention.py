"""Causal self-attention with grouped KV heads (MHA / GQA / MQA), optional RoPE and an additive bias.

Notation: B batch, S new tokens, P cached tokens, nh query heads, nkv KV heads, hs head size.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from yamlllm_export import ops
from yamlllm_export.model.positions import RotaryCache


class SelfAttention(nn.Module):
    def __init__(
        self, dim: int, *, num_heads: int, num_kv_heads: int, head_dim: int, bias: bool, dropout: float, rotary: RotaryCache | None
    ) -> None:
        super().__init__()
        self.num_heads, self.num_kv_heads, self.head_dim = num_heads, num_kv_heads, head_dim
        self.q_proj = nn.Linear(dim, num_heads * head_dim, bias=bias)
        self.k_proj = nn.Linear(dim, num_kv_heads * head_dim, bias=bias)
        self.v_proj = nn.Linear(dim, num_kv_heads * head_dim, bias=bias)
        self.o_proj = nn.Linear(num_heads * head_dim, dim, bias=bias)
        self.dropout = nn.Dropout(dropout)
        self.rotary = rotary  # shared across layers; holds buffers only
        self.cache_dims = ((num_kv_heads, head_dim), (num_kv_heads, head_dim))  # (heads, dim) of key, value

    def forward(
        self, x: torch.Tensor, bias: torch.Tensor, position_ids: torch.Tensor, past_key: torch.Tensor, past_value: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (B, S, d), bias (B, 1|nh, S, P+S), past (B, nkv, P, hs) → out (B, S, d), present k, v (B, nkv, P+S, hs)."""
        cos, sin, pos = (self.rotary.cos, self.rotary.sin, position_ids) if self.rotary is not None else (None, None, None)
        out, present_k, present_v = ops.attention(
            self.q_proj(x), self.k_proj(x), self.v_proj(x), past_key, past_value, bias, cos, sin, pos,
            self.num_heads, self.num_kv_heads, 1.0 / math.sqrt(self.head_dim),
        )  # fmt: skip
        return self.dropout(self.o_proj(out)), present_k, present_v
