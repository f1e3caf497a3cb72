"""Multi-head latent attention (MLA, DeepSeek-V2, arXiv 2405.04434 §2.1): keys and values are decompressed
from a small per-token latent, which is all the KV cache holds.

Notation: B batch, S new tokens, P cached tokens, d model dim, nh heads, dn the per-head "nope" q/k dim,
dr the decoupled RoPE dim, dv the value head dim, L the KV latent rank, r the query rank.

    q        = W_q·x  or  W_uq·RMSNorm(W_dq·x)               (B, S, nh·(dn + dr))    (query_proj, injected)
    c, k_r   = W_dkv·x, W_kr·x  (one matrix, then split)      (B, S, L), (B, S, dr)   (kv_down)
    c        = RMSNorm(c)                                                             (kv_norm, injected)
    k^(h)    = [c·W_uk^(h), RoPE(k_r)],  v^(h) = c·W_uv^(h)   per head, decompressed inside the op
    out      = W_o · concat_h softmax(q^(h)·k^(h)ᵀ / sqrt(dn + dr) + mask)·v^(h)   (DeepSeek's YaRN: scale × mscale²)

The cache per layer is (latent, rope_key) = (the *normalised* c, RoPE(k_r)): (B, 1, T, L) and (B, 1, T, dr),
what DeepSeek's inference engines keep. Without RoPE (learned / sinusoidal / no positions) dr = 0: there is no
rope key, the cache is the latent alone and the rope-key slot of the layer's cache pair is None. Biases (DeepSeek's ``attention_bias``): on W_q / W_dq and W_dkv
(``qkv_bias``) and on W_o (``out_bias``); the up-projections W_uq, W_uk, W_uv never have one.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from yamlllm_export import ops
from yamlllm_export.model.positions import Rotary


class LowRankQuery(nn.Module):
    """q = W_uq · RMSNorm(W_dq · x) (DeepSeek-V2's query compression; ``mla_rank`` = r)."""

    def __init__(self, dim: int, out_dim: int, *, rank: int, norm: nn.Module, bias: bool) -> None:
        super().__init__()
        self.down = nn.Linear(dim, rank, bias=bias)
        self.norm = norm
        self.up = nn.Linear(rank, out_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.norm(self.down(x)))  # (B, S, r) → (B, S, nh·(dn + dr))


class MultiLatentAttention(nn.Module):
    RESIDUAL_OUTPUT = "o_proj"  # the projection onto the residual stream (gpt2 init scales it)

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int,
        head_dim: int,
        rope_dim: int,
        v_head_dim: int,
        latent_dim: int,
        query_proj: nn.Module,
        kv_norm: nn.Module,
        qkv_bias: bool,
        out_bias: bool,
        dropout: float,
        rotary: Rotary | None,
        scale: float | None = None,
        window_size: int = 0,
        causal: bool = True,
        softcap: float = 0.0,
    ) -> None:
        """``query_proj``: d → nh·(head_dim + rope_dim), an ``nn.Linear`` or a ``LowRankQuery``;
        ``kv_norm``: the norm over the latent (RMSNorm in DeepSeek); ``scale``: the softmax scale (None:
        1/sqrt(head_dim + rope_dim); DeepSeek's YaRN multiplies it by mscale²); ``window_size`` (0: none), ``causal`` and
        ``softcap`` (0: none) as in ``SelfAttention``."""
        super().__init__()
        self.num_heads, self.head_dim, self.rope_dim, self.v_head_dim, self.latent_dim = (
            num_heads,
            head_dim,
            rope_dim,
            v_head_dim,
            latent_dim,
        )
        self.q_proj = query_proj
        self.kv_down = nn.Linear(dim, latent_dim + rope_dim, bias=qkv_bias)  # [W_dkv; W_kr]
        self.kv_norm = kv_norm
        self.k_up = nn.Linear(latent_dim, num_heads * head_dim, bias=False)  # W_uk
        self.v_up = nn.Linear(latent_dim, num_heads * v_head_dim, bias=False)  # W_uv
        self.o_proj = nn.Linear(num_heads * v_head_dim, dim, bias=out_bias)
        self.dropout = nn.Dropout(dropout)
        self.rotary = rotary  # shared across layers; tables of rope_dim
        self.window_size, self.causal, self.softcap = window_size, causal, softcap
        self.scale = 1.0 / math.sqrt(head_dim + rope_dim) if scale is None else scale
        # (heads, dim) of each cache tensor: latent, rope_key; without RoPE (rope_dim 0) the latent alone
        self.cache_dims = ((1, latent_dim), (1, rope_dim)) if rope_dim else ((1, latent_dim),)

    def forward(
        self,
        x: torch.Tensor,
        bias: torch.Tensor,
        position_ids: torch.Tensor,
        past_latent: torch.Tensor,
        past_rope_key: torch.Tensor | None = None,
        *,
        token_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """x (B, S, d), bias (B, 1|nh, S, P+S), past (B, 1, P, L) and (B, 1, P, dr) → out (B, S, d), presents
        (B, 1, P+S, L) and (B, 1, P+S, dr). Without RoPE, past_rope_key and the returned rope key are None.
        ``token_mask`` is unused: padding reaches attention through ``bias``."""
        cos, sin, pos = None, None, None
        if self.rotary is not None:  # RotaryCache, or DynamicNTKRotary / LongRopeRotary (tables made per step)
            cos, sin, pos = self.rotary.tables(position_ids, x.dtype)
        q = self.q_proj(x)  # (B, S, nh·(dn + dr))
        latent, rope_key = self.kv_down(x).split([self.latent_dim, self.rope_dim], dim=-1)  # (B, S, L), (B, S, dr)
        out, present_latent, present_rope_key = ops.mla_attention(
            query=q, latent=self.kv_norm(latent), rope_key=rope_key if self.rope_dim else None, past_latent=past_latent,
            past_rope_key=past_rope_key, attention_bias=bias, cos_cache=cos, sin_cache=sin, position_ids=pos,
            w_uk=self.k_up.weight, w_uv=self.v_up.weight, num_heads=self.num_heads, scale=self.scale,
            window_size=self.window_size, causal=self.causal, softcap=self.softcap,
        )  # fmt: skip
        return self.dropout(self.o_proj(out)), present_latent, present_rope_key if self.rope_dim else None
