"""Lowering pieces shared by every target: opset-parametrised shape helpers and the dense plain-op MoE lowering."""

from __future__ import annotations

import math
from typing import Any

import onnx_ir as ir
from onnxscript import opset18


def dim(op: Any, x: Any, axis: int) -> Any:
    """x.shape[axis] as an int64 tensor of shape (1,)."""
    return op.Shape(x, start=axis, end=axis + 1 if axis != -1 else None)


def scalar(op: Any, x1: Any) -> Any:
    """(1,) → ()."""
    return op.Squeeze(x1, op.Constant(value_ints=[0]))


def _activation(op: Any, x: Any, name: str) -> Any:
    """The activations of ``ops/moe.py:ACTIVATIONS`` in plain ops (same formulas as torchlib's)."""
    half, one = op.CastLike(op.Constant(value_float=0.5), x), op.CastLike(op.Constant(value_float=1.0), x)
    if name in ("relu", "reglu"):
        return op.Relu(x)
    if name == "squared_relu":
        r = op.Relu(x)
        return op.Mul(r, r)
    if name in ("silu", "swiglu"):
        return op.Mul(x, op.Sigmoid(x))
    if name in ("gelu", "geglu"):  # exact: x/2 · (1 + erf(x/√2))
        return op.Mul(op.Mul(half, x), op.Add(one, op.Erf(op.Mul(x, op.CastLike(op.Constant(value_float=math.sqrt(0.5)), x)))))
    if name in ("gelu_tanh", "geglu_tanh"):  # x/2 · (1 + tanh(√(2/π) · (x + 0.044715 x³)))
        cube = op.Mul(op.Mul(x, x), x)
        inner = op.Add(x, op.Mul(op.CastLike(op.Constant(value_float=0.044715), x), cube))
        tanh = op.Tanh(op.Mul(op.CastLike(op.Constant(value_float=math.sqrt(2 / math.pi)), x), inner))
        return op.Mul(op.Mul(half, x), op.Add(one, tanh))
    raise ValueError(f"yamlllm::moe: no lowering for activation {name!r}")


def _linear(op: Any, x2: Any, weight: Any, bias: Any, e: int) -> Any:
    """x2 (N, in) · weight[e]ᵀ (+ bias[e]) for a stacked (E, out, in) weight: one Gemm, no transposed copy."""
    index = op.Constant(value_int=e)
    return op.Gemm(x2, op.Gather(weight, index, axis=0), op.Gather(bias, index, axis=0) if bias is not None else None, transB=1)


