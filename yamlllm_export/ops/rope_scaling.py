"""RoPE frequency scaling for contexts longer than the one a model was trained on.

Every variant changes only the inverse frequencies θ_i = theta^(-2i/d) (d = rotary_dim, i < d/2) and, for
YaRN, multiplies cos and sin by an attention factor. The parameters follow the papers and the Hugging Face
``rope_scaling`` conventions (``transformers/modeling_rope_utils.py``), with L_orig the context length the
model was trained on (``original_max_position_embeddings``):

- linear   (Chen et al. 2023, "position interpolation"): positions p → p / factor, i.e. θ_i / factor.
- dynamic  (NTK-aware, bloc97/emozilla): base' = base · (factor·L/L_orig − (factor − 1))^(d/(d−2)) once the
           current length L exceeds L_orig; computed in the graph (``dynamic_ntk_inv_freq``).
- llama3   (Llama 3.1): wavelengths λ_i = 2π/θ_i longer than L_orig/low_freq_factor are divided by factor,
           shorter than L_orig/high_freq_factor kept, the band between interpolated smoothly.
- yarn     (Peng et al. 2023, arXiv 2309.00071): "NTK-by-parts" ramp between the dims that rotate beta_fast
           and beta_slow times over L_orig, plus cos/sin scaled by attention_factor (0.1·ln(factor) + 1).
- longrope (Ding et al. 2024, arXiv 2402.13753; Phi-3): θ_i / r_i with searched per-frequency rescale
           factors r, ``short_factor`` while L ≤ L_orig and ``long_factor`` past it, cos/sin scaled by
           sqrt(1 + ln(factor)/ln(L_orig)); two tables, chosen per step in the graph (``LongRopeRotary``).

Static variants are computed once, in float64, on the CPU (the model may be built on the meta device).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

SCALING_TYPES = ("linear", "dynamic", "llama3", "yarn", "longrope")


@dataclass(frozen=True)
class RopeScaling:
    """The scaling parameters a ``RotaryCache`` needs, each given: the builder copies them from the spec, whose
    schema holds the defaults (``rope_scaling`` in ``spec/yamlllm.schema.json``)."""

    type: str  # linear | dynamic | llama3 | yarn | longrope
    factor: float
    original_max_position_embeddings: int
    low_freq_factor: float  # llama3
    high_freq_factor: float  # llama3
    beta_fast: float  # yarn
    beta_slow: float  # yarn
    mscale: float | None  # yarn (DeepSeek)
    mscale_all_dim: float | None  # yarn (DeepSeek)
    attention_factor: float | None  # yarn, longrope
    short_factor: tuple[float, ...] | None  # longrope: rd/2 rescale factors up to original_max_position_embeddings
    long_factor: tuple[float, ...] | None  # longrope: rd/2 rescale factors past it
    truncate: bool  # yarn: floor / ceil the ramp's dimension bounds (HF's default; GPT-OSS: false)


def default_inv_freq(rotary_dim: int, theta: float) -> torch.Tensor:
    """θ_i = theta^(-2i/d), i < d/2, float64 (Su et al. 2021)."""
    return theta ** (-torch.arange(0, rotary_dim, 2, dtype=torch.float64, device="cpu") / rotary_dim)


def linear_inv_freq(inv_freq: torch.Tensor, factor: float) -> torch.Tensor:
    """Position interpolation: angle(p) = (p / factor)·θ_i, the same as θ_i / factor."""
    return inv_freq / factor


def llama3_inv_freq(
    inv_freq: torch.Tensor, *, factor: float, low_freq_factor: float, high_freq_factor: float, original_max: int
) -> torch.Tensor:
    """Llama 3.1 scaling by wavelength λ = 2π/θ:

    λ < L_orig/high_freq_factor → θ (high frequencies kept); λ > L_orig/low_freq_factor → θ/factor;
    between: (1 − s)·θ/factor + s·θ with s = (L_orig/λ − low_freq_factor)/(high_freq_factor − low_freq_factor).
    """
    wavelen = 2 * math.pi / inv_freq
    smooth = (original_max / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    mixed = (1 - smooth) * inv_freq / factor + smooth * inv_freq
    out = torch.where(wavelen > original_max / low_freq_factor, inv_freq / factor, mixed)
    return torch.where(wavelen < original_max / high_freq_factor, inv_freq, out)


def yarn_inv_freq(
    rotary_dim: int, theta: float, *, factor: float, beta_fast: float, beta_slow: float, original_max: int, truncate: bool = True
) -> torch.Tensor:
    """YaRN "NTK-by-parts": a dimension pair that completes r = L_orig·θ/(2π) rotations over the training
    context keeps θ when r > beta_fast, becomes θ/factor when r < beta_slow, and is mixed linearly by dim
    index in between. The dim bounds solve r(dim) = beta for dim, floored / ceiled as in HF when ``truncate``
    (its default), left fractional otherwise (GPT-OSS)."""

    def dim_for(rotations: float) -> float:  # the (fractional) dim index 2i at which r = rotations
        return rotary_dim * math.log(original_max / (rotations * 2 * math.pi)) / (2 * math.log(theta))

    low, high = dim_for(beta_fast), dim_for(beta_slow)
    if truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, rotary_dim - 1)
    if low == high:
        high += 0.001  # HF: avoid a zero-width ramp
    ramp = ((torch.arange(rotary_dim // 2, dtype=torch.float64, device="cpu") - low) / (high - low)).clamp(0, 1)
    inv_freq = default_inv_freq(rotary_dim, theta)
    return inv_freq / factor * ramp + inv_freq * (1 - ramp)


def yarn_mscale(factor: float, mscale: float = 1.0) -> float:
    """0.1·mscale·ln(factor) + 1 for factor > 1, else 1 (YaRN's recommended attention temperature)."""
    return 1.0 if factor <= 1 else 0.1 * mscale * math.log(factor) + 1.0


def yarn_attention_factor(factor: float, *, attention_factor: float | None, mscale: float | None, mscale_all_dim: float | None) -> float:
    """The multiplier of cos and sin: ``attention_factor`` when given; else mscale(factor, mscale) /
    mscale(factor, mscale_all_dim) when both are set (DeepSeek); else 0.1·ln(factor) + 1 (HF semantics)."""
    if attention_factor is not None:
        return attention_factor
    if mscale and mscale_all_dim:
        return yarn_mscale(factor, mscale) / yarn_mscale(factor, mscale_all_dim)
    return yarn_mscale(factor)


def longrope_inv_freq(rotary_dim: int, theta: float, rescale: tuple[float, ...]) -> torch.Tensor:
    """LongRoPE: θ_i / r_i, one searched rescale factor r_i per frequency (HF ``_compute_longrope_parameters``)."""
    return default_inv_freq(rotary_dim, theta) / torch.tensor(rescale, dtype=torch.float64, device="cpu")


def longrope_attention_factor(factor: float, *, original_max: int, attention_factor: float | None) -> float:
    """The multiplier of cos and sin, for short and long factors alike: ``attention_factor`` when given,
    else sqrt(1 + ln(factor)/ln(L_orig)) for factor > 1 (factor: max_position_embeddings / L_orig), else 1."""
    if attention_factor is not None:
        return attention_factor
    return 1.0 if factor <= 1 else math.sqrt(1 + math.log(factor) / math.log(original_max))


def static_inv_freq(rotary_dim: int, theta: float, scaling: RopeScaling | None) -> tuple[torch.Tensor, float]:
    """(θ float64 (d/2,), cos/sin multiplier) for no scaling or a static variant (not ``dynamic``)."""
    inv_freq = default_inv_freq(rotary_dim, theta)
    if scaling is None:
        return inv_freq, 1.0
    s = scaling
    if s.type == "linear":
        return linear_inv_freq(inv_freq, s.factor), 1.0
    if s.type == "llama3":
        return llama3_inv_freq(
            inv_freq, factor=s.factor, low_freq_factor=s.low_freq_factor, high_freq_factor=s.high_freq_factor,
            original_max=s.original_max_position_embeddings,
        ), 1.0  # fmt: skip
    if s.type == "yarn":
        freq = yarn_inv_freq(
            rotary_dim, theta, factor=s.factor, beta_fast=s.beta_fast, beta_slow=s.beta_slow,
            original_max=s.original_max_position_embeddings, truncate=s.truncate,
        )  # fmt: skip
        return freq, yarn_attention_factor(s.factor, attention_factor=s.attention_factor, mscale=s.mscale, mscale_all_dim=s.mscale_all_dim)
    raise ValueError(f"rope_scaling.type {s.type!r} has no single static table (choose from linear, llama3, yarn)")


def dynamic_ntk_inv_freq(length: torch.Tensor, *, rotary_dim: int, theta: float, factor: float, original_max: int) -> torch.Tensor:
    """Dynamic NTK θ for the length ``length`` (a float64 tensor (1,), or (B, 1) for one length per row), in
    tensor ops so it is part of the exported graph: base' = theta · (factor·L/L_orig − (factor − 1))^(d/(d−2))
    with L = max(length, L_orig) (below L_orig the base is unchanged). Returns (d/2,), or (B, d/2)."""
    L = length.clamp(min=float(original_max))
    base = theta * (factor * L / original_max - (factor - 1)) ** (rotary_dim / (rotary_dim - 2))  # (1,) or (B, 1)
    exponents = torch.arange(0, rotary_dim, 2, dtype=torch.float64, device=length.device) / rotary_dim
    return base**-exponents
