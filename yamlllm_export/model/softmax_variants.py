"""The learned parameters of a ReaLLM-Forge attention softmax variant (``layer.attention.softmax``) and the
packed form the attention op takes (``ops/softmax_variants.py`` holds the math and the packing order).

Every tensor a variant reads is a parameter here, also where Forge keeps a constant (saturatingconsmax's
fixed β/γ, strongermax's fixed temperature and off-by-one): the spec's value is its initial value, and a
checkpoint that lacks it gets it from the spec (the Forge importer writes it). Names and shapes follow
Forge's ``softmax_layer_attn`` (β/γ (1,), per-head factors (nh, 1, 1), pfla's knots (N,), γ ()).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from yamlllm_export.ops.softmax_variants import CONSTS

# what pfla_softmax's √y knots start from (only a seeded build uses it; a checkpoint brings its own)
PFLA_INIT = {
    "gelu": nn.functional.gelu,
    "relu": torch.relu,
    "silu": nn.functional.silu,
    "sigmoid": torch.sigmoid,
    "softplus": nn.functional.softplus,
    "tanh": torch.tanh,
    "identity": lambda x: x,
}


def pfla_knots(num_knots: int, x_min: float, x_max: float, density: str) -> torch.Tensor:
    """Forge's knot x positions: N interior points of linspace(x_min, x_max, N + 2), or with ``quad`` / ``exp``
    density the same on (−1, 1) bent by sign·t² or sign·(e^|t| − 1)/(e − 1) and scaled by max(|x_min|, x_max)."""
    if density == "linear":
        return torch.linspace(x_min, x_max, num_knots + 2, dtype=torch.float64, device="cpu")[1:-1]
    t = torch.linspace(-1, 1, num_knots + 2, dtype=torch.float64, device="cpu")[1:-1]
    bent = t.abs() ** 2 if density == "quad" else (t.abs().exp() - 1) / (math.e - 1)
    return torch.sign(t) * bent * max(abs(x_min), x_max)


class SoftmaxVariant(nn.Module):
    """``kind``'s parameters (``initial``: name → initial tensor, in packing order) and constants."""

    def __init__(self, kind: str, *, consts: dict[str, float], initial: dict[str, torch.Tensor]) -> None:
        super().__init__()
        if tuple(consts) != CONSTS[kind]:
            raise ValueError(f"softmax variant {kind}: constants {tuple(consts)}, expected {CONSTS[kind]}")
        self.kind, self.consts = kind, tuple(float(v) for v in consts.values())
        self.initial = {name: value.float() for name, value in initial.items()}  # on the CPU, also under a meta build
        for name, value in initial.items():
            self.register_parameter(name, nn.Parameter(torch.empty(value.shape)))  # filled by init_fixups or a checkpoint

    def init_fixups(self) -> list[tuple[nn.Parameter, torch.Tensor]]:
        """The variant's initial values (the init schemes would treat these small tensors as norm scales)."""
        return [(getattr(self, name), value) for name, value in self.initial.items()]

    def packed(self) -> torch.Tensor | None:
        """The parameters flattened and concatenated in packing order; None for a variant without any."""
        tensors = [getattr(self, name).reshape(-1) for name in self.initial]
        return torch.cat(tensors) if tensors else None


def _one(v: float) -> torch.Tensor:
    return torch.tensor([v], device="cpu")


def make_softmax(kind: str, num_heads: int, **o: object) -> SoftmaxVariant:
    """The module for variant ``kind`` from its spec options ``o`` (every option of the variant filled in)."""
    f = {k: float(v) for k, v in o.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    flag = {k: float(bool(v)) for k, v in o.items() if isinstance(v, bool)}
    inf, nan = math.inf, math.nan
    base = f.get("base") or math.e
    clamp = f["clamp"] if o.get("clamp") is not None else inf
    if kind in ("consmax", "consmax_quan", "saturatingconsmax"):
        params = {"beta": _one(f["beta_init"]), "gamma": _one(f["gamma_init"])}
        if kind == "saturatingconsmax":  # the flat section starts at saturation + the *initial* β, as in Forge
            return SoftmaxVariant(kind, consts={"base": base, "x_sat": f["saturation"] + f["beta_init"]}, initial=params)
        return SoftmaxVariant(kind, consts={"base": base} if kind == "consmax" else {}, initial=params)
    if kind == "consmax_v2":
        ones = torch.ones(num_heads, 1, 1, device="cpu")
        consts = {"base": base, "beta_init": f["beta_init"], "gamma_init": f["gamma_init"], "clamp": clamp}
        return SoftmaxVariant(kind, consts=consts, initial={"beta_factor": ones, "gamma_factor": ones})
    if kind == "strongermax":
        obo = torch.full((num_heads, 1, 1), f["obo"], device="cpu") if o["obo_per_head"] else _one(f["obo"])
        guess = f["xmax_guess"] if o.get("xmax_guess") else nan  # Forge ignores a guess of 0: the row max
        consts = {
            "base": base, "use_xmax": flag["use_xmax"], "xmax_guess": guess, "div_by_sum": flag["div_by_sum"],
            "divisor": f["divisor"], "clamp": clamp, "obo_per_head": flag["obo_per_head"],
        }  # fmt: skip
        return SoftmaxVariant(kind, consts=consts, initial={"temperature": _one(f["temperature"]), "obo": obo})
    if kind == "pfla_softmax":
        n = int(f["num_knots"])
        x = pfla_knots(n, f["x_min"], f["x_max"], str(o["density"]))
        y = PFLA_INIT[str(o["init_activation"])](x).clamp(min=1e-6).sqrt()
        params = {"x_vals": x, "y_vals": y}
        if o["learned_divisor"]:
            params["gamma_raw"] = torch.tensor(f["learned_divisor_init"], device="cpu")
        consts = {"num_knots": float(n), "quadratic": float(o["mode"] == "quadratic"), "learned_divisor": flag["learned_divisor"]}
        return SoftmaxVariant(kind, consts=consts, initial=params)
    return SoftmaxVariant(kind, consts={name: f.get(name, flag.get(name, 0.0)) for name in CONSTS[kind]}, initial={})
