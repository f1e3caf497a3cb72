"""Position information: learned or sinusoidal absolute embeddings, RoPE tables (plain, scaled, dynamic
NTK, LongRoPE) and ALiBi slopes. ``none`` is the absence of all of them.

Each is a small module so the decoder receives exactly one of them; RoPE and ALiBi hand their tensors to
the attention ops rather than touching the hidden states. Tables and slopes are non-persistent buffers:
recomputed from the spec, never saved as weights.
"""

from __future__ import annotations

import torch
from torch import nn

from yamlllm_export.ops.attention_bias import alibi_slopes
from yamlllm_export.ops.rope_scaling import (
    RopeScaling,
    dynamic_ntk_inv_freq,
    longrope_attention_factor,
    longrope_inv_freq,
    static_inv_freq,
)
from yamlllm_export.ops.rotary import rope_tables, soap_inv_freq


class LearnedPositions(nn.Module):
    """x + P[position_ids] (GPT-2)."""

    def __init__(self, max_positions: int, dim: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(max_positions, dim)

    def forward(self, x: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        return x + self.embedding(position_ids)


class SinusoidalPositions(nn.Module):
    """x + PE[position_ids] with the fixed table of Vaswani et al. 2017 (§3.5):
    PE[p, 2i] = sin(p / base^(2i/d)), PE[p, 2i+1] = cos(p / base^(2i/d)), base = 10000."""

    table: torch.Tensor  # (P, d) buffer

    def __init__(self, max_positions: int, dim: int, *, base: float = 10000.0) -> None:
        super().__init__()
        self.max_positions, self.dim, self.base = max_positions, dim, base
        self.register_buffer("table", torch.empty(max_positions, dim), persistent=False)
        self.reset_buffers()

    def reset_buffers(self) -> None:
        inv_freq = self.base ** (-torch.arange(0, self.dim, 2, dtype=torch.float64, device="cpu") / self.dim)
        angles = torch.outer(torch.arange(self.max_positions, dtype=torch.float64, device="cpu"), inv_freq)  # (P, ⌈d/2⌉)
        table = torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(1)[:, : self.dim]  # (P, d): sin, cos interleaved
        self.table = table.to(self.table.device, self.table.dtype)

    def forward(self, x: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        return x + self.table[position_ids].to(x.dtype)


class RotaryCache(nn.Module):
    """cos/sin tables for RoPE over positions < max_positions; non-persistent buffers (recomputed from the
    spec, never saved as weights). ``scaling`` (linear, llama3, yarn) changes the frequencies and, for YaRN,
    the tables' scale; dynamic NTK depends on the sequence length and is ``DynamicNTKRotary``."""

    cos: torch.Tensor  # (P, rd/2) buffers
    sin: torch.Tensor

    def __init__(
        self, max_positions: int, rotary_dim: int, *, theta: float, scaling: RopeScaling | None = None, soap_angles: int | None = None
    ) -> None:
        super().__init__()
        if scaling is not None and scaling.type in ("dynamic", "longrope"):
            raise ValueError(f"{scaling.type} scaling has no single static table; use DynamicNTKRotary / LongRopeRotary")
        self.max_positions, self.rotary_dim, self.theta, self.scaling = max_positions, rotary_dim, theta, scaling
        self.soap_angles = soap_angles  # SOAP (ReaLLM-Forge): one frequency 2π/N for every pair; None: RoPE's θ_i
        self.register_buffer("cos", torch.empty(max_positions, rotary_dim // 2), persistent=False)
        self.register_buffer("sin", torch.empty(max_positions, rotary_dim // 2), persistent=False)
        self.reset_buffers()

    def reset_buffers(self) -> None:
        """(Re)compute the tables in float64, e.g. after the model is materialised from the meta device."""
        if self.soap_angles is not None:
            inv_freq, attention_factor = soap_inv_freq(self.rotary_dim, self.soap_angles), 1.0
        else:
            inv_freq, attention_factor = static_inv_freq(self.rotary_dim, self.theta, self.scaling)
        positions = torch.arange(self.max_positions, dtype=torch.float64, device="cpu")
        cos, sin = rope_tables(positions, inv_freq, attention_factor)
        self.cos, self.sin = cos.to(self.cos.device, self.cos.dtype), sin.to(self.sin.device, self.sin.dtype)

    def tables(self, position_ids: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(cos, sin, positions) for the attention ops: the (max_positions, rd/2) tables and ``position_ids``
        (B, S) indexing them (the interface ``DynamicNTKRotary`` shares)."""
        return self.cos.to(dtype), self.sin.to(dtype), position_ids


class DynamicNTKRotary(nn.Module):
    """RoPE with dynamic NTK scaling: the base grows with a row's length L once L exceeds ``original_max``,
    so the tables are computed in the forward (and so in the exported graph), in float64.

    L is per row: max(position_ids of the row) + 1, Hugging Face's rule (``dynamic_rope_update``) taken
    row by row, so a row's rotation depends on its own tokens only, never on its neighbours' padding (HF
    takes the batch's maximum). The tables hold one row per (b, s), the angles of exactly the positions the
    step rotates, and the positions returned index them: every target's RoPE lowering gathers from a 2-D
    table by position ids, so per-row bases need no new op.

    Cached keys keep the rotation of the step that wrote them, as in Hugging Face's implementation: decoding
    past ``original_max`` with a cache legitimately differs from recomputing the whole sequence."""

    anchor: torch.Tensor  # () int64 buffer

    def __init__(self, rotary_dim: int, *, theta: float, factor: float, original_max: int) -> None:
        super().__init__()
        self.rotary_dim, self.theta, self.factor, self.original_max = rotary_dim, theta, factor, original_max
        # an int64 anchor for the device (float buffers would be cast to the model dtype)
        self.register_buffer("anchor", torch.zeros((), dtype=torch.int64), persistent=False)

    def reset_buffers(self) -> None:
        self.anchor = torch.zeros((), dtype=torch.int64, device=self.anchor.device)

    def tables(self, position_ids: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(cos, sin) (B·S, rd/2) and positions (B, S) = b·S + s indexing them."""
        B, S = position_ids.shape
        pos = position_ids.to(torch.float64)  # (B, S)
        inv_freq = dynamic_ntk_inv_freq(
            pos.amax(-1, keepdim=True) + 1, rotary_dim=self.rotary_dim, theta=self.theta, factor=self.factor, original_max=self.original_max
        )  # (B, rd/2): each row's own base
        angles = (pos[..., None] * inv_freq[:, None, :]).reshape(B * S, self.rotary_dim // 2)  # (B·S, rd/2)
        index = torch.arange(B * S, device=position_ids.device).view(B, S)
        return angles.cos().to(dtype), angles.sin().to(dtype), index


class LongRopeRotary(nn.Module):
    """RoPE with LongRoPE scaling (Phi-3 128k, Phi-4-mini): a table from the short rescale factors and one
    from the long, both over positions < max_positions and scaled by the same attention factor, and per
    forward the long one when max(position_ids) + 1 > original_max, else the short one.

    The switch is transformers' rule exactly (``longrope_frequency_update`` in ``modeling_rope_utils.py``):
    one decision per forward call over the whole batch (``torch.max(position_ids) + 1``), strictly greater
    than ``original_max``, so a row shorter than ``original_max`` rotates with the long factors when a
    neighbour is longer. The choice is a ``Where`` on a 0-d condition in the graph, after gathering the
    positions' rows from both tables (not on the full tables: Phi-3's hold 131072 rows). Cached keys keep
    the rotation of the step that wrote them, as in transformers' forward: a decode step past the switch
    rotates only its new keys with the long factors, so decoding across it legitimately differs from
    recomputing the whole sequence. (transformers' ``generate`` for Phi-3 instead drops the cache once
    when the sequence first crosses the switch and recomputes it; a caller can do the same.)"""

    short_cos: torch.Tensor  # (P, rd/2) buffers, per factor set
    short_sin: torch.Tensor
    long_cos: torch.Tensor
    long_sin: torch.Tensor

    def __init__(self, max_positions: int, rotary_dim: int, *, theta: float, scaling: RopeScaling) -> None:
        super().__init__()
        if scaling.short_factor is None or scaling.long_factor is None:
            raise ValueError("longrope scaling needs short_factor and long_factor")
        self.max_positions, self.rotary_dim, self.theta, self.scaling = max_positions, rotary_dim, theta, scaling
        self.original_max = scaling.original_max_position_embeddings
        for name in ("short_cos", "short_sin", "long_cos", "long_sin"):
            self.register_buffer(name, torch.empty(max_positions, rotary_dim // 2), persistent=False)
        self.reset_buffers()

    def reset_buffers(self) -> None:
        """(Re)compute the tables in float64, e.g. after the model is materialised from the meta device."""
        s = self.scaling
        scale = longrope_attention_factor(s.factor, original_max=self.original_max, attention_factor=s.attention_factor)
        positions = torch.arange(self.max_positions, dtype=torch.float64, device="cpu")
        for kind, rescale in (("short", s.short_factor), ("long", s.long_factor)):
            if rescale is None:  # spec/rules.py requires both for longrope
                raise ValueError(f"longrope: {kind}_factor is missing")
            cos, sin = rope_tables(positions, longrope_inv_freq(self.rotary_dim, self.theta, rescale), scale)
            like = getattr(self, f"{kind}_cos")
            setattr(self, f"{kind}_cos", cos.to(like.device, like.dtype))
            setattr(self, f"{kind}_sin", sin.to(like.device, like.dtype))

    def tables(self, position_ids: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(cos, sin) (B·S, rd/2) and positions (B, S) = b·S + s indexing them (``DynamicNTKRotary``'s form)."""
        B, S = position_ids.shape
        long = position_ids.max() + 1 > self.original_max  # 0-d: one choice for the whole batch, as in HF
        cos = torch.where(long, self.long_cos[position_ids], self.short_cos[position_ids])  # (B, S, rd/2)
        sin = torch.where(long, self.long_sin[position_ids], self.short_sin[position_ids])
        index = torch.arange(B * S, device=position_ids.device).view(B, S)
        return cos.reshape(B * S, -1).to(dtype), sin.reshape(B * S, -1).to(dtype), index


Rotary = RotaryCache | DynamicNTKRotary | LongRopeRotary  # what attention takes: ``.tables(position_ids, dtype)``


class AlibiSlopes(nn.Module):
    """Per-head ALiBi slopes as a non-persistent buffer."""

    slopes: torch.Tensor  # (nh,) buffer

    def __init__(self, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.register_buffer("slopes", torch.empty(num_heads), persistent=False)
        self.reset_buffers()

    def reset_buffers(self) -> None:
        self.slopes = alibi_slopes(self.num_heads).to(self.slopes.device)
