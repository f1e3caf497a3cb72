"""ReaLLM-Forge's attention softmax variants (``layer.attention.softmax``), the eager reference that
``ops/attention.py`` runs in place of the softmax; ``lowerings/softmax_variants.py`` is the same in
onnxscript, line for line, for every target (they all lower it as MatMul attention).

Each variant maps the masked score row x (B, nh, S, T) to attention weights, row-local and per element (or
normalised over the row), as Forge's eval-mode code computes it (the math: /work/shared/FORGE.md §4):

=================  ==================================================================================
softermax          2^(x − m) / Σ 2^(x − m), m the row max (0 without ``use_xmax``)
consmax            base^(x − β) / γ                                   (β, γ learned scalars)
consmax_v2         base^min(x − β₀·bf_h, clamp) / (γ₀·gf_h)            (bf, gf learned per head)
consmax_quan       e^(x − round(100β)/100) / (round(10γ)/10)
saturatingconsmax  base^(x − β) / γ where x < x_sat, else x_sat / γ   (x_sat = saturation + initial β)
polymax            [0 if x < a; y0·x/(−a) + y0 if a ≤ x ≤ 0; x^p + y0 if x > 0] / div
vpolymax           polymax with the linear piece's slope y0/a (a V)
exppolymax         [e^x if x < 0; (x + s)^p + y0 if x ≥ 0] / div,  s = (1/p)^(1/(p−1)) (0 when p = 1)
strongermax        a = min(x, clamp) − (xmax_guess or m); r = base^(a/τ); r /= (obo + Σ r) (div_by_sum); r /= div
sigsoftmax         e^x σ(x) / Σ e^x σ(x)
relumax            relu(x) / div;  relu2max  relu(x)² / div;  sigmoidmax  σ(x) / div
softplus           softplus(x) / div  (β = 1, linear above 20, as torch)
pfla_softmax       a spline through knots (x_k, y_k²): linear interpolation on the right-hand segment
                   (``mode`` quadratic: x · (interpolated y)²), then / (Σ y + 1e-6) or / (relu(γ) + 1e-6)
=================  ==================================================================================

Masked entries (``masked``, where the causal / window / padding mask put ``mask_value``) get exactly 0
weight in every variant, as Forge's −inf does (f(−inf) = 0 for all of these): the variant runs on the row
with masked entries set to 0 and its masked outputs are then zeroed, so no variant overflows on the finite
mask value (pfla's spline extrapolates linearly, polymax's x^p overflows). A row whose keys are all masked
(a pad query) sums to 0: its normaliser is taken as 1, so it gives zeros, never NaN.

Learned parameters travel packed in one 1-D tensor ``params``, in this order per variant (shapes as Forge
stores them, flattened): consmax, consmax_quan, saturatingconsmax [β, γ]; consmax_v2 [bf (nh), gf (nh)];
strongermax [τ, obo (1 or nh)]; pfla_softmax [x knots (N), √y knots (N), (γ)]; the rest none. ``consts``
holds the variant's constants, named by ``CONSTS``.
"""

from __future__ import annotations

import math

import torch

# the constants of each variant, in the order ``consts`` holds them (an unset clamp is +inf, an unset guess NaN)
CONSTS: dict[str, tuple[str, ...]] = {
    "softermax": ("use_xmax",),
    "consmax": ("base",),
    "consmax_v2": ("base", "beta_init", "gamma_init", "clamp"),
    "consmax_quan": (),
    "saturatingconsmax": ("base", "x_sat"),
    "polymax": ("x_intercept", "y_intercept", "power", "divisor"),
    "vpolymax": ("x_intercept", "y_intercept", "power", "divisor"),
    "exppolymax": ("y_intercept", "power", "divisor"),
    "strongermax": ("base", "use_xmax", "xmax_guess", "div_by_sum", "divisor", "clamp", "obo_per_head"),
    "sigsoftmax": (),
    "relumax": ("divisor",),
    "relu2max": ("divisor",),
    "sigmoidmax": ("divisor",),
    "softplus": ("divisor",),
    "pfla_softmax": ("num_knots", "quadratic", "learned_divisor"),
}
KINDS = tuple(CONSTS)
PFLA_EPS = 1e-6  # pfla's normaliser guard and its minimum knot spacing (Forge's constants)


def named(kind: str, consts: list[float] | tuple[float, ...] | None) -> dict[str, float]:
    """``consts`` by name, checked against the variant's layout."""
    names = CONSTS[kind]
    values = tuple(consts or ())
    if len(values) != len(names):
        raise ValueError(f"softmax variant {kind}: {len(values)} constants, expected {names}")
    return dict(zip(names, values, strict=True))


def exppolymax_shift(power: float) -> float:
    """s in (x + s)^p: the shift that makes the polynomial's slope at 0 equal e^0 (Euler base)."""
    return 0.0 if power == 1.0 else (1.0 / power) ** (1.0 / (power - 1.0))


def _per_head(v: torch.Tensor) -> torch.Tensor:
    """(1,) or (nh,) → broadcastable over (B, nh, S, T)."""
    return v.view(1, -1, 1, 1)


def _normalise(y: torch.Tensor, extra: torch.Tensor | float = 0.0) -> torch.Tensor:
    """y / (extra + Σ_row y), a zero denominator (a row with every key masked) taken as 1."""
    den = extra + y.sum(-1, keepdim=True)
    return y / torch.where(den == 0, torch.ones_like(den), den)


