"""Weight initialisation schemes of the YamlLLM dialect, reproducible from a seed.

All schemes draw from torch's RNG forked and seeded with ``seed``, visiting parameters in module order,
so the same spec, seed and torch version give bit-identical weights (build.json records all three).

- default: each module's own ``reset_parameters`` (PyTorch's defaults);
- gpt2: N(0, std) for every matrix and embedding, residual output projections with std · scale, scale =
  1/sqrt(2 · num_layers) unless given (Radford et al. 2019). Which projections write onto the residual
  stream is each module's own declaration (``RESIDUAL_OUTPUT``: attention's ``o_proj``, an FFN's or the
  experts' ``down``), not a name match: MLA's low-rank query also has a ``down``, which is not one;
- xavier_uniform / xavier_normal (with ``gain``), kaiming_uniform / kaiming_normal: every matrix and
  embedding; biases zero.
Stacked expert weights (E, out, in) are initialised expert by expert, as E separate matrices.
Norm scales start at 1 and shifts at 0 in every scheme (a ``unit_offset`` scale, stored as w in 1 + w,
starts at 0); a ``padding_idx`` row is zeroed; linear attention's scale starts at 1/sqrt(D). Attention sinks
start at 0 in every scheme: one exp(0) in each softmax's denominator (the "off-by-one" softmax), which training
moves per head. A module with ``init_fixups()`` (ReaLLM-Forge's norms, activations, FIRE, the softmax variants:
radii, knots, slopes, offsets, β, γ) sets its own parameters' initial values after the draws, in every scheme:
each entry is a parameter with either a function that fills it or the value to fill it with.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Protocol, runtime_checkable

import torch
from torch import nn


def residual_outputs(model: nn.Module) -> set[int]:
    """ids of the weights whose output is added onto the residual stream: for every module that declares
    ``RESIDUAL_OUTPUT`` (the name of its projection onto the stream), that projection's weight."""
    return {id(getattr(m, name).weight) for m in model.modules() if isinstance(name := getattr(m, "RESIDUAL_OUTPUT", None), str)}


def _init_matrix(weight: torch.Tensor, *, scheme: str, gain: float, std: float) -> None:
    """``std``: the gpt2 scheme's, already residual-scaled for a residual output projection."""
    if scheme == "gpt2":
        nn.init.normal_(weight, 0.0, std)
    elif scheme == "xavier_uniform":
        nn.init.xavier_uniform_(weight, gain=gain)
    elif scheme == "xavier_normal":
        nn.init.xavier_normal_(weight, gain=gain)
    elif scheme == "kaiming_uniform":
        nn.init.kaiming_uniform_(weight, nonlinearity="relu")
    elif scheme == "kaiming_normal":
        nn.init.kaiming_normal_(weight, nonlinearity="relu")
    else:
        raise ValueError(f"unknown initialization scheme {scheme!r}")


@dataclass(frozen=True)
class InitStep:
    """One stretch of the seeded RNG stream: ``fill`` writes ``params``' values into fresh tensors of their
    shapes (the parameters themselves, or stand-ins: a streamed build regenerates one step at a time)."""

    params: tuple[nn.Parameter, ...]
    fill: Callable[[Sequence[torch.Tensor]], object]


@runtime_checkable
class _Resettable(Protocol):
    def reset_parameters(self) -> None: ...


def _reset_step(module: nn.Module, reset: Callable[[], None]) -> InitStep:
    """The default scheme's step: ``module.reset_parameters()`` run on the given tensors (swapped in for
    its own parameters while it runs; every ``reset_parameters`` here touches its direct parameters only)."""
    names = [n for n, p in module.named_parameters(recurse=False)]

    def fill(tensors: Sequence[torch.Tensor]) -> None:
        own = {n: module._parameters[n] for n in names}
        try:
            for n, t in zip(names, tensors, strict=True):
                module._parameters[n] = t if isinstance(t, nn.Parameter) else nn.Parameter(t, requires_grad=False)
            reset()
        finally:
            module._parameters.update(own)

    return InitStep(tuple(getattr(module, n) for n in names), fill)


