"""Feed-forward sub-layers: the plain MLP and the gated (GLU-family) MLP (Shazeer 2020).

Activations: gelu is the exact erf form, gelu_tanh the tanh approximation (GPT-2's "gelu_new"),
squared_relu is relu(x)² (So et al. 2021, Primer). The gated variants name the activation of the gate
branch: swiglu silu, geglu exact gelu, reglu relu.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


def squared_relu(x: torch.Tensor) -> torch.Tensor:
    return F.relu(x).square()


ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu": F.gelu,
    "gelu_tanh": functools.partial(F.gelu, approximate="tanh"),
    "relu": F.relu,
    "silu": F.silu,
    "squared_relu": squared_relu,
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
