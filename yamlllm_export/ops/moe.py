"""``yamlllm::moe``: a mixture-of-experts FFN layer, routed top-k (see ``model/moe.py`` for the maths).

    p = softmax(x · routerᵀ [+ router_bias]) (float32); w = p on each token's top-k (÷ their sum when
        ``normalize``), 0 elsewhere; with 0 < top_groups < groups the top-k is taken among the experts of the
        top_groups best groups only; routing "sparsemixer" (Phi-3.5-MoE): the k weights come from
        ``sparsemixer`` instead of one softmax
    y = Σ_e w_e · down_e(act(gate_e(x)) ⊙ up_e(x))      (gated; plain: down_e(act(up_e(x))))

Shapes: x (B, S, d); router_weight (E, d); router_bias (E,) or None; gate_weight, up_weight (E, h, d) (gate
None for a plain MLP); down_weight (E, d, h); biases (E, h) / (E, d) or None. ``activation``: a key of
``ACTIVATIONS`` (for a gated layer the name of the GLU, e.g. ``swiglu``).

SwiGLU's general form is ORT MoE's: g · σ(alpha · g) · (u + beta) with g = gate_e(x), u = up_e(x), each
clamped first when swiglu_limit > 0 (g ≤ limit, −limit ≤ u ≤ limit). alpha 1, beta 0, no limit is plain
SwiGLU; GPT-OSS's experts take alpha 1.702, beta 1, limit 7. A top-k of softmax(logits) renormalised equals
a softmax over the top-k logits (GPT-OSS's router): the same function.

Lowers to ``com.microsoft.MoE`` on target ``ort`` where its CPU kernel computes the same function
(relu, silu, gelu_tanh; swiglu as interleaved ``swiglu_fusion=1`` with its alpha, beta and limit; sparsemixer
through log-gates, see ``lowerings/ort.py``; no group-limited routing), and to the dense formulation in plain
ops everywhere else (``lowerings/common.py``). The eager reference is the dense formulation.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import torch.nn.functional as F

from yamlllm_export.ops.registry import custom_op


def squared_relu(x: torch.Tensor) -> torch.Tensor:
    return F.relu(x).square()


ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu": F.gelu,  # exact (erf)
    "gelu_tanh": functools.partial(F.gelu, approximate="tanh"),
    "relu": F.relu,
    "silu": F.silu,
    "squared_relu": squared_relu,  # relu(x)², Primer (So et al. 2021)
    # gated variants: the activation applied to the gate branch
    "swiglu": F.silu,
    "geglu": F.gelu,
    "geglu_tanh": functools.partial(F.gelu, approximate="tanh"),  # Gemma
    "reglu": F.relu,
}


def group_limited(probs: torch.Tensor, groups: int, top_groups: int) -> torch.Tensor:
    """DeepSeek-V2's group-limited routing: the E experts form ``groups`` equal groups, a group scores its best
    expert's probability, and only the ``top_groups`` best groups' experts keep their probabilities (the
    others become 0, so top-k picks among them)."""
    grouped = probs.unflatten(-1, (groups, -1))  # (B, S, G, E/G)
    best = grouped.amax(dim=-1).topk(top_groups, dim=-1).indices  # (B, S, g)
    keep = torch.zeros_like(grouped[..., 0]).scatter(-1, best, 1.0)  # (B, S, G)
    return (grouped * keep.unsqueeze(-1)).flatten(-2)  # (B, S, E)


def sparsemixer(scores: torch.Tensor, top_k: int, jitter_eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """SparseMixer's inference routing (GRIN, Liu et al. 2024; transformers' ``sparsemixer`` in eval mode), k
    passes over the router scores s (B, S, E): pass i picks the best expert m not yet chosen, masks every
    expert j with (s_m - s_j) / max(|s_j|, s_m) > 2·jitter_eps (and the chosen ones) to -inf, and weighs m
    by its probability in the softmax of what is left. transformers always runs two passes (top_k 2).
    Returns (weights, experts), each (B, S, k)."""
    weights, experts, left = [], [], scores
    for _ in range(top_k):
        best, index = left.max(dim=-1, keepdim=True)  # (B, S, 1)
        far = (best - scores) / scores.abs().clamp(min=best) > 2 * jitter_eps  # (B, S, E)
        gates = left.masked_fill(far, float("-inf")).softmax(dim=-1)
        weights.append(gates.gather(-1, index))
        experts.append(index)
        left = left.scatter(-1, index, float("-inf"))
    return torch.cat(weights, dim=-1), torch.cat(experts, dim=-1)


ROUTINGS = ("softmax", "sparsemixer")


def route(
    logits: torch.Tensor, *, top_k: int, normalize: bool, groups: int = 1, top_groups: int = 0, routing: str = "softmax",
    jitter_eps: float = 0.0,
) -> torch.Tensor:  # fmt: skip
    """Router logits (B, S, E) → gate weights (B, S, E), float32, zero outside each token's top-k (chosen
    within the ``top_groups`` best of ``groups`` expert groups when 0 < top_groups < groups; by
    ``sparsemixer`` when ``routing`` says so).

    Exact ties: ONNX ``TopK`` keeps the lower index, PyTorch does not promise an order; with real-valued
    router weights two experts never score exactly alike in practice (the tests rely on that)."""
    if routing == "sparsemixer":
        top, index = sparsemixer(logits.float(), top_k, jitter_eps)  # (B, S, k)
        probs = logits.float()
    else:
        probs = logits.float().softmax(dim=-1)  # (B, S, E)
        if 0 < top_groups < groups:
            probs = group_limited(probs, groups, top_groups)
        top, index = probs.topk(top_k, dim=-1)  # (B, S, k)
    if normalize:
        top = top / top.sum(dim=-1, keepdim=True)
    return torch.zeros_like(probs).scatter(-1, index, top)


def _bias(b: torch.Tensor | None, e: int) -> torch.Tensor | None:
    return b[e] if b is not None else None


def swiglu(gate: torch.Tensor, up: torch.Tensor, *, limit: float, alpha: float, beta: float) -> torch.Tensor:
    """g · σ(alpha · g) · (u + beta), g and u clamped when limit > 0 (g ≤ limit, |u| ≤ limit); the terms that
    alpha 1, beta 0, no limit make idle are left out, so plain SwiGLU stays silu(g) · u."""
    if limit > 0:
        gate, up = gate.clamp(max=limit), up.clamp(-limit, limit)
    glu = F.silu(gate) if alpha == 1.0 else gate * torch.sigmoid(alpha * gate)
    return glu * (up + beta if beta else up)


@custom_op("moe")
def moe(
    x: torch.Tensor,
    router_weight: torch.Tensor,
    gate_weight: torch.Tensor | None,
    up_weight: torch.Tensor,
    down_weight: torch.Tensor,
    gate_bias: torch.Tensor | None,
    up_bias: torch.Tensor | None,
    down_bias: torch.Tensor | None,
    top_k: int,
    normalize: bool,
    activation: str,
    groups: int = 1,
    top_groups: int = 0,
    routing: str = "softmax",
    jitter_eps: float = 0.0,
    router_bias: torch.Tensor | None = None,
    swiglu_limit: float = 0.0,
    swiglu_alpha: float = 1.0,
    swiglu_beta: float = 0.0,
) -> torch.Tensor:
    act = ACTIVATIONS[activation]
    logits = F.linear(x, router_weight, router_bias)  # (B, S, E)
    w = route(logits, top_k=top_k, normalize=normalize, groups=groups, top_groups=top_groups, routing=routing, jitter_eps=jitter_eps)
    w = w.to(x.dtype)
    y = torch.zeros_like(x)
    for e in range(router_weight.shape[0]):
        up = F.linear(x, up_weight[e], _bias(up_bias, e))  # (B, S, h)
        if gate_weight is None:
            h = act(up)
        elif activation == "swiglu":
            h = swiglu(F.linear(x, gate_weight[e], _bias(gate_bias, e)), up, limit=swiglu_limit, alpha=swiglu_alpha, beta=swiglu_beta)
        else:
            h = act(F.linear(x, gate_weight[e], _bias(gate_bias, e))) * up
        y = y + w[..., e : e + 1] * F.linear(h, down_weight[e], _bias(down_bias, e))  # (B, S, 1) · (B, S, d)
    return y


@moe.op.register_fake
def _(
    x: torch.Tensor, router_weight: torch.Tensor, gate_weight: torch.Tensor | None, up_weight: torch.Tensor, down_weight: torch.Tensor,
    gate_bias: torch.Tensor | None, up_bias: torch.Tensor | None, down_bias: torch.Tensor | None, top_k: int, normalize: bool,
    activation: str, groups: int = 1, top_groups: int = 0, routing: str = "softmax", jitter_eps: float = 0.0,
    router_bias: torch.Tensor | None = None, swiglu_limit: float = 0.0, swiglu_alpha: float = 1.0, swiglu_beta: float = 0.0,
) -> torch.Tensor:  # fmt: skip
    return torch.empty_like(x)