def _group_limited(op: Any, probs: Any, experts: int, groups: int, top_groups: int) -> Any:
    """``ops/moe.py:group_limited``: probs (B, S, E) with every expert outside the ``top_groups`` best groups
    (a group scores its best expert) set to 0."""
    grouped = op.Reshape(probs, op.Concat(op.Shape(probs, end=-1), op.Constant(value_ints=[groups, experts // groups]), axis=0))
    best = op.ReduceMax(grouped, op.Constant(value_ints=[-1]), keepdims=0)  # (B, S, G)
    _, index = op.TopK(best, op.Constant(value_ints=[top_groups]), axis=-1)  # (B, S, g)
    ones = op.Expand(op.Constant(value_float=1.0), op.Shape(index))
    keep = op.ScatterElements(op.Mul(best, op.Constant(value_float=0.0)), index, ones, axis=-1)  # (B, S, G)
    return op.Reshape(op.Mul(grouped, op.Unsqueeze(keep, op.Constant(value_ints=[-1]))), op.Shape(probs))  # (B, S, E)


def _sparsemixer(op: Any, scores: Any, top_k: int, jitter_eps: float) -> tuple[Any, Any]:
    """``ops/moe.py:sparsemixer`` on float scores (B, S, E): k passes, each picking the best expert left and
    weighing it by its probability among the experts within 2·jitter_eps of it. Returns (weights, experts),
    each (B, S, k)."""
    neg_inf, one = op.Constant(value_float=float("-inf")), op.Constant(value_ints=[1])
    weights, experts, left = [], [], scores
    for _ in range(top_k):
        best, index = op.TopK(left, one, axis=-1)  # (B, S, 1)
        far = op.Greater(op.Div(op.Sub(best, scores), op.Max(op.Abs(scores), best)), op.Constant(value_float=2 * jitter_eps))
        gates = op.Softmax(op.Where(far, neg_inf, left), axis=-1)  # (B, S, E)
        weights.append(op.GatherElements(gates, index, axis=-1))
        experts.append(index)
        left = op.ScatterElements(left, index, op.Expand(neg_inf, op.Shape(index)), axis=-1)
    return op.Concat(*weights, axis=-1), op.Concat(*experts, axis=-1)


def route(
    op: Any, logits: Any, experts: int, top_k: int, normalize: bool, groups: int, top_groups: int, routing: str, jitter_eps: float
) -> Any:
    """``ops/moe.py:route``: router logits (B, S, E) → float32 gate weights (B, S, E), zero outside the top-k."""
    scores = op.Cast(logits, to=ir.DataType.FLOAT)
    if routing == "sparsemixer":
        top, index = _sparsemixer(op, scores, top_k, jitter_eps)  # (B, S, k)
    else:
        probs = op.Softmax(scores, axis=-1)  # (B, S, E)
        if 0 < top_groups < groups:
            probs = _group_limited(op, probs, experts, groups, top_groups)
        top, index = op.TopK(probs, op.Constant(value_ints=[top_k]), axis=-1)  # (B, S, k)
    if normalize:
        top = op.Div(top, op.ReduceSum(top, op.Constant(value_ints=[-1]), keepdims=1))
    return op.ScatterElements(op.Mul(scores, op.Constant(value_float=0.0)), index, top, axis=-1)  # (B, S, E)


def router_logits(op: Any, x: Any, router_weight: Any, router_bias: Any) -> Any:
    """x · routerᵀ (+ bias): (B, S, E)."""
    logits = op.MatMul(x, op.Transpose(router_weight, perm=[1, 0]))
    return op.Add(logits, router_bias) if router_bias is not None else logits


def _swiglu(op: Any, gate: Any, up: Any, limit: float, alpha: float, beta: float) -> Any:
    """``ops/moe.py:swiglu``: g · σ(alpha · g) · (u + beta), g ≤ limit and |u| ≤ limit when limit > 0."""
    if limit > 0:
        gate = op.Min(gate, op.CastLike(op.Constant(value_float=limit), gate))
        up = op.Clip(up, op.CastLike(op.Constant(value_float=-limit), up), op.CastLike(op.Constant(value_float=limit), up))
    slope = gate if alpha == 1.0 else op.Mul(gate, op.CastLike(op.Constant(value_float=alpha), gate))
    shifted = up if not beta else op.Add(up, op.CastLike(op.Constant(value_float=beta), up))
    return op.Mul(op.Mul(gate, op.Sigmoid(slope)), shifted)


def moe(
    x: Any, router_weight: Any, gate_weight: Any, up_weight: Any, down_weight: Any,
    gate_bias: Any, up_bias: Any, down_bias: Any, top_k: int, normalize: bool, activation: str,
    groups: int = 1, top_groups: int = 0, routing: str = "softmax", jitter_eps: float = 0.0, router_bias: Any = None,
    swiglu_limit: float = 0.0, swiglu_alpha: float = 1.0, swiglu_beta: float = 0.0,
) -> Any:  # fmt: skip
    """``yamlllm::moe`` densely in plain opset-18 ops (every expert on every token, weighed by the top-k
    gate), mirroring the eager reference in ``ops/moe.py``; the fallback of every target."""
    op = opset18
    logits = router_logits(op, x, router_weight, router_bias)  # (B, S, E)
    gates = op.CastLike(
        route(op, logits, router_weight.shape[0], top_k, normalize, groups, top_groups, routing, jitter_eps), x
    )  # (B, S, E)
    x2 = op.Reshape(x, op.Concat(op.Constant(value_ints=[-1]), dim(op, x, -1), axis=0))  # (B·S, d)
    gates = op.Reshape(gates, op.Concat(op.Constant(value_ints=[-1]), dim(op, gates, -1), axis=0))  # (B·S, E)
    y = None
    for e in range(router_weight.shape[0]):
        up = _linear(op, x2, up_weight, up_bias, e)  # (B·S, h)
        if gate_weight is None:
            h = _activation(op, up, activation)
        elif activation == "swiglu":
            h = _swiglu(op, _linear(op, x2, gate_weight, gate_bias, e), up, swiglu_limit, swiglu_alpha, swiglu_beta)
        else:
            h = op.Mul(_activation(op, _linear(op, x2, gate_weight, gate_bias, e), activation), up)
        w_e = op.Slice(gates, op.Constant(value_ints=[e]), op.Constant(value_ints=[e + 1]), op.Constant(value_ints=[-1]))  # (B·S, 1)
        term = op.Mul(w_e, _linear(op, h, down_weight, down_bias, e))
        y = term if y is None else op.Add(y, term)
    return op.Reshape(y, op.Shape(x))  # (B, S, d)
