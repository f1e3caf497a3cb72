"""FIRE (ReaLLM-Forge's ``use_fire_embeddings``): a learned per-head attention bias from log-normalised
distances, b[h, i, j] = mlp(u_ij)_h, u from ``ops/fire.py``. The decoder adds it to the padding bias of
the layer whose attention owns the module, so it lands after the scale and the causal mask and before
the softmax (or its variant), as in Forge; masked keys stay masked. One instance shared by every layer
(``fire.shared``) belongs to the decoder (weights ``fire.*``, once) and is computed once per forward; a
layer's own is ``blocks.{i}.attn.fire.*``.

Parameter names below the prefix follow Forge's (``mlp.{k}.weight|bias`` with the same Sequential indices,
``c``, ``init_L``, ``L_multiplier``), so a Forge checkpoint maps one to one.
"""

from __future__ import annotations

import torch
from torch import nn

from yamlllm_export.ops.fire import fire_distances


class FIRE(nn.Module):
    """mlp: Linear(1, W) → ReLU → [Linear(W, W) → ReLU] × (L − 1) → Linear(W, nh) (L = 0: Linear(1, nh)),
    a final ReLU when ``outermost_relu``; c, init_L (fixed), L_multiplier scalars."""

    def __init__(
        self, num_heads: int, *, width: int, hidden_layers: int, outermost_relu: bool, init_c: float, init_L: float, log_bias: float
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        if hidden_layers == 0:
            layers.append(nn.Linear(1, num_heads))
        else:
            layers.append(nn.Linear(1, width))
            for _ in range(hidden_layers - 1):
                layers += [nn.ReLU(), nn.Linear(width, width)]
            layers += [nn.ReLU(), nn.Linear(width, num_heads)]
        if outermost_relu:
            layers.append(nn.ReLU())
        self.mlp = nn.Sequential(*layers)
        self.c = nn.Parameter(torch.empty(()))  # 0-d, as Forge stores them; filled by init_fixups or a checkpoint
        self.init_L = nn.Parameter(torch.empty(()), requires_grad=False)
        self.L_multiplier = nn.Parameter(torch.empty(()))
        self.initial = {"c": init_c, "init_L": init_L, "L_multiplier": 1.0}
        self.log_bias = log_bias

    def init_fixups(self) -> list[tuple[nn.Parameter, float]]:
        """Forge's initial scalars (the init schemes treat 0-d parameters as norm scales)."""
        return [(getattr(self, name), value) for name, value in self.initial.items()]

    def forward(self, key_positions: torch.Tensor, new: int) -> torch.Tensor:
        """key_positions (B, T) → bias (B, nh, S = new, T)."""
        u = fire_distances(key_positions, new, c=self.c, init_L=self.init_L, L_multiplier=self.L_multiplier, log_bias=self.log_bias)
        return self.mlp(u.unsqueeze(-1)).permute(0, 3, 1, 2)  # (B, S, T, nh) → (B, nh, S, T)