def _pfla(x: torch.Tensor, knots: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Forge's interpolation: idx = #knots < x (searchsorted, left) in [0, N−1], j = min(idx + 1, N − 1),
    y = v_idx + (v_j − v_idx) / max(k_j − k_idx, 1e-6) · (x − k_idx): the right-hand segment's line."""
    n = knots.shape[0]
    idx = (knots < x.unsqueeze(-1)).sum(-1).clamp(0, n - 1)  # (..., ) int64
    nxt = (idx + 1).clamp(max=n - 1)
    k0, k1, v0, v1 = knots[idx], knots[nxt], values[idx], values[nxt]
    return v0 + (v1 - v0) / (k1 - k0).clamp(min=PFLA_EPS) * (x - k0)


def variant_weights(
    scores: torch.Tensor, masked: torch.Tensor, kind: str, params: torch.Tensor | None, consts: list[float] | tuple[float, ...] | None
) -> torch.Tensor:
    """Attention weights (B, nh, S, T) of variant ``kind`` from masked scores (B, nh, S, T); ``masked``
    broadcasts to them (True: the key is masked for that query)."""
    c = named(kind, consts)
    x = scores.masked_fill(masked, 0.0)  # what the variant sees at masked keys; their weight is zeroed below
    nh = scores.shape[1]
    if params is None:  # the variants without learned parameters never read it
        params = scores.new_zeros(0)
    if kind == "softermax":
        m = scores.amax(-1, keepdim=True) if c["use_xmax"] else 0.0
        return _normalise(torch.pow(2.0, x - m).masked_fill(masked, 0.0))
    if kind == "strongermax":
        tau, obo = params[0], params[1:]
        a = x.clamp(max=c["clamp"]) if math.isfinite(c["clamp"]) else x
        if c["use_xmax"]:
            raw = scores.clamp(max=c["clamp"]) if math.isfinite(c["clamp"]) else scores
            a = a - (c["xmax_guess"] if not math.isnan(c["xmax_guess"]) else raw.amax(-1, keepdim=True))
        r = torch.pow(c["base"], a / tau).masked_fill(masked, 0.0)
        if c["div_by_sum"]:
            r = _normalise(r, _per_head(obo.to(r.dtype)))
        return r / c["divisor"]
    if kind == "sigsoftmax":
        return _normalise((x.exp() * torch.sigmoid(x)).masked_fill(masked, 0.0))
    if kind == "pfla_softmax":
        n = int(c["num_knots"])
        knots, roots = params[:n].to(x.dtype), params[n : 2 * n].to(x.dtype)
        if c["quadratic"]:
            y = x * _pfla(x, knots, roots) ** 2
        else:
            y = _pfla(x, knots, roots**2)
        y = y.masked_fill(masked, 0.0)
        if c["learned_divisor"]:
            return y / (torch.relu(params[2 * n]) + PFLA_EPS)
        return y / (y.sum(-1, keepdim=True) + PFLA_EPS)
    return _pointwise(x, kind, params, c, nh).masked_fill(masked, 0.0)


def _pointwise(x: torch.Tensor, kind: str, params: torch.Tensor, c: dict[str, float], nh: int) -> torch.Tensor:
    """The unnormalised variants, elementwise."""
    zero = torch.zeros((), dtype=x.dtype, device=x.device)
    if kind in ("consmax", "consmax_quan", "saturatingconsmax"):
        beta, gamma = params[0].to(x.dtype), params[1].to(x.dtype)
        if kind == "consmax_quan":  # Forge's eval path: β on a 1/100 grid, γ on a 1/10 grid
            return torch.exp(x - torch.round(beta * 100) / 100) / (torch.round(gamma * 10) / 10)
        if kind == "consmax":
            return torch.pow(c["base"], x - beta) / gamma
        return torch.where(x < c["x_sat"], torch.pow(c["base"], x - beta), c["x_sat"]) / gamma
    if kind == "consmax_v2":
        beta = c["beta_init"] * _per_head(params[:nh].to(x.dtype))
        gamma = c["gamma_init"] * _per_head(params[nh : 2 * nh].to(x.dtype))
        a = x - beta
        if math.isfinite(c["clamp"]):
            a = a.clamp(max=c["clamp"])
        return torch.pow(c["base"], a) / gamma
    if kind in ("polymax", "vpolymax"):
        a0, y0, p = c["x_intercept"], c["y_intercept"], c["power"]
        slope = y0 / -a0 if kind == "polymax" else y0 / a0
        linear = torch.where((x >= a0) & (x <= 0), slope * x + y0, zero)
        poly = torch.where(x > 0, torch.pow(x, p) + y0, zero)
        return (linear + poly) / c["divisor"]
    if kind == "exppolymax":
        p, s = c["power"], exppolymax_shift(c["power"])
        return torch.where(x < 0, x.exp(), torch.pow(x + s, p) + c["y_intercept"]) / c["divisor"]
    if kind == "relumax":
        return torch.relu(x) / c["divisor"]
    if kind == "relu2max":
        return torch.relu(x) ** 2 / c["divisor"]
    if kind == "sigmoidmax":
        return torch.sigmoid(x) / c["divisor"]
    if kind == "softplus":
        return torch.nn.functional.softplus(x) / c["divisor"]
    raise ValueError(f"unknown attention softmax variant {kind!r} (known: {', '.join(KINDS)})")
