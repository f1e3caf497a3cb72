"""ReaLLM-Forge's norm variants (its ``norm_variant_attn`` / ``norm_variant_output``; FORGE.md §5), all per
token, so stateless and cache-safe. C is the normalised size, g a learned gain (``weight``, C).

    prmsnorm         y = x · sqrt(k) / ‖x[:k]‖ · g,  k = ceil(C · pct)
    krmsnorm         y = x / r · g (g optional),  r = ‖fp16(x_S)‖ / sqrt(k),  k = min(C, num),  S the first or
                     the last k elements; the slice is rounded to float16 and its norm taken in float32
    hyperspherenorm  y = x / ‖x‖ · ρ,  ρ a stored or learned scalar (``radius``)
    dyt (Forge dact) y = γ ⊙ act(α·x) + β,  α scalar, β and γ (C), each optional (DyT: act = tanh)
    identity         y = x
None of them has an epsilon (Forge's code has none: a zero vector gives NaN there and here). They are plain
torch ops that every target exports to standard ONNX ops (ReduceL2 / Sqrt, Cast to float16 and back, Tanh);
none is ``yamlllm::rms_norm``, so ORT's SkipSimplifiedLayerNormalization fusion (which matches that op's
SimplifiedLayerNormalization) never fires on them. Statistics are taken in float32 whatever the input dtype,
as ``ops.rms_norm`` does. Forge's plain RMSNorm (x·sqrt(C)/‖x‖·g, no epsilon) is ``rmsnorm`` with eps 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

Fixup = tuple[nn.Parameter, Callable[[torch.Tensor], object]]


def _norm2(x: torch.Tensor) -> torch.Tensor:
    """‖x‖₂ over the last axis, keepdim, in float32."""
    return x.float().square().sum(-1, keepdim=True).sqrt()


class _Gain(nn.Module):
    """A learned gain ``weight`` (C) starting at 1, or none."""

    def __init__(self, dim: int, gain: bool) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(dim)) if gain else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.weight is not None:
            nn.init.ones_(self.weight)

    def scaled(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """y (float32) · g, in x's dtype."""
        return (y * self.weight.float() if self.weight is not None else y).to(x.dtype)


class PartialRMSNorm(_Gain):
    """pRMSNorm (Zhang & Sennrich 2019): the RMS of the first k = ceil(C · pct) elements stands for the whole."""

    def __init__(self, dim: int, *, pct: float, gain: bool) -> None:
        super().__init__(dim, gain)
        self.k = math.ceil(dim * pct)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rms = _norm2(x[..., : self.k]) / math.sqrt(self.k)  # (..., 1)
        return self.scaled(x.float() / rms, x)


class KRMSNorm(_Gain):
    """kRMSNorm: the RMS of k selected elements (the first or the last), rounded to float16 first."""

    def __init__(self, dim: int, *, num: int, select: str, gain: bool) -> None:
        super().__init__(dim, gain)
        self.k, self.last = min(dim, num), select == "last"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        part = x[..., -self.k :] if self.last else x[..., : self.k]  # (..., k)
        rms = _norm2(part.to(torch.float16)) / math.sqrt(self.k)  # norm of the fp16 values, in float32
        return self.scaled(x.float() / rms, x)


class HypersphereNorm(nn.Module):
    """x / ‖x‖ · ρ. ρ is a parameter ``radius`` (learned in Forge or fixed: the exported graph holds it either way)."""

    def __init__(self, *, radius: float) -> None:
        super().__init__()
        self.initial = radius
        self.radius = nn.Parameter(torch.empty(1))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.constant_(self.radius, self.initial)

    def init_fixups(self) -> list[Fixup]:
        return [(self.radius, lambda t: nn.init.constant_(t, self.initial))]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() / _norm2(x) * self.radius.float()).to(x.dtype)


class DyT(nn.Module):
    """Dynamic Tanh (Zhu et al. 2025) in Forge's general form: γ ⊙ act(α·x) + β; ``alpha`` (scalar, starts at
    ``alpha_init``), ``beta`` (C, starts at 0) and ``gamma`` (C, starts at 1) each optional (None: 1, 0, 1)."""

    def __init__(self, dim: int, *, act: nn.Module, alpha_init: float, alpha: bool, beta: bool, gamma: bool) -> None:
        super().__init__()
        self.act, self.alpha_init = act, alpha_init
        self.alpha = nn.Parameter(torch.empty(1)) if alpha else None
        self.beta = nn.Parameter(torch.empty(dim)) if beta else None
        self.gamma = nn.Parameter(torch.empty(dim)) if gamma else None
        self.reset_parameters()

    def _inits(self) -> list[Fixup]:
        inits: list[Fixup] = []
        if self.alpha is not None:
            inits.append((self.alpha, lambda t: nn.init.constant_(t, self.alpha_init)))
        if self.beta is not None:
            inits.append((self.beta, nn.init.zeros_))
        if self.gamma is not None:
            inits.append((self.gamma, nn.init.ones_))
        return inits

    def reset_parameters(self) -> None:
        for param, fill in self._inits():
            fill(param.data)

    def init_fixups(self) -> list[Fixup]:
        return self._inits()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(x * self.alpha if self.alpha is not None else x)
        if self.gamma is not None:
            y = y * self.gamma
        return y + self.beta if self.beta is not None else y
