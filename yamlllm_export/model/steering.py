"""ReaLLM-Forge's steering vectors (FORGE.md §9): added to the residual stream between blocks, per token,
so stateless and cache-safe. Slot k is after block k (1-based); slot 0 is after the embeddings.

    manual vector   x ← x + α·v, v read from a .npy file at build time and baked into the graph
    one_hot         x ← x + s·M[idx]   (with a mixture m: x + mᵀM; s is not applied there, as in Forge)
    one_hot_mlp     x ← x + MLP3_idx(x)   (with a mixture: x + Σ mᵢ MLP3ᵢ(x))
    ohmg            x ← x + Σ σ(W_r x + b)ᵢ MLP3ᵢ(x)
    ohmt            x ← x + Σ_{i ∈ top2(W_r x + b)} MLP2ᵢ(x)   (hard 0/1 gates)
    ohmm            x ← x + Σ softmax(W_r x + b)ᵢ MLP2ᵢ(x)
    ohma            x ← x + Σ softmax(x Qᵀ)ᵢ MLP2ᵢ(x)
    mol             x ← x + Σ softmax(W_r x + b)ᵢ MLP3ᵢ(x)
MLP3 = Linear(C, 64) → ReLU → Linear(64, 64) → ReLU → Linear(64, C); MLP2 = Linear(C, 64) → ReLU → Linear(64, C),
all with biases. The selector (idx, s, m) is baked at build time. Module and parameter names follow Forge's
(``lsv_matrix``, ``mlps.{i}.{0,2,4}``, ``router`` / ``router.0``, ``queries``) so an importer maps them 1:1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from yamlllm_export.spec.steering_file import read_steering_vector

LSV_WIDTH = 64
TOP_K = 2  # ohmt
MLP3_VARIANTS = {"one_hot_mlp", "ohmg", "mol"}


def _mlp(dim: int, deep: bool) -> nn.Sequential:
    if deep:
        return nn.Sequential(nn.Linear(dim, LSV_WIDTH), nn.ReLU(), nn.Linear(LSV_WIDTH, LSV_WIDTH), nn.ReLU(), nn.Linear(LSV_WIDTH, dim))
    return nn.Sequential(nn.Linear(dim, LSV_WIDTH), nn.ReLU(), nn.Linear(LSV_WIDTH, dim))


class SteeringVector(nn.Module):
    """x + α·v: v is a constant from ``path`` (a non-persistent buffer, read again by ``reset_buffers``)."""

    def __init__(self, path: str, dim: int, *, scale: float) -> None:
        super().__init__()
        self.path, self.dim, self.scale = path, dim, scale
        self.vector: torch.Tensor
        self.register_buffer("vector", torch.empty(dim), persistent=False)
        self.reset_buffers()

    def reset_buffers(self) -> None:
        if self.vector.device.type != "meta":
            self.vector.copy_(torch.from_numpy(read_steering_vector(self.path, self.dim)) * self.scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.vector.to(x.dtype)


class OneHotLSV(nn.Module):
    """x + w·M with w = s·e_idx, or the mixture m (learned M: ``lsv_matrix`` (n, C))."""

    def __init__(self, num: int, dim: int, *, index: int, scale: float, mixture: tuple[float, ...] | None) -> None:
        super().__init__()
        self.lsv_matrix = nn.Parameter(torch.empty(num, dim))
        weights = torch.tensor(mixture) if mixture is not None else F.one_hot(torch.tensor(index), num).float() * scale
        self.selector: torch.Tensor
        self.register_buffer("selector", weights.to(torch.float32), persistent=False)
        self.num, self.index, self.scale, self.mixture = num, index, scale, mixture
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.lsv_matrix, 0.0, 0.02)  # Forge's init

    def reset_buffers(self) -> None:
        weights = (
            torch.tensor(self.mixture) if self.mixture is not None else F.one_hot(torch.tensor(self.index), self.num).float() * self.scale
        )
        self.selector.copy_(weights.to(torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + (self.selector.to(x.dtype) @ self.lsv_matrix).to(x.dtype)  # (C,)


class OneHotMLPLSV(nn.Module):
    """x + MLP3_idx(x), or x + Σ mᵢ MLP3ᵢ(x) with a mixture (the scale is not applied, as in Forge)."""

    def __init__(self, num: int, dim: int, *, index: int, mixture: tuple[float, ...] | None) -> None:
        super().__init__()
        self.mlps = nn.ModuleList(_mlp(dim, deep=True) for _ in range(num))
        self.index, self.mixture = index, mixture

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mixture is None:
            return x + self.mlps[self.index](x)
        return x + sum(m * mlp(x) for m, mlp in zip(self.mixture, self.mlps, strict=True))


class RoutedLSV(nn.Module):
    """x + Σ gᵢ(x) MLPᵢ(x) with the gates of ``variant``: ohmg σ(router), ohmt top-2 0/1 of the router logits,
    ohmm / mol softmax(router), ohma softmax(x Qᵀ)."""

    def __init__(self, variant: str, num: int, dim: int) -> None:
        super().__init__()
        self.variant = variant
        self.mlps = nn.ModuleList(_mlp(dim, deep=variant in MLP3_VARIANTS) for _ in range(num))
        self.router: nn.Module
        if variant == "ohma":
            self.queries = nn.Parameter(torch.empty(num, dim))
        elif variant in ("ohmg", "mol"):  # Forge's router is Sequential(Linear, Sigmoid | Softmax): router.0.*
            self.router = nn.Sequential(nn.Linear(dim, num))
        else:  # ohmt, ohmm: a bare Linear
            self.router = nn.Linear(dim, num)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.variant == "ohma":
            nn.init.normal_(self.queries)  # Forge's torch.randn

    def gates(self, x: torch.Tensor) -> torch.Tensor:
        """(..., n) weights of the n MLPs for every token."""
        if self.variant == "ohma":
            return torch.softmax(x @ self.queries.t(), dim=-1)
        logits = self.router(x)
        if self.variant == "ohmg":
            return torch.sigmoid(logits)
        if self.variant == "ohmt":  # the straight-through gates' forward value: 1 on the top-2, else 0
            top = logits.topk(TOP_K, dim=-1).indices
            return torch.zeros_like(logits).scatter(-1, top, 1.0)
        return torch.softmax(logits, dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.gates(x)  # (B, S, n)
        out = torch.stack([mlp(x) for mlp in self.mlps], dim=-2)  # (B, S, n, C)
        return x + (g.unsqueeze(-1) * out).sum(-2)
