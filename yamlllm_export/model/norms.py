"""Normalisation layers: LayerNorm (Ba et al. 2016) and RMSNorm (Zhang & Sennrich 2019).

``unit_offset`` (Gemma): the learned scale is stored as an offset from one, y = norm(x) · (1 + w), and w
starts at 0. The module hands ``1 + w`` to the same op as a plain scale, so every lowering (ORT's
SimplifiedLayerNormalization / LayerNormalization, plain ops) sees an ordinary scale; the exporter's
constant folding usually turns ``1 + w`` into a stored initializer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from yamlllm_export import ops


class RMSNorm(nn.Module):
    """y = x / sqrt(mean(x²) + eps) · w (or · (1 + w) with ``unit_offset``), through ``yamlllm::rms_norm``."""

    def __init__(self, dim: int, *, eps: float, affine: bool, unit_offset: bool = False) -> None:
        super().__init__()
        self.eps, self.unit_offset = eps, unit_offset and affine
        self.weight = nn.Parameter(torch.empty(dim)) if affine else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.weight is not None:
            nn.init.constant_(self.weight, 0.0 if self.unit_offset else 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.weight + 1.0 if self.unit_offset and self.weight is not None else self.weight  # unit_offset implies affine
        return ops.rms_norm(x, scale, self.eps)


class OffsetLayerNorm(nn.LayerNorm):
    """LayerNorm with the scale stored as an offset from one: y = (x - μ) / σ · (1 + w) + b, w starting at 0."""

    unit_offset = True

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if self.weight is not None:
            nn.init.zeros_(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.normalized_shape, self.weight + 1.0, self.bias, self.eps)


def make_norm(kind: str, dim: int, *, eps: float, affine: bool, unit_offset: bool = False) -> nn.Module:
    if kind == "rmsnorm":
        return RMSNorm(dim, eps=eps, affine=affine, unit_offset=unit_offset)
    layer_norm = OffsetLayerNorm if unit_offset and affine else nn.LayerNorm
    return layer_norm(dim, eps=eps, elementwise_affine=affine)
