"""What a family module provides, and the pieces every family shares: tensor renaming, RoPE and window
settings read from config.json."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from yamlllm_export.errors import BuildError
from yamlllm_export.hf.config import HFConfig
from yamlllm_export.weights.checkpoint import listed

State = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Family:
    """``to_spec``: config.json → our YAML mapping, with only the keys that differ from our defaults.
    ``convert``: the HF state dict → our state dict (renamed, split, fused or transposed)."""

    model_types: tuple[str, ...]
    to_spec: Callable[[HFConfig], dict[str, Any]]
    convert: Callable[[HFConfig, State], State]


Rule = tuple[str, str | None]  # (regex over the HF name, our name as a re.sub template; None drops the tensor)


def renamed(cfg: HFConfig, state: State, rules: Sequence[Rule]) -> State:
    """Each tensor renamed by the first rule whose regex matches the whole HF name. A tensor no rule knows
    is an error: it would be silently lost otherwise."""
    compiled = [(re.compile(pattern), target) for pattern, target in rules]
    out: State = {}
    unknown = []
    for name, tensor in state.items():
        for pattern, target in compiled:
            m = pattern.fullmatch(name)
            if m:
                if target is not None:
                    out[m.expand(target)] = tensor
                break
        else:
            unknown.append(name)
    if unknown:
        raise BuildError(f"{cfg.folder}: tensors the {cfg.model_type} mapping does not know: {listed('unknown', unknown)}")
    return out


def rope_positions(cfg: HFConfig, *, head_dim: int, rotary_dim: int | None = None) -> dict[str, Any]:
    """``positional_encoding`` for RoPE: theta, partial rotary and the scaling (linear, dynamic, llama3, yarn)."""
    theta, scaling = cfg.rope()
    out: dict[str, Any] = {"type": "rope", "rope_theta": theta}
    if rotary_dim is not None and rotary_dim != head_dim:
        out["rotary_dim"] = rotary_dim
    if scaling is not None:
        out["rope_scaling"] = _rope_scaling(cfg, scaling)
    return out


_SCALING_KEYS = {
    "linear": ("factor",),
    "dynamic": ("factor", "original_max_position_embeddings"),
    "llama3": ("factor", "original_max_position_embeddings", "low_freq_factor", "high_freq_factor"),
    "yarn": ("factor", "original_max_position_embeddings", "beta_fast", "beta_slow", "attention_factor"),
}


def _rope_scaling(cfg: HFConfig, scaling: dict[str, Any]) -> dict[str, Any]:
    kind = scaling.get("rope_type", scaling.get("type"))
    if kind not in _SCALING_KEYS:
        raise BuildError(f"{cfg.where}: rope scaling type {kind!r} is not supported (supported: {', '.join(_SCALING_KEYS)})")
    out = {"type": kind, **{k: scaling[k] for k in _SCALING_KEYS[kind] if scaling.get(k) is not None}}
    if kind in ("dynamic", "yarn") and "original_max_position_embeddings" not in out:
        out["original_max_position_embeddings"] = cfg.require("max_position_embeddings")  # HF's fallback
    return out


def window_overrides(cfg: HFConfig, window: int | None, num_layers: int) -> tuple[int | None, list[dict[str, Any]]]:
    """(the window of every layer, or per-layer overrides) from ``sliding_window`` and ``layer_types``
    (Qwen2 slides only in some layers)."""
    if not window:
        return None, []
    kinds = cfg.get("layer_types")
    if kinds is None or all(k == "sliding_attention" for k in kinds):
        return window, []
    sliding = [i for i, k in enumerate(kinds[:num_layers]) if k == "sliding_attention"]
    return None, ([{"layers": sliding, "attention": {"window_size": window}}] if sliding else [])


def drop_empty(d: dict[str, Any]) -> dict[str, Any]:
    """The mapping without keys whose value is None (nothing to say: our default holds)."""
    return {k: v for k, v in d.items() if v is not None}
