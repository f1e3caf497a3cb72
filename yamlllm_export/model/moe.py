"""Mixture-of-experts feed-forward layer (Shazeer et al. 2017; Switch, Fedus et al. 2021; Mixtral, Jiang et
al. 2024) with an optional always-on shared expert (DeepSeekMoE, Dai et al. 2024).

Notation: B batch, S tokens, d hidden size, E experts, k experts per token.

    p = softmax(router(x))                       (B, S, E), router = Linear(d, E) (bias: GPT-OSS), float32
    w = p on each token's k largest entries, 0 elsewhere;  normalize_top_k: w / Σ w (Mixtral),
        otherwise the softmax probabilities as they are (Switch, DeepSeek-V2); group-limited routing
        (DeepSeek-V2): the k largest among the experts of the best-scoring expert groups only;
        SparseMixer routing (Phi-3.5-MoE): k passes over the logits, each weighing its pick by a softmax
        over the experts that score close to it (``ops/moe.py:sparsemixer``)
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

import math

import torch
from torch import nn

from yamlllm_export import ops
from yamlllm_export.ops.moe import route

__all__ = ["ExpertLinear", "Experts", "MoE", "route"]


class ExpertLinear(nn.Module):
    """E independent linear maps stored stacked: weight (E, out, in), bias (E, out); each initialised like
    ``nn.Linear``. Stacked storage is what ``yamlllm::moe`` and ORT's MoE kernel take, so the export has
    no per-forward stacking of expert weights."""

    def __init__(self, num: int, in_features: int, out_features: int, *, bias: bool) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num, out_features, in_features))
        self.bias = nn.Parameter(torch.empty(num, out_features)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for e in range(self.weight.shape[0]):
            nn.init.kaiming_uniform_(self.weight[e], a=math.sqrt(5))  # nn.Linear's default
            if self.bias is not None:
                bound = 1 / math.sqrt(self.weight.shape[2])
                nn.init.uniform_(self.bias[e], -bound, bound)


class Experts(nn.Module):
    """E MLPs (gated: down(act(gate(x)) ⊙ up(x)); plain: down(act(up(x)))) as stacked weights."""

    RESIDUAL_OUTPUT = "down"  # the projection onto the residual stream (gpt2 init scales it)

    def __init__(self, num: int, dim: int, hidden: int, *, gated: bool, bias: bool) -> None:
        super().__init__()
        self.gate = ExpertLinear(num, dim, hidden, bias=bias) if gated else None
        self.up = ExpertLinear(num, dim, hidden, bias=bias)
        self.down = ExpertLinear(num, hidden, dim, bias=bias)

    def tensors(self) -> list[torch.Tensor | None]:
        """gate, up, down weights then biases, as ``yamlllm::moe`` takes them."""
        linears = (self.gate, self.up, self.down)
        out: list[torch.Tensor | None] = [m.weight if m is not None else None for m in linears]
        return out + [m.bias if m is not None else None for m in linears]


class MoE(nn.Module):
    """y = dropout(Σ_e w_e(x) · expert_e(x)) [+ shared(x)]; the routed part is ``yamlllm::moe``, so target
    ``ort`` can lower it to the sparse ``com.microsoft.MoE`` kernel. The shared expert is an injected MLP."""

    def __init__(
        self, dim: int, *, experts: Experts, activation: str, top_k: int, normalize_top_k: bool, shared: nn.Module | None, dropout: float,
        groups: int = 1, top_groups: int = 0, routing: str = "softmax", jitter_eps: float = 0.0, router_bias: bool = False,
        swiglu: tuple[float, float, float] = (0.0, 1.0, 0.0),
    ) -> None:  # fmt: skip
        """``groups`` / ``top_groups``: DeepSeek-V2's group-limited routing (top-k within the best groups; 0: off).
        ``routing``: softmax, or sparsemixer with its threshold ``jitter_eps``.
        ``swiglu``: (limit, alpha, beta) of the experts' SwiGLU, g·σ(alpha·g)·(u + beta) clamped at limit (0: not
        clamped; GPT-OSS: (7, 1.702, 1)); the default is plain SwiGLU."""
        super().__init__()
        self.router = nn.Linear(dim, experts.up.weight.shape[0], bias=router_bias)
        self.experts, self.shared = experts, shared
        self.activation, self.top_k, self.normalize_top_k = activation, top_k, normalize_top_k
        self.groups, self.top_groups, self.swiglu = groups, top_groups, swiglu
        self.routing, self.jitter_eps = routing, jitter_eps
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        routed = ops.moe(
            x, self.router.weight, *self.experts.tensors(), self.top_k, self.normalize_top_k, self.activation, self.groups, self.top_groups,
            self.routing, self.jitter_eps, self.router.bias, *self.swiglu,
        )  # fmt: skip
        y = self.dropout(routed)  # (B, S, d)
        return y if self.shared is None else y + self.shared(x)
