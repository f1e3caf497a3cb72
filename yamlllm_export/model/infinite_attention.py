"""ReaLLM-Forge's "infinite heads" attention (``attention_variant: infinite``; not Infini-attention: no
compressive memory, no segments): causal softmax attention with free query/key and value head sizes whose
heads are summed instead of concatenated.

Notation: B batch, S new tokens, H query heads, G key/value groups (head h reads group ⌊h / (H/G)⌋),
d_qk and d_v the head sizes.

    o_h = softmax(q_h · k_g(h)ᵀ / sqrt(d_qk) + mask) · v_g(h)            (d_v)
    y   = W_o · Σ_h o_h + b                                              W_o: (d, d_v)

Forge's ``n_cproj`` parallel output projections add up to one: W_o = Σ_i W_i, b = Σ_i b_i. The KV cache is
keys (B, G, T, d_qk) and values (B, G, T, d_v): the attention kernel (``ops.attention``) takes a value head
size of its own.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from yamlllm_export import ops
from yamlllm_export.model.positions import Rotary


class InfiniteHeadAttention(nn.Module):
    RESIDUAL_OUTPUT = "o_proj"

    def __init__(
        self, dim: int, *, num_heads: int, num_kv_heads: int, qk_head_dim: int, v_head_dim: int, bias: bool, rotary: Rotary | None
    ) -> None:
        super().__init__()
        self.num_heads, self.num_kv_heads, self.v_head_dim = num_heads, num_kv_heads, v_head_dim
        self.q_proj = nn.Linear(dim, num_heads * qk_head_dim, bias=bias)
        self.k_proj = nn.Linear(dim, num_kv_heads * qk_head_dim, bias=bias)
        self.v_proj = nn.Linear(dim, num_kv_heads * v_head_dim, bias=bias)
        self.o_proj = nn.Linear(v_head_dim, dim, bias=bias)  # on the sum of the heads
        self.rotary = rotary
        self.scale = 1.0 / math.sqrt(qk_head_dim)
        self.cache_dims = ((num_kv_heads, qk_head_dim), (num_kv_heads, v_head_dim))  # (heads, dim) of key, value

    def forward(
        self, x: torch.Tensor, bias: torch.Tensor, position_ids: torch.Tensor, past_key: torch.Tensor, past_value: torch.Tensor,
        *, token_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
        """x (B, S, d), past key (B, G, P, d_qk), value (B, G, P, d_v) → out (B, S, d), presents with P + S.
        ``token_mask`` is unused: padding reaches attention through ``bias``."""
        B, S, _ = x.shape
        cos, sin, pos = None, None, None
        if self.rotary is not None:
            cos, sin, pos = self.rotary.tables(position_ids, x.dtype)
        out, present_k, present_v = ops.attention(
            query=self.q_proj(x), key=self.k_proj(x), value=self.v_proj(x), past_key=past_key, past_value=past_value,
            attention_bias=bias, cos_cache=cos, sin_cache=sin, position_ids=pos, num_heads=self.num_heads,
            num_kv_heads=self.num_kv_heads, scale=self.scale,
        )  # fmt: skip
        heads_sum = out.view(B, S, self.num_heads, self.v_head_dim).sum(2)  # (B, S, H·d_v) → (B, S, d_v)
        return self.o_proj(heads_sum), present_k, present_v
