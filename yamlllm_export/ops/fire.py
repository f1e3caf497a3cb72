"""FIRE's normalised distances (Li et al. 2023, "Functional Interpolation for Relative Positions", as
ReaLLM-Forge computes it at inference): the input of the per-head MLP that ``model/fire.py`` turns into an
additive attention bias.

For query position i and key position j (positions inside the row, ``ops/masking.py``'s cumsum(mask) − 1,
so a left-padded row counts from its first token exactly as Forge's window does):

    L = |L_multiplier · init_L|,  n_i = max(i, L) + eps
    u_ij = log(c · (|i − j| + eps) + b + eps) / log(|c · n_i| + b + eps)

b = ``log_bias``, eps = 1e-6 (Forge's constant). The threshold L makes every query nearer the start than L
share one normaliser, so the bias depends on the absolute query position only past L. Plain tensor ops:
torch.export traces them into the graph, which every target runs as they are (no custom op needed).
"""

from __future__ import annotations

import torch

FIRE_EPS = 1e-6


def fire_distances(
    key_positions: torch.Tensor, new: int, *, c: torch.Tensor, init_L: torch.Tensor, L_multiplier: torch.Tensor, log_bias: float
) -> torch.Tensor:
    """key_positions (B, T) (the last ``new`` are the queries') → u (B, S = new, T) in the dtype of ``c``."""
    pos = key_positions.to(c.dtype)
    i = pos[:, -new:, None]  # (B, S, 1) query positions
    j = pos[:, None, :]  # (B, 1, T)
    threshold = (L_multiplier * init_L).abs()
    normaliser = torch.maximum(i, threshold) + FIRE_EPS  # (B, S, 1)
    numerator = torch.log((i - j).abs().add(FIRE_EPS) * c + log_bias + FIRE_EPS)
    return numerator / torch.log((c * normaliser).abs() + log_bias + FIRE_EPS)  # (B, S, T)
