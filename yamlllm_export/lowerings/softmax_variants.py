"""ReaLLM-Forge's attention softmax variants in onnxscript: ``ops/softmax_variants.py`` line for line (the
formulas, the packed ``params`` layout and the ``consts`` names are that file's), for ``portable.py``'s
MatMul attention, which every target uses when a variant is set. ``op`` is the caller's opset (18 or later).
"""

from __future__ import annotations

import math
from typing import Any

import onnx_ir as ir

from yamlllm_export.ops.softmax_variants import PFLA_EPS, exppolymax_shift, named


def _c(op: Any, value: float, like: Any) -> Any:
    return op.CastLike(op.Constant(value_float=value), like)


def _slice(op: Any, params: Any, start: int, end: int, like: Any) -> Any:
    """params[start:end] in the dtype of ``like``."""
    return op.CastLike(op.Slice(params, op.Constant(value_ints=[start]), op.Constant(value_ints=[end])), like)


def _per_head(op: Any, v: Any) -> Any:
    """(1,) or (nh,) → (1, nh|1, 1, 1)."""
    return op.Reshape(v, op.Constant(value_ints=[1, -1, 1, 1]))


def _zero_masked(op: Any, y: Any, masked: Any) -> Any:
    return op.Where(masked, _c(op, 0.0, y), y)


def _normalise(op: Any, y: Any, extra: Any = None) -> Any:
    """y / (extra + Σ_row y), a zero denominator (every key masked) taken as 1."""
    den = op.ReduceSum(y, op.Constant(value_ints=[-1]), keepdims=1)
    if extra is not None:
        den = op.Add(extra, den)
    return op.Div(y, op.Where(op.Equal(den, _c(op, 0.0, y)), _c(op, 1.0, y), den))


def _pow(op: Any, base: float, x: Any) -> Any:
    """base^x as exp(x · ln base) (e^x exactly for base e)."""
    return op.Exp(x if base == math.e else op.Mul(x, _c(op, math.log(base), x)))


def _pfla(op: Any, x: Any, knots: Any, values: Any, n: int) -> Any:
    """``ops/softmax_variants.py:_pfla``: the right-hand segment's line through (knots, values)."""
    last = op.Constant(value_ints=[-1])
    below = op.Cast(op.Less(knots, op.Unsqueeze(x, last)), to=ir.DataType.INT64)  # (..., N)
    idx = op.Clip(op.ReduceSum(below, last, keepdims=0), op.Constant(value_int=0), op.Constant(value_int=n - 1))
    nxt = op.Min(op.Add(idx, op.Constant(value_int=1)), op.Constant(value_int=n - 1))
    k0, k1 = op.Gather(knots, idx), op.Gather(knots, nxt)
    v0, v1 = op.Gather(values, idx), op.Gather(values, nxt)
    slope = op.Div(op.Sub(v1, v0), op.Max(op.Sub(k1, k0), _c(op, PFLA_EPS, x)))
    return op.Add(v0, op.Mul(slope, op.Sub(x, k0)))


def variant_weights(op: Any, scores: Any, masked: Any, kind: str, params: Any, consts: Any, num_heads: int) -> Any:
    """Attention weights (B, nh, S, T) of variant ``kind`` from masked scores; ``masked`` (bool) broadcasts."""
    c = named(kind, consts)
    x = _zero_masked(op, scores, masked)
    last = op.Constant(value_ints=[-1])
    if kind == "softermax":
        shifted = op.Sub(x, op.ReduceMax(scores, last, keepdims=1)) if c["use_xmax"] else x
        return _normalise(op, _zero_masked(op, _pow(op, 2.0, shifted), masked))
    if kind == "strongermax":
        tau, obo = _slice(op, params, 0, 1, x), _slice(op, params, 1, 1 + (num_heads if c["obo_per_head"] else 1), x)
        clamp = math.isfinite(c["clamp"])
        a = op.Min(x, _c(op, c["clamp"], x)) if clamp else x
        if c["use_xmax"]:
            if math.isnan(c["xmax_guess"]):
                raw = op.Min(scores, _c(op, c["clamp"], x)) if clamp else scores
                a = op.Sub(a, op.ReduceMax(raw, last, keepdims=1))
            else:
                a = op.Sub(a, _c(op, c["xmax_guess"], x))
        r = _zero_masked(op, _pow(op, c["base"], op.Div(a, tau)), masked)
        if c["div_by_sum"]:
            r = _normalise(op, r, _per_head(op, obo))
        return op.Div(r, _c(op, c["divisor"], x))
    if kind == "sigsoftmax":
        return _normalise(op, _zero_masked(op, op.Mul(op.Exp(x), op.Sigmoid(x)), masked))
    if kind == "pfla_softmax":
        n = int(c["num_knots"])
        knots, roots = _slice(op, params, 0, n, x), _slice(op, params, n, 2 * n, x)
        if c["quadratic"]:
            interp = _pfla(op, x, knots, roots, n)
            y = op.Mul(x, op.Mul(interp, interp))
        else:
            y = _pfla(op, x, knots, op.Mul(roots, roots), n)
        y = _zero_masked(op, y, masked)
        if c["learned_divisor"]:
            gamma = _slice(op, params, 2 * n, 2 * n + 1, x)
            return op.Div(y, op.Add(op.Relu(gamma), _c(op, PFLA_EPS, x)))
        return op.Div(y, op.Add(op.ReduceSum(y, last, keepdims=1), _c(op, PFLA_EPS, x)))
    return _zero_masked(op, _pointwise(op, x, kind, params, c, num_heads), masked)


