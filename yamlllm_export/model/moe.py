"""Mixture-of-experts feed-forward layer (Shazeer et al. 2017; Switch, Fedus et al. 2021; Mixtral, Jiang et
al. 2024) with an optional always-on shared expert (DeepSeekMoE, Dai et al. 2024).

Notation: B batch, S tokens, d hidden size, E experts, k experts per token.

    p = softmax(router(x))                       (B, S, E), router = Linear(d, E, bias=False), float32
    w = p on each token's k largest entries, 0 elsewhere;  normalize_top_k: w / Σ w (Mixtral),
        otherwise the softmax probabilities as they are (Switch, DeepSeek-V2)
    y = Σ_e w_e · expert_e(x)  [+ shared(x)]

Dense formulation: every expert runs on every token and ``w`` (zero outside the top-k) weighs the
results. Why: the graph has no data-dependent shapes (no gather of each expert's tokens, no
nonzero/scatter-add dispatch), so ``torch.export`` sees static control flow, every dynamic dimension
stays symbolic, and the result equals a sparse dispatch exactly (the unselected experts add w_e · y_e
= 0 · y_e = 0; only the order of the k non-zero terms can differ). Cost: E/k times the expert FLOPs of a
sparse dispatch, and every expert's weights are read for every token; activations stay (B, S, d) because
the experts are accumulated one at a time. Right for the small and medium models this tool exports;
a sparse kernel (ORT's com.microsoft.MoE) is the optimisation for large E.

Half precision: routing is a discrete choice, so a token whose k-th and (k+1)-th probabilities differ by
less than the float16 rounding of the residual stream can pick another expert than the float32
reference, and that token's logits then differ by far more than rounding (measured on the 4-expert
top-2 test model, fp16 ORT builds of seeds 0-5: two had one such step, ‖Δ‖/‖ref‖ 0.11 and 0.34; the
same builds with top_k = E stay at 7e-4). Float32 builds are exact.
"""

from __future__ import annotations

import torch
from torch import nn


def route(logits: torch.Tensor, *, top_k: int, normalize: bool) -> torch.Tensor:
    """Router logits (B, S, E) → gate weights (B, S, E), float32, zero outside each token's top-k.

    Exact ties: ONNX ``TopK`` keeps the lower index, PyTorch does not promise an order; with real-valued
    router weights two experts never score exactly alike in practice (the tests rely on that)."""
    probs = logits.float().softmax(dim=-1)  # (B, S, E)
    top, index = probs.topk(top_k, dim=-1)  # (B, S, k)
    if normalize:
        top = top / top.sum(dim=-1, keepdim=True)
    return torch.zeros_like(probs).scatter(-1, index, top)


class MoE(nn.Module):
    """y = Σ_e w_e(x) · expert_e(x) [+ shared(x)]; the experts (and shared expert) are injected MLPs."""

    def __init__(self, dim: int, *, experts: list[nn.Module], top_k: int, normalize_top_k: bool, shared: nn.Module | None) -> None:
        super().__init__()
        self.router = nn.Linear(dim, len(experts), bias=False)
        self.experts = nn.ModuleList(experts)
        self.shared = shared
        self.top_k, self.normalize_top_k = top_k, normalize_top_k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = route(self.router(x), top_k=self.top_k, normalize=self.normalize_top_k).to(x.dtype)  # (B, S, E)
        y = self.shared(x) if self.shared is not None else None
        for e, expert in enumerate(self.experts):
            term = w[..., e : e + 1] * expert(x)  # (B, S, 1) · (B, S, d)
            y = term if y is None else y + term
        return y
