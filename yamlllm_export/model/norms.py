"""Normalisation layers: LayerNorm (Ba et al. 2016) and RMSNorm (Zhang & Sennrich 2019)."""

from __future__ import annotations

import torch
from torch import nn

from yamlllm_export import ops


class RMSNorm(nn.Module):
    """y = x / sqrt(mean(x²) + eps) · w, through the ``yamlllm::rms_norm`` op."""

    def __init__(self, dim: int, *, eps: float, affine: bool) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim)) if affine else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ops.rms_norm(x, self.weight, self.eps)


def make_norm(kind: str, dim: int, *, eps: float, affine: bool) -> nn.Module:
    if kind == "rmsnorm":
        return RMSNorm(dim, eps=eps, affine=affine)
    return nn.LayerNorm(dim, eps=eps, elementwise_affine=affine)