def _pointwise(op: Any, x: Any, kind: str, params: Any, c: dict[str, float], nh: int) -> Any:
    """``ops/softmax_variants.py:_pointwise``: the unnormalised variants, elementwise."""
    zero = _c(op, 0.0, x)
    if kind in ("consmax", "consmax_quan", "saturatingconsmax"):
        beta, gamma = _slice(op, params, 0, 1, x), _slice(op, params, 1, 2, x)
        if kind == "consmax_quan":
            beta = op.Div(op.Round(op.Mul(beta, _c(op, 100.0, x))), _c(op, 100.0, x))
            gamma = op.Div(op.Round(op.Mul(gamma, _c(op, 10.0, x))), _c(op, 10.0, x))
            return op.Div(op.Exp(op.Sub(x, beta)), gamma)
        body = _pow(op, c["base"], op.Sub(x, beta))
        if kind == "consmax":
            return op.Div(body, gamma)
        sat = _c(op, c["x_sat"], x)
        return op.Div(op.Where(op.Less(x, sat), body, sat), gamma)
    if kind == "consmax_v2":
        beta = op.Mul(_c(op, c["beta_init"], x), _per_head(op, _slice(op, params, 0, nh, x)))
        gamma = op.Mul(_c(op, c["gamma_init"], x), _per_head(op, _slice(op, params, nh, 2 * nh, x)))
        a = op.Sub(x, beta)
        if math.isfinite(c["clamp"]):
            a = op.Min(a, _c(op, c["clamp"], x))
        return op.Div(_pow(op, c["base"], a), gamma)
    if kind in ("polymax", "vpolymax"):
        a0, y0, p = c["x_intercept"], c["y_intercept"], c["power"]
        slope = y0 / -a0 if kind == "polymax" else y0 / a0
        in_linear = op.And(op.GreaterOrEqual(x, _c(op, a0, x)), op.LessOrEqual(x, zero))
        linear = op.Where(in_linear, op.Add(op.Mul(_c(op, slope, x), x), _c(op, y0, x)), zero)
        poly = op.Where(op.Greater(x, zero), op.Add(op.Pow(x, _c(op, p, x)), _c(op, y0, x)), zero)
        return op.Div(op.Add(linear, poly), _c(op, c["divisor"], x))
    if kind == "exppolymax":
        p, s = c["power"], exppolymax_shift(c["power"])
        poly = op.Add(op.Pow(op.Add(x, _c(op, s, x)), _c(op, p, x)), _c(op, c["y_intercept"], x))
        return op.Div(op.Where(op.Less(x, zero), op.Exp(x), poly), _c(op, c["divisor"], x))
    if kind == "relumax":
        return op.Div(op.Relu(x), _c(op, c["divisor"], x))
    if kind == "relu2max":
        r = op.Relu(x)
        return op.Div(op.Mul(r, r), _c(op, c["divisor"], x))
    if kind == "sigmoidmax":
        return op.Div(op.Sigmoid(x), _c(op, c["divisor"], x))
    if kind == "softplus":  # torch's softplus: x itself above the threshold 20
        soft = op.Where(op.Greater(x, _c(op, 20.0, x)), x, op.Log(op.Add(op.Exp(x), _c(op, 1.0, x))))
        return op.Div(soft, _c(op, c["divisor"], x))
    raise ValueError(f"yamlllm::attention: no lowering for softmax variant {kind!r}")
