"""Feed-forward sub-layers: the plain MLP and the gated (GLU-family) MLP (Shazeer 2020)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu": F.gelu,
    "relu": F.relu,
    "silu": F.silu,
    # gated variants: the activation applied to the gate branch
    "swiglu": F.silu,
    "geglu": F.gelu,
    "reglu": F.relu,
}


class MLP(nn.Module):
    """down(act(up(x)))."""

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

    def __init__(self, dim: int, hidden: int, *, activation: str, bias: bool, dropout: float) -> None:
        super().__init__()
        self.gate = nn.Linear(dim, hidden, bias=bias)
        self.up = nn.Linear(dim, hidden, bias=bias)
        self.down = nn.Linear(hidden, dim, bias=bias)
        self.act = ACTIVATIONS[activation]
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.down(self.act(self.gate(x)) * self.up(x)))