def _param_step(p: nn.Parameter, fill: Callable[[torch.Tensor], object]) -> InitStep:
    return InitStep((p,), lambda tensors: fill(tensors[0]))


def _fill_matrices(t: torch.Tensor, *, scheme: str, gain: float, std: float) -> None:
    for matrix in t if t.dim() == 3 else (t,):  # stacked experts (E, out, in): each expert's matrix on its own
        _init_matrix(matrix, scheme=scheme, gain=gain, std=std)


def init_steps(model: nn.Module, *, scheme: str, num_layers: int, gain: float, std: float, residual_scale: float | None) -> list[InitStep]:
    """The scheme's draws in RNG order (see module docstring); a parameter written twice (the default
    scheme's tied embedding) takes the last step's values."""
    if scheme == "default":
        return [_reset_step(m, m.reset_parameters) for m in model.modules() if isinstance(m, _Resettable)]
    residual_std = std * (residual_scale if residual_scale is not None else 1.0 / math.sqrt(2 * num_layers))
    offsets = {id(m.weight) for m in model.modules() if getattr(m, "unit_offset", False) and m.weight is not None}
    residual = residual_outputs(model)
    steps = []
    for name, p in model.named_parameters():  # tied parameters once
        if name.endswith("bias"):  # stacked experts' biases are (E, out)
            steps.append(_param_step(p, nn.init.zeros_))
        elif p.dim() in (2, 3):
            matrix_std = residual_std if id(p) in residual else std
            steps.append(_param_step(p, partial(_fill_matrices, scheme=scheme, gain=gain, std=matrix_std)))
        elif id(p) in offsets:  # norm scale stored as w in 1 + w
            steps.append(_param_step(p, nn.init.zeros_))
        else:  # norm scales
            steps.append(_param_step(p, nn.init.ones_))
    return steps


@torch.no_grad()
def init_weights(
    model: nn.Module,
    *,
    scheme: str,
    seed: int,
    num_layers: int,
    gain: float,
    std: float,
    residual_scale: float | None,
    padding_idx: int | None,
) -> None:
    """Initialise every parameter of ``model`` in place (see module docstring)."""
    steps = init_steps(model, scheme=scheme, num_layers=num_layers, gain=gain, std=std, residual_scale=residual_scale)
    devices = [p.device for p in model.parameters() if p.device.type == "cuda"][:1]
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for step in steps:
            step.fill(step.params)
    for param, fix in init_fixups(model, padding_idx):
        fix(param)


def _fill_with(t: torch.Tensor, *, value: float | torch.Tensor) -> None:
    t.copy_(torch.as_tensor(value, dtype=t.dtype, device=t.device).expand_as(t))


def init_fixups(model: nn.Module, padding_idx: int | None) -> list[tuple[nn.Parameter, Callable[[torch.Tensor], object]]]:
    """What every scheme does after its draws, per parameter (no RNG): attention sinks start at 0 (one exp(0) in
    each softmax's denominator), a ``padding_idx`` row is zeroed. ``model/seeded.py`` applies the same."""
    fixes: list[tuple[nn.Parameter, Callable[[torch.Tensor], object]]] = [
        (sinks, nn.init.zeros_) for m in model.modules() if isinstance(sinks := getattr(m, "sinks", None), nn.Parameter)
    ]
    for m in model.modules():  # modules whose parameters start at values of their own (Forge's norms, FIRE, softmax variants)
        own = getattr(m, "init_fixups", None)
        if callable(own):
            fixes += [(p, fill if callable(fill) else partial(_fill_with, value=fill)) for p, fill in own()]
    for m in model.modules():  # a learned scalar with a fixed initial value (linear attention's scale, 1/sqrt(D))
        scale, initial = getattr(m, "scale", None), getattr(m, "scale_init", None)
        if isinstance(scale, nn.Parameter) and initial is not None:
            fixes.append((scale, partial(nn.init.constant_, val=float(initial))))
    if padding_idx is not None:
        fixes.append((model.get_parameter("embed.weight"), lambda t: t[padding_idx].zero_()))
    return fixes
