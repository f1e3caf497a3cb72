"""What a family module provides, and the pieces every family shares: tensor renaming, RoPE and window
settings read from config.json."""

from __future__ import annotations

import re
from collections import defaultdict
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
    ``convert``: the HF state dict → our state dict (renamed, split, fused or transposed). ``note``: what
    the mapping leaves out, said by ``import-hf`` and ``build``."""

    model_types: tuple[str, ...]
    to_spec: Callable[[HFConfig], dict[str, Any]]
    convert: Callable[[HFConfig, State], State]
    note: str = ""


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
        out["rope_scaling"] = _rope_scaling(cfg, scaling, rotary_dim=rotary_dim or head_dim)
    return out


_SCALING_KEYS = {
    "linear": ("factor",),
    "dynamic": ("factor", "original_max_position_embeddings"),
    "llama3": ("factor", "original_max_position_embeddings", "low_freq_factor", "high_freq_factor"),
    "yarn": ("factor", "original_max_position_embeddings", "beta_fast", "beta_slow", "attention_factor", "mscale", "mscale_all_dim"),
}


def _rope_scaling(cfg: HFConfig, scaling: dict[str, Any], *, rotary_dim: int) -> dict[str, Any]:
    kind = scaling.get("rope_type", scaling.get("type"))
    if kind == "longrope":  # transformers' rule: the top-level original context outranks the parameters' own
        original = cfg.get("original_max_position_embeddings") or scaling.get("original_max_position_embeddings")
        return longrope_scaling(cfg, scaling, rotary_dim=rotary_dim, original_max=original or cfg.require("max_position_embeddings"))
    if kind not in _SCALING_KEYS:
        supported = ", ".join([*_SCALING_KEYS, "longrope"])
        raise BuildError(f"{cfg.where}: rope scaling type {kind!r} is not supported (supported: {supported})")
    out = {"type": kind, **{k: scaling[k] for k in _SCALING_KEYS[kind] if scaling.get(k) is not None}}
    if kind == "yarn" and scaling.get("truncate", True) is False:  # GPT-OSS: fractional ramp bounds
        out["truncate"] = False
    if kind in ("dynamic", "yarn") and "original_max_position_embeddings" not in out:
        out["original_max_position_embeddings"] = cfg.require("max_position_embeddings")  # HF's fallback
    return out


# what transformers' ``_compute_longrope_parameters`` reads (partial_rotary_factor: the rotary dim's own key)
_LONGROPE_KEYS = {"rope_type", "type", "rope_theta", "partial_rotary_factor", "short_factor", "long_factor", "factor"}
_LONGROPE_KEYS |= {"attention_factor", "original_max_position_embeddings"}


def longrope_scaling(cfg: HFConfig, params: dict[str, Any], *, rotary_dim: int, original_max: int) -> dict[str, Any]:
    """Our ``rope_scaling`` for transformers' ``longrope`` parameters ``params`` (Phi-3 128k, Phi-3.5,
    Phi-4-mini; other families call it with their own ``original_max``), as ``_compute_longrope_parameters``
    reads them: ``factor`` defaults to max_position_embeddings / original_max and sets the attention factor
    when ``attention_factor`` is absent. One refusal line, naming config.json's key, for factor lists that do
    not hold one number per rotated pair and for keys it would ignore."""
    key = "rope_parameters" if cfg.get("rope_parameters") else "rope_scaling"
    unknown = sorted(set(params) - _LONGROPE_KEYS)
    if unknown:
        raise BuildError(
            f"{cfg.where}: {key}.{unknown[0]} is not supported with longrope scaling (supported: {', '.join(sorted(_LONGROPE_KEYS))})"
        )
    out: dict[str, Any] = {"type": "longrope"}
    factor = params.get("factor")
    out["factor"] = float(cfg.require("max_position_embeddings") / original_max if factor is None else factor)
    out["original_max_position_embeddings"] = int(original_max)
    for name in ("short_factor", "long_factor"):
        factors = params.get(name)
        if not isinstance(factors, list) or len(factors) != rotary_dim // 2 or not all(isinstance(f, int | float) for f in factors):
            got = f"{len(factors)} numbers" if isinstance(factors, list) else repr(factors)
            raise BuildError(f"{cfg.where}: {key}.{name} must be a list of {rotary_dim // 2} numbers (rotary dim {rotary_dim}), got {got}")
        out[name] = [float(f) for f in factors]
    if params.get("attention_factor") is not None:
        out["attention_factor"] = float(params["attention_factor"])
    return out


def window_overrides(
    cfg: HFConfig, window: int | None, num_layers: int, kinds: list[str] | None = None
) -> tuple[int | None, list[dict[str, Any]]]:
    """(the window of every layer, or per-layer overrides) from ``sliding_window`` and ``layer_types``
    (Qwen2 slides only in some layers); ``kinds`` stands in for a ``layer_types`` the config lacks."""
    if not window:
        return None, []
    kinds = cfg.get("layer_types", kinds)
    if kinds is None or all(k == "sliding_attention" for k in kinds):
        return window, []
    sliding = [i for i, k in enumerate(kinds[:num_layers]) if k == "sliding_attention"]
    return None, ([{"layers": sliding, "attention": {"window_size": window}}] if sliding else [])


def drop_empty(d: dict[str, Any]) -> dict[str, Any]:
    """The mapping without keys whose value is None (nothing to say: our default holds)."""
    return {k: v for k, v in d.items() if v is not None}


# HF activation names (transformers' ACT2FN) → our plain FFN activations (gelu_new, gelu_fast and
# gelu_pytorch_tanh are all the tanh approximation; "gelu" is exact erf)
ACTIVATIONS = {
    "gelu": "gelu",
    "gelu_new": "gelu_tanh",
    "gelu_fast": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "relu": "relu",
    "silu": "silu",
    "swish": "silu",
}


def plain_activation(cfg: HFConfig, key: str, default: str) -> str:
    """Our plain FFN activation for ``cfg[key]``; refused when we have no exact equivalent."""
    name = cfg.get(key, default)
    if name not in ACTIVATIONS:
        raise cfg.refuse(key, f"supported activations: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def layer_norm(cfg: HFConfig, eps_key: str) -> dict[str, Any]:
    return {"type": "layernorm", "eps": cfg.get(eps_key, 1e-5)}


def refuse_if(cfg: HFConfig, key: str, bad: Any, why: str, *, default: Any = None) -> None:
    """Refuse config.json's ``key`` when it holds ``bad`` (absent counts as ``default``)."""
    if cfg.get(key, default) == bad:
        raise cfg.refuse(key, why)


