"""FFN activations as modules: the stateless functions of ``ops/moe.py:ACTIVATIONS`` and ReaLLM-Forge's
activation variants (its ``activation_variant``), some with learned parameters.

Forge's formulas (FORGE.md §6), all elementwise, so per token and cache-safe:
    gelu_shifted  GELU(x − s), s a learned (or stored) scalar
    relu6 min(max(x, 0), 6); sigmoid; tanh; softsign x/(1+|x|); identity x
    elu / celu α = 1; selu λ = 1.0507…, α = 1.6732… (torch's constants); leaky_relu slope 0.01
    prelu max(x,0) + a·min(x,0), one learned slope a; rrelu in eval: leaky slope (1/8 + 1/3)/2 = 11/48
    mish x·tanh(softplus x); softplus log(1+eˣ) (β 1, threshold 20)
    piecewise / pfla  0 for x < x₀; the segment through (xᵢ,yᵢ),(xᵢ₊₁,yᵢ₊₁) on [xᵢ, xᵢ₊₁); on [x_{n−1}, R)
        the line through (x_{n−1}, y_{n−1}) and (R, R); x for x ≥ R (knots xᵢ, yᵢ learned; R the right bound)
    pfla_le  y₀ for x < x₀, the same interior segments, the last segment extrapolated for x ≥ x_{n−1}
    learned_spline  a cubic spline through 10 learned knots, with Forge's coefficients (see ``LearnedSpline``)
Every function lowers to standard ONNX ops (Elu, Selu, Softplus, Where, Gather ...) through the exporter's
own decompositions, on every target; no custom op is needed.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from yamlllm_export.model.ffn import Activation as Elementwise
from yamlllm_export.ops.moe import ACTIVATIONS

RRELU_EVAL_SLOPE = (1.0 / 8.0 + 1.0 / 3.0) / 2.0  # torch.nn.RReLU's default (lower + upper) / 2 in eval mode


def softsign(x: torch.Tensor) -> torch.Tensor:
    return x / (1.0 + x.abs())


def rrelu_eval(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, RRELU_EVAL_SLOPE)


# Forge's stateless activations beyond ACTIVATIONS
STATELESS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu6": F.relu6,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "softsign": softsign,
    "identity": torch.clone,  # x (a copy)
    "elu": F.elu,
    "celu": F.celu,
    "selu": F.selu,
    "leaky_relu": F.leaky_relu,  # slope 0.01
    "rrelu": rrelu_eval,
    "mish": F.mish,
    "softplus": F.softplus,  # β 1, threshold 20
}


class ShiftedGELU(nn.Module):
    """GELU(x − s), s a scalar (``shift``, Forge's state-dict name; learned or a stored constant)."""

    def __init__(self, shift: float) -> None:
        super().__init__()
        self.initial = shift
        self.shift = nn.Parameter(torch.empty(1))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.constant_(self.shift, self.initial)

    def init_fixups(self) -> list[tuple[nn.Parameter, Callable[[torch.Tensor], object]]]:
        return [(self.shift, lambda t: nn.init.constant_(t, self.initial))]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(x - self.shift)


class PReLU(nn.Module):
    """max(x, 0) + a·min(x, 0) with one learned slope ``weight`` (shape (1,), init 0.25: torch.nn.PReLU's)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(1))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.constant_(self.weight, 0.25)

    def init_fixups(self) -> list[tuple[nn.Parameter, Callable[[torch.Tensor], object]]]:
        return [(self.weight, lambda t: nn.init.constant_(t, 0.25))]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(x >= 0, x, self.weight * x)


class Knots(nn.Module):
    """Learned knots ``x_vals``, ``y_vals`` (n,), initialised on GELU: xᵢ = linspace(L, R, n + 2)[1:-1] for the
    piecewise kinds (the bounds themselves excluded), linspace(L, R, n) for the spline (Forge's inits)."""

    def __init__(self, num: int, left: float, right: float, *, inner: bool) -> None:
        super().__init__()
        self.num, self.left, self.right, self.inner = num, left, right, inner
        self.x_vals = nn.Parameter(torch.empty(num))
        self.y_vals = nn.Parameter(torch.empty(num))
        self.reset_parameters()

    def _initial(self) -> tuple[torch.Tensor, torch.Tensor]:
        xs = torch.linspace(self.left, self.right, self.num + 2)[1:-1] if self.inner else torch.linspace(self.left, self.right, self.num)
        return xs, F.gelu(xs)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        if self.x_vals.device.type == "meta":
            return
        xs, ys = self._initial()
        self.x_vals.copy_(xs)
        self.y_vals.copy_(ys)

    def init_fixups(self) -> list[tuple[nn.Parameter, Callable[[torch.Tensor], object]]]:
        xs, ys = self._initial()
        return [(self.x_vals, lambda t: t.copy_(xs)), (self.y_vals, lambda t: t.copy_(ys))]


class Piecewise(Knots):
    """Forge's ``piecewise`` / ``pfla`` (``learned_ends`` False) and ``pfla_le`` (True); see the module docstring."""

    def __init__(self, num: int, left: float, right: float, *, learned_ends: bool) -> None:
        super().__init__(num, left, right, inner=True)
        self.learned_ends = learned_ends

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xs, ys, n = self.x_vals, self.y_vals, self.num
        out = ys[0].expand_as(x) if self.learned_ends else torch.zeros_like(x)
        for i in range(n - 1):  # interior segments [xᵢ, xᵢ₊₁)
            slope = (ys[i + 1] - ys[i]) / (xs[i + 1] - xs[i])
            out = torch.where((x >= xs[i]) & (x < xs[i + 1]), slope * (x - xs[i]) + ys[i], out)
        if self.learned_ends:  # the last interior segment, extrapolated
            slope = (ys[-1] - ys[-2]) / (xs[-1] - xs[-2])
            return torch.where(x >= xs[-1], slope * (x - xs[-1]) + ys[-1], out)
        slope = (self.right - ys[-1]) / (self.right - xs[-1])  # towards (R, R)
        out = torch.where((x >= xs[-1]) & (x < self.right), slope * (x - xs[-1]) + ys[-1], out)
        return torch.where(x >= self.right, x, out)


class LearnedSpline(Knots):
    """Forge's ``learned_spline``, replicated literally. With hᵢ = xᵢ₊₁ − xᵢ, δᵢ = (yᵢ₊₁ − yᵢ)/hᵢ, M solves the
    tridiagonal system M₀ = M_{n−1} = 0, h_{i−1}M_{i−1} + 2(h_{i−1} + hᵢ)Mᵢ + hᵢM_{i+1} = 3(δᵢ − δ_{i−1}); on
    segment k = clamp(#{xᵢ < x} − 1, 0, n − 2): y = a + b·t + c·t² + d·t³, t = x − x_k, a = y_k,
    b = δ_k − h_k(2M_k + M_{k+1})/3, c = M_k/2, d = (M_{k+1} − M_k)/(6h_k). (This mixes two spline conventions,
    as Forge's code does.) The system is solved with the Thomas algorithm in plain ops (the exporter folds it
    to constants: the knots are initializers), not ``torch.linalg.solve``, which has no ONNX lowering."""

    def __init__(self, num: int, left: float, right: float) -> None:
        super().__init__(num, left, right, inner=False)

    def coefficients(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        xs, ys, n = self.x_vals, self.y_vals, self.num
        h = xs[1:] - xs[:-1]  # (n-1,)
        delta = (ys[1:] - ys[:-1]) / h
        # forward sweep of the Thomas algorithm over rows 1..n-2 (rows 0 and n-1 are Mᵢ = 0)
        c_prime: list[torch.Tensor] = [torch.zeros_like(h[0])]
        d_prime: list[torch.Tensor] = [torch.zeros_like(h[0])]
        for i in range(1, n - 1):
            lower, diag, upper, rhs = h[i - 1], 2 * (h[i - 1] + h[i]), h[i], 3 * (delta[i] - delta[i - 1])
            denom = diag - lower * c_prime[-1]
            c_prime.append(upper / denom)
            d_prime.append((rhs - lower * d_prime[-1]) / denom)
        m = [torch.zeros_like(h[0])] * n
        for i in range(n - 2, 0, -1):  # back substitution (M_{n-1} = 0)
            m[i] = d_prime[i] - c_prime[i] * m[i + 1]
        M = torch.stack(m)  # (n,)
        a = ys[:-1]
        b = delta - h * (2 * M[:-1] + M[1:]) / 3
        c = M[:-1] / 2
        d = (M[1:] - M[:-1]) / (6 * h)
        return a, b, c, d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b, c, d = self.coefficients()
        xs = self.x_vals
        k = ((x.unsqueeze(-1) > xs).sum(-1) - 1).clamp(0, self.num - 2)  # searchsorted(xs, x, left) − 1
        t = x - xs[k]
        return a[k] + b[k] * t + c[k] * t**2 + d[k] * t**3


def make_activation(name: str, *, gelu_shift: float = 0.0, knots: tuple[int, float, float] = (0, 0.0, 0.0)) -> nn.Module:
    """The module for ``ffn.activation`` ``name`` (a gated name gives its gate's activation); ``knots``:
    (n, left, right) of the knot activations (``spec.load`` fills in Forge's defaults)."""
    if name in ACTIVATIONS:
        return Elementwise(ACTIVATIONS[name])
    if name in STATELESS:
        return Elementwise(STATELESS[name])
    if name == "gelu_shifted":
        return ShiftedGELU(gelu_shift)
    if name == "prelu":
        return PReLU()
    num, left, right = knots
    if name == "learned_spline":
        return LearnedSpline(num, left, right)
    return Piecewise(num, left, right, learned_ends=name == "pfla_le")
