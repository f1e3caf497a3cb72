"""ReaLLM-Forge's KAN FFN: KAL-Net, a Kolmogorov-Arnold network on Legendre polynomials (Forge's
``mlp_variant: kan``, after torchkan; Liu et al. 2024, arXiv 2404.19756).

Per layer ℓ (in → out), with σ the base activation:

    base  = W_base · σ(x)                                        W_base (out, in)
    x̂     = 2 (x − min_t x) / max(max_t x − min_t x, 1e-6) − 1    min/max over the window's positions t,
                                                                 per row and feature
    basis = [P_0(x̂), …, P_P(x̂)] per feature, feature-major       P_{n+1} = ((2n+1) x̂ P_n − n P_{n−1}) / (n+1)
    x     = σ(LayerNorm(base + W_poly · basis))                  W_poly (out, in·(P+1)), no biases

The min/max over the window makes every position depend on every other one (later tokens included): no
cache reproduces it, so a model with it exports as a full-window graph (``spec.features.needs_full_window``).

Padding. Forge has no padding: its window is the row's real tokens. Here the min and max run over the real
tokens only (``valid``), so a left- or right-padded row gives the logits of the row alone; a pad position
is normalised with its row's statistics like any other (its output is never read). A row without any real
token gets a finite range (max < min, clamped to 1e-6), never NaN.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from yamlllm_export.ops.moe import ACTIVATIONS

RANGE_FLOOR = 1e-6  # Forge's clamp of max − min


def legendre(x: torch.Tensor, order: int) -> torch.Tensor:
    """(..., F) → (..., F·(order+1)): P_0(x) … P_order(x) of every feature, feature-major (Bonnet's recurrence)."""
    polys = [torch.ones_like(x), x][: order + 1]
    for n in range(1, order):
        polys.append(((2 * n + 1) * x * polys[-1] - n * polys[-2]) / (n + 1))
    return torch.stack(polys, dim=-1).flatten(-2)  # (..., F, P+1) → (..., F·(P+1))


def window_range(x: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(min, max) over the sequence axis of ``x`` (B, S, F) among the real tokens (``valid`` (B, S, 1) bool),
    each (B, 1, F). A pad takes the row's overall max in the min and its overall min in the max, so it never
    wins either (finite in every dtype, unlike ±inf fills)."""
    hi_all, lo_all = x.amax(1, keepdim=True), x.amin(1, keepdim=True)  # (B, 1, F)
    lo = torch.where(valid, x, hi_all).amin(1, keepdim=True)
    hi = torch.where(valid, x, lo_all).amax(1, keepdim=True)
    return lo, hi


class KANLayer(nn.Module):
    """One KAL-Net layer in → out (module docstring)."""

    def __init__(self, dim_in: int, dim_out: int, *, order: int, activation: str, eps: float) -> None:
        super().__init__()
        self.order = order
        self.base_weight = nn.Parameter(torch.empty(dim_out, dim_in))
        self.poly_weight = nn.Parameter(torch.empty(dim_out, dim_in * (order + 1)))
        self.norm = nn.LayerNorm(dim_out, eps=eps)
        self.act = ACTIVATIONS[activation]
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.kaiming_uniform_(self.base_weight, nonlinearity="linear")
        nn.init.kaiming_uniform_(self.poly_weight, nonlinearity="linear")  # the LayerNorm resets itself

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        base = F.linear(self.act(x), self.base_weight)  # (B, S, out)
        lo, hi = window_range(x, valid)  # (B, 1, in) each
        x_hat = 2 * (x - lo) / torch.clamp(hi - lo, min=RANGE_FLOOR) - 1  # (B, S, in), the window's real tokens in [-1, 1]
        poly = F.linear(legendre(x_hat, self.order), self.poly_weight)  # (B, S, in·(P+1)) → (B, S, out)
        return self.act(self.norm(base + poly))


class KANFFN(nn.Module):
    """The KAN FFN d → middle… → d. ``WINDOW``: its forward takes the token mask, since each layer's
    normalisation reads the whole window (``Block`` passes it)."""

    WINDOW = True

    def __init__(self, dim: int, *, middle: tuple[int, ...], order: int, activation: str, eps: float, dropout: float) -> None:
        super().__init__()
        widths = (dim, *middle, dim)
        self.layers = nn.ModuleList(
            KANLayer(i, o, order=order, activation=activation, eps=eps) for i, o in zip(widths, widths[1:], strict=False)
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """x (B, S, d); valid (B, S, 1) bool, True for real tokens."""
        for layer in self.layers:
            x = layer(x, valid)
        return self.dropout(x)
