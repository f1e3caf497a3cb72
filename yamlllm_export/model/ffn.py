"""Feed-forward sub-layers: the plain MLP and the gated (GLU-family) MLP (Shazeer 2020).

Activations (``ops/moe.py:ACTIVATIONS``, shared with the MoE op): gelu is the exact erf form, gelu_tanh
the tanh approximation (GPT-2's "gelu_new"), squared_relu is relu(x)² (So et al. 2021, Primer). The gated
variants name the activation of the gate branch: swiglu silu, geglu exact gelu, geglu_tanh tanh gelu (Gemma),
reglu relu.
"""

from __future__ import annotations

import torch
from torch import nn

from yamlllm_export.ops.moe import ACTIVATIONS


class MLP(nn.Module):
    """down(act(up(x)))."""

    RESIDUAL_OUTPUT = "down"  # the projection onto the residual stream (gpt2 init scales it)

    def __init__(self, dim: int, hidden: int, *, activation: str, bias: bool, dropout: float) -> None:
        super().__init__()
        self.up = nn.Linear(dim, hidden, bias=bias)
        self.down = nn.Linear(hidden, dim, bias=bias)
        self.act = ACTIVATIONS[activation]
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.down(self.act(self.up(x))))


class GatedMLP(nn.Module):
    """down(act(gate(x)) ⊙ up(x)): SwiGLU, GeGLU, ReGLU."""

    RESIDUAL_OUTPUT = "down"  # the projection onto the residual stream (gpt2 init scales it)

    def __init__(self, dim: int, hidden: int, *, activation: str, bias: bool, dropout: float) -> None:
        super().__init__()
        self.gate = nn.Linear(dim, hidden, bias=bias)
        self.up = nn.Linear(dim, hidden, bias=bias)
        self.down = nn.Linear(hidden, dim, bias=bias)
        self.act = ACTIVATIONS[activation]
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.down(self.act(self.gate(x)) * self.up(x)))
