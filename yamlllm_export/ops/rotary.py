"""Rotary position embedding (RoPE, Su et al. 2021), half-rotation layout (GPT-NeoX / LLaMA).

The caches hold ``cos(p·θ_i)`` and ``sin(p·θ_i)`` for positions p < max_positions and the rotary_dim/2
frequencies θ_i = theta^(-2i/rotary_dim), the layout of ``com.microsoft.RotaryEmbedding`` and ONNX
``RotaryEmbedding``. Partial rotary (rotary_dim < head_dim, GPT-NeoX / Phi): the tables have rotary_dim/2
columns and only the first rotary_dim features of a head rotate; the rest pass through. Scaled variants
(linear, dynamic NTK, llama3, YaRN) only change θ and the tables' scale: see ``ops/rope_scaling.py``.

Interleaved layout (GPT-J, ReaLLM-Forge): pair i is features (2i, 2i+1) instead of (i, i + rd/2), with the same
tables (θ_i = theta^(-2i/rd), spaced over the rotated dims rd, not the head size); the kernels' ``interleaved``
attribute. SOAP (Forge's ``rope_variant: soap``) is this layout with one frequency 2π/N in every column.
"""

from __future__ import annotations

import math

import torch


def rope_tables(positions: torch.Tensor, inv_freq: torch.Tensor, attention_factor: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, sin) of p·θ_i for every p in ``positions`` (n,) and θ in ``inv_freq`` (rd/2,), each (n, rd/2),
    times ``attention_factor`` (YaRN; 1 otherwise). Computed in the inputs' dtype (float64 for accuracy)."""
    angles = torch.outer(positions, inv_freq)
    return angles.cos() * attention_factor, angles.sin() * attention_factor


def soap_inv_freq(rotary_dim: int, num_angles: int) -> torch.Tensor:
    """SOAP (ReaLLM-Forge's ``rope_variant: soap``): every pair turns by the one frequency 2π/N, float64.
    Forge rolls an angle table of N entries by one per call; q and k roll alike, so scores see only
    2π(p_q − p_k)/N, which is this table's rotation (periodic in p with period N)."""
    return torch.full((rotary_dim // 2,), 2 * math.pi / num_angles, dtype=torch.float64, device="cpu")


def rope_caches(max_positions: int, rotary_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, sin), each [max_positions, rotary_dim / 2], computed in float64 for accuracy, returned fp32."""
    inv_freq = theta ** (-torch.arange(0, rotary_dim, 2, dtype=torch.float64, device="cpu") / rotary_dim)
    cos, sin = rope_tables(torch.arange(max_positions, dtype=torch.float64, device="cpu"), inv_freq)
    return cos.float(), sin.float()


def rotary_inputs(
    cos_cache: torch.Tensor | None, sin_cache: torch.Tensor | None, position_ids: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """(position_ids, cos_cache, sin_cache) for ``apply_rotary``, or None when the op rotates nothing (no cos table);
    the attention ops take the three as optional arguments, which come together or not at all."""
    if cos_cache is None:
        return None
    if sin_cache is None or position_ids is None:
        raise ValueError("rotary: cos_cache needs sin_cache and position_ids")
    return position_ids, cos_cache, sin_cache


def apply_rotary(
    x: torch.Tensor, position_ids: torch.Tensor, cos_cache: torch.Tensor, sin_cache: torch.Tensor, *, interleaved: bool = False
) -> torch.Tensor:
    """Rotate the first rotary_dim features of every head. x: (B, S, nh, hs); position_ids: (B, S).
    ``interleaved``: pair i is (2i, 2i+1), (e, o) → (e·cos − o·sin, e·sin + o·cos); else (i, i + rd/2)."""
    half = cos_cache.shape[-1]
    cos = cos_cache[position_ids].unsqueeze(2).to(x.dtype)  # (B, S, 1, rd/2)
    sin = sin_cache[position_ids].unsqueeze(2).to(x.dtype)
    if interleaved:
        pairs = x[..., : 2 * half].unflatten(-1, (half, 2))  # (B, S, nh, rd/2, 2)
        even, odd = pairs[..., 0], pairs[..., 1]
        turned = torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1).flatten(-2)  # (B, S, nh, rd)
        return torch.cat([turned, x[..., 2 * half :]], dim=-1)
    x1, x2, rest = x[..., :half], x[..., half : 2 * half], x[..., 2 * half :]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin, rest], dim=-1)
