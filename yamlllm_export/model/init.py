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
starts at 0); a ``padding_idx`` row is zeroed. Attention sinks start at 0 in every scheme: one exp(0) in each
softmax's denominator (the "off-by-one" softmax), which training moves per head.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def residual_outputs(model: nn.Module) -> set[int]:
    """ids of the weights whose output is added onto the residual stream: for every module that declares
    ``RESIDUAL_OUTPUT`` (the name of its projection onto the stream), that projection's weight."""
    return {id(getattr(m, m.RESIDUAL_OUTPUT).weight) for m in model.modules() if hasattr(m, "RESIDUAL_OUTPUT")}


def _reset_defaults(model: nn.Module) -> None:
    for module in model.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()


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
    devices = [p.device for p in model.parameters() if p.device.type == "cuda"][:1]
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        if scheme == "default":
            _reset_defaults(model)
        else:
            residual_std = std * (residual_scale if residual_scale is not None else 1.0 / math.sqrt(2 * num_layers))
            seen: set[int] = set()
            offsets = {id(m.weight) for m in model.modules() if getattr(m, "unit_offset", False) and m.weight is not None}
            residual = residual_outputs(model)
            for name, p in model.named_parameters():
                if id(p) in seen:
                    continue
                seen.add(id(p))
                if name.endswith("bias"):  # stacked experts' biases are (E, out)
                    nn.init.zeros_(p)
                elif p.dim() in (2, 3):  # a matrix, or stacked experts (E, out, in): each expert's matrix on its own
                    matrix_std = residual_std if id(p) in residual else std
                    for matrix in p if p.dim() == 3 else (p,):
                        _init_matrix(matrix, scheme=scheme, gain=gain, std=matrix_std)
                elif id(p) in offsets:  # norm scale stored as w in 1 + w
                    nn.init.zeros_(p)
                else:  # norm scales
                    nn.init.ones_(p)
    for module in model.modules():
        if getattr(module, "sinks", None) is not None:
            module.sinks.zero_()
    if padding_idx is not None:
        model.embed.weight[padding_idx].zero_()
