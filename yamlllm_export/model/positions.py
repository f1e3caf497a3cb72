"""Position information: learned absolute embeddings, RoPE caches and ALiBi slopes.

Each is a small module so the decoder receives exactly one of them; RoPE and ALiBi hand their tensors to
the attention ops rather than touching the hidden states.
"""

from __future__ import annotations

import torch
from torch import nn

from yamlllm_export.ops.attention_bias import alibi_slopes
from yamlllm_export.ops.rotary import rope_caches


class LearnedPositions(nn.Module):
    """x + P[position_ids] (GPT-2)."""

    def __init__(self, max_positions: int, dim: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(max_positions, dim)

    def forward(self, x: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        return x + self.embedding(position_ids)


class RotaryCache(nn.Module):
    """cos/sin tables for RoPE; non-persistent buffers (recomputed from theta, never saved as weights)."""

    def __init__(self, max_positions: int, rotary_dim: int, *, theta: float) -> None:
        super().__init__()
        self.max_positions, self.rotary_dim, self.theta = max_positions, rotary_dim, theta
        self.register_buffer("cos", torch.empty(max_positions, rotary_dim // 2), persistent=False)
        self.register_buffer("sin", torch.empty(max_positions, rotary_dim // 2), persistent=False)
        self.reset_buffers()

    def reset_buffers(self) -> None:
        """(Re)compute the tables, e.g. after the model is materialised from the meta device."""
        cos, sin = rope_caches(self.max_positions, self.rotary_dim, self.theta)
        self.cos, self.sin = cos.to(self.cos.device), sin.to(self.sin.device)


class AlibiSlopes(nn.Module):
    """Per-head ALiBi slopes as a non-persistent buffer."""

    def __init__(self, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.register_buffer("slopes", torch.empty(num_heads), persistent=False)
        self.reset_buffers()

    def reset_buffers(self) -> None:
        self.slopes = alibi_slopes(self.num_heads).to(self.slopes.device)
