"""Token mixers that are not softmax attention (``layer_types``): each keeps a state of a fixed size, or none,
in place of a KV cache. Each has the attention modules' call form, ``(x, bias, position_ids, *past,
token_mask) → (out, *present)``, and ``state_dims``: the shape after the batch axis of each state tensor.

Notation: B batch, S new tokens, d hidden size, H heads, D = d / H, L the conv's kernel size.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from yamlllm_export import ops


class IdentityMixer(nn.Module):
    """A(x) = x: the block adds its normalised input (ReaLLM-Forge's ``attention_variant: identity``). No cache."""

    state_dims: tuple[tuple[int, ...], ...] = ()

    def forward(self, x: torch.Tensor, bias: torch.Tensor, position_ids: torch.Tensor, *, token_mask: torch.Tensor) -> tuple[torch.Tensor]:
        return (x,)


class ShortConv(nn.Module):
    """LFM2's gated short convolution (Liquid AI 2025): [B, C, x] = in_proj(h); y = out_proj(C ⊙ conv(B ⊙ x)),
    conv causal and depthwise over the last L inputs; its state is the last L − 1 inputs of the conv."""

    RESIDUAL_OUTPUT = "out_proj"

    def __init__(self, dim: int, *, kernel_size: int, bias: bool) -> None:
        super().__init__()
        self.in_proj = nn.Linear(dim, 3 * dim, bias=bias)
        self.conv_weight = nn.Parameter(torch.empty(dim, kernel_size))  # (d, L): Conv1d's (d, 1, L) squeezed
        self.conv_bias = nn.Parameter(torch.empty(dim)) if bias else None
        self.out_proj = nn.Linear(dim, dim, bias=bias)
        self.state_dims = ((dim, kernel_size - 1),)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Conv1d's default initialisation (fan-in L); model/init.py may overwrite it."""
        bound = 1 / math.sqrt(self.conv_weight.shape[1])
        if self.conv_weight.device.type != "meta":
            nn.init.uniform_(self.conv_weight, -bound, bound)
            if self.conv_bias is not None:
                nn.init.uniform_(self.conv_bias, -bound, bound)

    def forward(
        self, x: torch.Tensor, bias: torch.Tensor, position_ids: torch.Tensor, past_conv: torch.Tensor, *, token_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, S, d), past_conv (B, d, L − 1), token_mask (B, S) → out (B, S, d), present_conv (B, d, L − 1)."""
        b, c, u = self.in_proj(x).chunk(3, dim=-1)  # (B, S, d) each
        y, present = ops.short_conv(b * u, self.conv_weight, self.conv_bias, past_conv, token_mask)
        return self.out_proj(c * y), present


class LinearAttention(nn.Module):
    """ReaLLM-Forge's linear attention (see ``ops/linear_attention.py`` for the recurrence): q, k, v from one
    biased projection (c_attn), a learned scalar scale in φ(u) = ELU(s·u) + 1, a biased output projection."""

    RESIDUAL_OUTPUT = "c_proj"

    def __init__(self, dim: int, *, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.c_attn = nn.Linear(dim, 3 * dim, bias=True)  # Forge: always with a bias
        self.c_proj = nn.Linear(dim, dim, bias=True)
        self.scale = nn.Parameter(torch.empty(()))
        self.scale_init = 1 / math.sqrt(dim // num_heads)  # Forge's initial s (model/init.py's fixups set it in every scheme)
        self.state_dims = ((num_heads, dim // num_heads),) * 2  # kv_sum, k_sum

    def forward(
        self, x: torch.Tensor, bias: torch.Tensor, position_ids: torch.Tensor, past_kv_sum: torch.Tensor, past_k_sum: torch.Tensor,
        *, token_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
        """x (B, S, d), past sums (B, H, D) → out (B, S, d), present kv_sum, k_sum (B, H, D)."""
        q, k, v = self.c_attn(x).chunk(3, dim=-1)  # (B, S, d) each
        y, kv_sum, k_sum = ops.linear_attention(q, k, v, self.scale, past_kv_sum, past_k_sum, token_mask, self.num_heads)
        return self.c_proj(y), kv_sum, k_sum
