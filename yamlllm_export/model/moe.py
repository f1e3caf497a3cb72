"""Mixture-of-experts feed-forward layer (Shazeer et al. 2017; Switch, Fedus et al. 2021; Mixtral, Jiang et
al. 2024) with an optional always-on shared expert (DeepSeekMoE, Dai et al. 2024).

Notation: B batch, S tokens, d hidden size, E experts, k experts per token.

    p = softmax(router(x))                       (B, S, E), router = Linear(d, E, bias=False), float32
    w = p on each token's k largest entries, 0 elsewhere;  normalize_top_k: w / Σ w (Mixtral),
        otherwise the softmax probabilities as they are (Switch, DeepSeek-V2)
    y = Σ_e w_e · expert_e(x)  [+ shared(x)]

The routed part is one custom op, ``yamlllm::moe`` (``ops/moe.py``). Its eager reference and its plain-op
lowerings are the dense formulation: every expert runs on every token and ``w`` (zero outside the
top-k) weighs the results. Why: the graph has no data-dependent shapes (no gather of each expert's
tokens, no nonzero/scatter-add dispatch), so ``torch.export`` sees static control flow, every dynamic
dimension stays symbolic, and the result equals a sparse dispatch exactly (the unselected experts add
w_e · y_e = 0 · y_e = 0; only the order of the k non-zero terms can differ). Cost: E/k times the expert
FLOPs of a sparse dispatch, and every expert's weights are read for every token. On target ``ort`` the
op becomes the sparse ``com.microsoft.MoE`` kernel where it computes the same function (relu, silu,
gelu_tanh, swiglu with normalised top-k weights; see ``lowerings/ort.py``): 17x faster than dense for a
decode token in our measurement (docs/design.md).

Half precision: routing is a discrete choice, so a token whose k-th and (k+1)-th probabilities differ by
less than the float16 rounding of the residual stream can pick another expert than the float32
reference, and that token's logits then differ by far more than rounding (measured on the 4-expert
top-2 test model, fp16 ORT builds of seeds 0-5: two had one such step, ‖Δ‖/‖ref‖ 0.11 and 0.34; the
same builds with top_k = E stay at 7e-4). Float32 builds are exact.
"""

from __future__ import annotations

import torch
from torch import nn

from yamlllm_export import ops
from yamlllm_export.ops.moe import route

__all__ = ["MoE", "route"]


class MoE(nn.Module):
    """y = dropout(Σ_e w_e(x) · expert_e(x)) [+ shared(x)].

    The experts are injected MLP / GatedMLP modules: they own the parameters (names and initialisation
    as in a dense FFN). The routed computation runs in ``yamlllm::moe`` on their stacked weights, so
    target ``ort`` can lower it to the sparse ``com.microsoft.MoE`` kernel; the experts' own dropout is
    replaced by one dropout on the routed sum. The shared expert runs as a module."""

    def __init__(
        self,
        dim: int,
        *,
        experts: list[nn.Module],
        activation: str,
        top_k: int,
        normalize_top_k: bool,
        shared: nn.Module | None,
        dropout: float,
    ) -> None:
        super().__init__()
        self.router = nn.Linear(dim, len(experts), bias=False)
        self.experts = nn.ModuleList(experts)
        self.shared = shared
        self.activation, self.top_k, self.normalize_top_k = activation, top_k, normalize_top_k
        self.gated = hasattr(experts[0], "gate")
        self.dropout = nn.Dropout(dropout)

    def _stacked(self, name: str, attr: str) -> torch.Tensor | None:
        """(E, ...) stack of every expert's ``name.attr`` (weight or bias), None where absent."""
        if name == "gate" and not self.gated:
            return None
        tensors = [getattr(getattr(expert, name), attr) for expert in self.experts]
        return torch.stack(tensors) if tensors[0] is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = [self._stacked(n, "weight") for n in ("gate", "up", "down")]  # (E, h, d), (E, h, d), (E, d, h)
        biases = [self._stacked(n, "bias") for n in ("gate", "up", "down")]  # (E, h), (E, h), (E, d)
        y = self.dropout(ops.moe(x, self.router.weight, *weights, *biases, self.top_k, self.normalize_top_k, self.activation))
        return y if self.shared is None else y + self.shared(x)
