"""Feed-forward sub-layers: the plain MLP, the gated (GLU-family) MLP (Shazeer 2020) and ReaLLM-Forge's
dual-path MLP.

Activations are modules (``model/activations.py``): the stateless ones of ``ops/moe.py:ACTIVATIONS``
(gelu is the exact erf form, gelu_tanh the tanh approximation, squared_relu relu(x)², Primer) and Forge's
variants. The gated names give the gate branch's activation: swiglu silu, geglu exact gelu, geglu_tanh tanh
gelu (Gemma), reglu relu; a gated MLP takes any other activation for its gate as well (Forge's swiglu gates
with its ``activation_variant``, GELU by default).

Forge's activation offsets (``mlp_x_offset`` / ``mlp_y_offset``): act(u − x_off) − y_off in place of act(u),
scalars ``x_offset`` / ``y_offset`` (learned in Forge or constant; stored parameters either way, 0 when absent).
Forge's ``mlp_down_projs`` k: the down projection writes k·d values, summed over the k blocks of d.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import nn

from yamlllm_export.ops.moe import ACTIVATIONS

Fixup = tuple[nn.Parameter, Callable[[torch.Tensor], object]]


class Activation(nn.Module):
    """A stateless activation function of ``ACTIVATIONS`` as a module."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


def as_module(activation: str | nn.Module) -> nn.Module:
    """An activation module; a name is looked up in ``ACTIVATIONS``."""
    return Activation(ACTIVATIONS[activation]) if isinstance(activation, str) else activation


class Offsets(nn.Module):
    """act(u − x_off) − y_off; an offset that is None is left out of the graph."""

    def __init__(self, act: nn.Module, *, x_offset: float | None = None, y_offset: float | None = None) -> None:
        super().__init__()
        self.act = act
        self.inits = {name: v for name, v in (("x_offset", x_offset), ("y_offset", y_offset)) if v is not None}
        self.x_offset = nn.Parameter(torch.empty(1)) if x_offset is not None else None
        self.y_offset = nn.Parameter(torch.empty(1)) if y_offset is not None else None
        self.reset_parameters()

    def init_fixups(self) -> list[Fixup]:
        out: list[Fixup] = []
        for name, value in self.inits.items():
            out.append((getattr(self, name), functools.partial(nn.init.constant_, val=value)))
        return out

    def reset_parameters(self) -> None:
        for param, fill in self.init_fixups():
            fill(param.data)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        y = self.act(u - self.x_offset if self.x_offset is not None else u)
        return y - self.y_offset if self.y_offset is not None else y


class Down(nn.Linear):
    """The down projection h → d; with ``blocks`` k > 1 a Linear(h, k·d) whose k blocks of d are summed
    (Forge's ``mlp_down_projs``: equal to one projection by the sum of the blocks)."""

    def __init__(self, hidden: int, dim: int, *, bias: bool, blocks: int = 1) -> None:
        super().__init__(hidden, dim * blocks, bias=bias)
        self.blocks, self.dim = blocks, dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x)
        if self.blocks == 1:
            return y
        return y.unflatten(-1, (self.blocks, self.dim)).sum(-2)  # (..., k·d) → (..., k, d) → (..., d)


class MLP(nn.Module):
    """down(act(up(x)))."""

    RESIDUAL_OUTPUT = "down"  # the projection onto the residual stream (gpt2 init scales it)

    def __init__(self, dim: int, hidden: int, *, activation: str | nn.Module, bias: bool, dropout: float, down_blocks: int = 1) -> None:
        super().__init__()
        self.up = nn.Linear(dim, hidden, bias=bias)
        self.down = Down(hidden, dim, bias=bias, blocks=down_blocks)
        self.act = as_module(activation)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.down(self.act(self.up(x))))


class GatedMLP(nn.Module):
    """down(act(gate(x)) ⊙ up(x)): SwiGLU, GeGLU, ReGLU, or any activation on the gate."""

    RESIDUAL_OUTPUT = "down"  # the projection onto the residual stream (gpt2 init scales it)

    def __init__(self, dim: int, hidden: int, *, activation: str | nn.Module, bias: bool, dropout: float, down_blocks: int = 1) -> None:
        super().__init__()
        self.gate = nn.Linear(dim, hidden, bias=bias)
        self.up = nn.Linear(dim, hidden, bias=bias)
        self.down = Down(hidden, dim, bias=bias, blocks=down_blocks)
        self.act = as_module(activation)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.down(self.act(self.gate(x)) * self.up(x)))


class DualPathMLP(nn.Module):
    """Forge's dual-path MLP: g = up(x); y = down(act(g − x_off) − y_off) + down_neg(−act(−(g + x_off)) − y_off).
    The negative path reads the mirrored pre-activation, so an asymmetric activation (GELU, ReLU) passes
    both signs of g. ``act`` is the bare activation: the offsets are this module's (``x_offset``, ``y_offset``)."""

    RESIDUAL_OUTPUT = "down"  # gpt2 init scales this one (down_neg is initialised as an ordinary matrix)

    def __init__(
        self, dim: int, hidden: int, *, act: nn.Module, bias: bool, dropout: float, x_offset: float | None, y_offset: float | None
    ) -> None:
        super().__init__()
        self.up = nn.Linear(dim, hidden, bias=bias)
        self.down = nn.Linear(hidden, dim, bias=bias)
        self.down_neg = nn.Linear(hidden, dim, bias=bias)
        self.act = act
        self.offsets = Offsets(nn.Identity(), x_offset=x_offset, y_offset=y_offset)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.up(x)
        x_off = self.offsets.x_offset if self.offsets.x_offset is not None else 0.0
        y_off = self.offsets.y_offset if self.offsets.y_offset is not None else 0.0
        pos = self.act(g - x_off) - y_off
        neg = -self.act(-(g + x_off)) - y_off
        return self.dropout(self.down(pos) + self.down_neg(neg))