FusedSplit = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


def unfused(state: State, pattern: str, split: FusedSplit) -> State:
    """``state`` with every fused QKV tensor (a name ``pattern`` matches in full; its last group is ``weight``
    or ``bias``) split into three, named ``<stem>.q.<weight|bias>``, ``.k.``, ``.v.``: rename rules then map
    them like separate projections."""
    out: State = {}
    for name, tensor in state.items():
        m = re.fullmatch(pattern, name)
        if m is None:
            out[name] = tensor
            continue
        last = m.lastindex
        if last is None:
            raise ValueError(f"unfused: {pattern!r} has no group for weight|bias")
        stem = name[: m.start(last)]
        for part, t in zip("qkv", split(tensor), strict=True):
            out[f"{stem}{part}.{m.group(last)}"] = t.contiguous()
    return out


def grouped_qkv(t: torch.Tensor, *, groups: int, q_per_group: int, head_dim: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split fused QKV rows laid out as ``groups`` groups of [q_per_group query heads, one key head, one value
    head], each head ``head_dim`` rows. This one layout covers per-head (nh, 3, hd) fusing (BLOOM, GPT-NeoX,
    old Falcon: groups = nh, one query each), multi-query [q × nh, k, v] (old Falcon: one group) and
    grouped [q × nh/nkv, k, v] × nkv (Falcon's new architecture)."""
    rest = t.shape[1:]
    g = t.reshape(groups, q_per_group + 2, head_dim, *rest)
    return g[:, :q_per_group].reshape(-1, *rest), g[:, -2].reshape(-1, *rest), g[:, -1].reshape(-1, *rest)


def rope_embedding(cfg: HFConfig, head_dim: int, *, rotary_dim: int | None = None) -> dict[str, Any]:
    """``embedding`` of a RoPE model whose token embeddings are hidden_size wide."""
    return {
        "vocab_size": cfg.require("vocab_size"),
        "max_position_embeddings": cfg.require("max_position_embeddings"),
        "embedding_dim": cfg.require("hidden_size"),
        "positional_encoding": rope_positions(cfg, head_dim=head_dim, rotary_dim=rotary_dim),
    }


def stacked_experts(cfg: HFConfig, state: State, layer: str, names: dict[str, str]) -> State:
    """MoE experts → our stacked ``blocks.L.ffn.experts.{gate,up,down}.weight`` (E, out, in), from either
    layout: one tensor per expert (``<layer>experts.<e>.<name>.weight``, the hub layout; ``names`` maps the
    HF name to gate / up / down), or transformers 5's fused ``<layer>experts.gate_up_proj`` (E, 2h, d; the
    gate's rows first) and ``<layer>experts.down_proj`` (E, d, h). ``layer`` is a regex whose one group is
    the layer index. Every other tensor passes through unchanged."""
    per_expert = re.compile(layer + r"experts\.(\d+)\.(" + "|".join(map(re.escape, names)) + r")\.weight")
    fused = re.compile(layer + r"experts\.(gate_up_proj|down_proj)")
    out: State = {}
    parts: dict[tuple[int, str], dict[int, torch.Tensor]] = defaultdict(dict)
    for name, tensor in state.items():
        if m := per_expert.fullmatch(name):
            parts[int(m[1]), names[m[3]]][int(m[2])] = tensor
        elif m := fused.fullmatch(name):
            ours = f"blocks.{int(m[1])}.ffn.experts"
            if m[2] == "down_proj":
                out[f"{ours}.down.weight"] = tensor
            else:
                out[f"{ours}.gate.weight"], out[f"{ours}.up.weight"] = tensor.chunk(2, dim=1)
        else:
            out[name] = tensor
    for (i, ours), by_expert in parts.items():
        if sorted(by_expert) != list(range(len(by_expert))):
            raise BuildError(f"{cfg.folder}: layer {i}'s {ours} experts are not numbered 0..{len(by_expert) - 1}: {sorted(by_expert)}")
        out[f"blocks.{i}.ffn.experts.{ours}.weight"] = torch.stack([by_expert[e] for e in range(len(by_expert))])
    return out
