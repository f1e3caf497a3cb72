"""Self-attention with grouped KV heads (MHA / GQA / MQA), optional RoPE, an additive bias, and the
variants: sliding window, bidirectional, logit softcap, qk-norm, complex-valued q/k.

Notation: B batch, S new tokens, P cached tokens, nh query heads, nkv KV heads, hs head size.

The module holds the projections and the qk-norm; everything between the projections and the output
projection is one custom op (``kernel``: ``ops.attention``, or ``ops.complex_attention`` for complex q/k),
so the variants (window, causal, softcap) are its attributes and each lowering target sees them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from yamlllm_export import ops
from yamlllm_export.model.fire import FIRE
from yamlllm_export.model.positions import Rotary
from yamlllm_export.model.softmax_variants import SoftmaxVariant


class PerHead(nn.Module):
    """Applies ``norm`` (over hs) to every head of a (B, S, n·hs) projection: qk-norm with scope ``head``
    (one norm shared by the heads, Qwen3 / Gemma 3). Scope ``full`` (OLMo-2) is the norm itself over n·hs."""

    def __init__(self, norm: nn.Module, head_dim: int) -> None:
        super().__init__()
        self.norm, self.head_dim = norm, head_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, S, _ = x.shape
        return self.norm(x.view(B, S, -1, self.head_dim)).view(B, S, -1)  # (B, S, n, hs) → (B, S, n·hs)


class SelfAttention(nn.Module):
    """out = o_proj(Attn(q_norm(q_proj x), k_norm(k_proj x), v_proj x)); qk-norm comes before RoPE (which
    the kernel applies), as in OLMo-2, Qwen3 and Gemma 3; an optional clamp of q, k, v comes first (OLMo);
    optional sinks (GPT-OSS) are a learned logit per query head that the kernel adds to the softmax's denominator.
    ReaLLM-Forge's options: ``rope_interleaved`` RoPE pairs, a ``softmax`` variant in place of the softmax (its
    parameters live here, under ``softmax.``), and ``fire``, this layer's FIRE bias module, which the decoder
    evaluates and adds to the layer's bias (a FIRE shared by every layer belongs to the decoder instead)."""

    RESIDUAL_OUTPUT = "o_proj"  # the projection onto the residual stream (gpt2 init scales it)

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int,
        num_kv_heads: int,
        head_dim: int,
        qkv_bias: bool,
        out_bias: bool,
        dropout: float,
        rotary: Rotary | None,
        q_norm: nn.Module | None = None,
        k_norm: nn.Module | None = None,
        window_size: int = 0,
        causal: bool = True,
        softcap: float = 0.0,
        scale: float | None = None,
        clip: float | None = None,
        sinks: bool = False,
        rope_interleaved: bool = False,
        softmax: SoftmaxVariant | None = None,
        fire: FIRE | None = None,
        kernel: Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = ops.attention,
    ) -> None:
        super().__init__()
        self.num_heads, self.num_kv_heads, self.head_dim = num_heads, num_kv_heads, head_dim
        self.q_proj = nn.Linear(dim, num_heads * head_dim, bias=qkv_bias)
        self.k_proj = nn.Linear(dim, num_kv_heads * head_dim, bias=qkv_bias)
        self.v_proj = nn.Linear(dim, num_kv_heads * head_dim, bias=qkv_bias)
        self.o_proj = nn.Linear(num_heads * head_dim, dim, bias=out_bias)
        self.q_norm = q_norm if q_norm is not None else nn.Identity()
        self.k_norm = k_norm if k_norm is not None else nn.Identity()
        self.dropout = nn.Dropout(dropout)
        self.rotary = rotary  # shared across layers; holds buffers only
        self.window_size, self.causal, self.softcap, self.kernel = window_size, causal, softcap, kernel
        self.scale = scale if scale is not None else 1.0 / math.sqrt(head_dim)  # softmax(q·kᵀ·scale)
        self.clip = clip  # q, k, v clamped to [-clip, clip] (OLMo); None: not clipped
        # attention sinks (GPT-OSS): one logit per query head in the softmax's denominator; None: no sinks
        self.sinks = nn.Parameter(torch.zeros(num_heads)) if sinks else None
        self.rope_interleaved, self.softmax, self.fire = rope_interleaved, softmax, fire
        self.cache_dims = ((num_kv_heads, head_dim), (num_kv_heads, head_dim))  # (heads, dim) of key, value

    def forward(
        self, x: torch.Tensor, bias: torch.Tensor, position_ids: torch.Tensor, past_key: torch.Tensor, past_value: torch.Tensor,
        *, token_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
        """x (B, S, d), bias (B, 1|nh, S, P+S), past (B, nkv, P, hs) → out (B, S, d), present k, v (B, nkv, P+S, hs).
        ``token_mask`` is unused: padding reaches attention through ``bias``."""
        cos, sin, pos = None, None, None
        if self.rotary is not None:  # RotaryCache, or DynamicNTKRotary / LongRopeRotary (tables made per step)
            cos, sin, pos = self.rotary.tables(position_ids, x.dtype)
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)  # (B, S, nh·hs), (B, S, nkv·hs) ×2
        if self.clip is not None:
            q, k, v = (t.clamp(-self.clip, self.clip) for t in (q, k, v))
        q, k = self.q_norm(q), self.k_norm(k)
        variant: dict[str, Any] = {}  # only what is set, so kernels without these options (complex) keep their signature
        if self.rope_interleaved:
            variant["rope_interleaved"] = True
        if self.softmax is not None:
            variant.update(softmax=self.softmax.kind, softmax_params=self.softmax.packed(), softmax_consts=list(self.softmax.consts))
        out, present_k, present_v = self.kernel(
            query=q, key=k, value=v, past_key=past_key, past_value=past_value, attention_bias=bias,
            cos_cache=cos, sin_cache=sin, position_ids=pos, num_heads=self.num_heads, num_kv_heads=self.num_kv_heads,
            scale=self.scale, window_size=self.window_size, causal=self.causal, softcap=self.softcap, sinks=self.sinks,
            **variant,
        )  # fmt: skip
        return self.dropout(self.o_proj(out)), present_k, present_v
