"""The decoder-only language model: ``DecoderLM.forward(input_ids, attention_mask, position_ids,
past_key_values) -> (logits, presents)`` with one cache pair per layer: (key, value), each (B, nkv, T, hs),
or for multi-latent attention (latent, rope_key), (B, 1, T, L) and (B, 1, T, dr) (rope_key None without RoPE).

Designed for ``torch.export`` from day one: the cache is explicit (past in, presents out), nothing is
mutated on the Python side, and missing inputs are derived with tensor ops only.
"""

from __future__ import annotations

import torch
from torch import nn

from yamlllm_export import ops
from yamlllm_export.model.attention import SelfAttention
from yamlllm_export.model.positions import AlibiSlopes, LearnedPositions
from yamlllm_export.ops.masking import mask_value

KV = tuple[torch.Tensor, torch.Tensor]


class Block(nn.Module):
    """One decoder layer. pre-norm: x + F(N(x)); post-norm: N(x + F(x)) (Vaswani et al. 2017)."""

    def __init__(self, *, attn: SelfAttention, ffn: nn.Module, norm1: nn.Module, norm2: nn.Module, placement: str, dropout: float) -> None:
        super().__init__()
        self.attn, self.ffn, self.norm1, self.norm2 = attn, ffn, norm1, norm2
        self.pre_norm = placement == "pre"
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, bias: torch.Tensor, position_ids: torch.Tensor, past: KV) -> tuple[torch.Tensor, KV]:
        if self.pre_norm:
            h, k, v = self.attn(self.norm1(x), bias, position_ids, *past)
            x = x + self.dropout(h)
            return x + self.dropout(self.ffn(self.norm2(x))), (k, v)
        h, k, v = self.attn(x, bias, position_ids, *past)
        x = self.norm1(x + self.dropout(h))
        return self.norm2(x + self.dropout(self.ffn(x))), (k, v)


class DecoderLM(nn.Module):
    def __init__(
        self,
        *,
        embed: nn.Embedding,
        positions: LearnedPositions | None,
        alibi: AlibiSlopes | None,
        blocks: list[Block],
        final_norm: nn.Module | None,
        lm_head: nn.Linear,
        dropout: float,
    ) -> None:
        super().__init__()
        self.embed, self.positions, self.alibi = embed, positions, alibi
        self.blocks = nn.ModuleList(blocks)
        self.final_norm = final_norm if final_norm is not None else nn.Identity()
        self.lm_head = lm_head
        self.dropout = nn.Dropout(dropout)

    def empty_cache(self, batch: int) -> list[KV]:
        """A cache of length 0 for every layer (a prefill's ``past_key_values``): each attention module's
        ``cache_dims`` gives (heads, dim) of its cache tensors: (key, value), MLA's (latent, rope_key), or the
        latent alone for MLA without RoPE."""
        new = self.embed.weight.new_zeros
        return [tuple(new(batch, heads, 0, dim) for heads, dim in block.attn.cache_dims) for block in self.blocks]

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        past_key_values: list[KV] | None = None,
    ) -> tuple[torch.Tensor, list[KV]]:
        """input_ids (B, S); attention_mask (B, P+S) with 1 for tokens and 0 for pads (either side);
        position_ids (B, S), default cumsum(mask) - 1 clamped at 0; → logits (B, S, vocab), presents."""
        B, S = input_ids.shape
        past = past_key_values if past_key_values is not None else self.empty_cache(B)
        if attention_mask is None:
            attention_mask = torch.ones(B, past[0][0].shape[2] + S, dtype=torch.int64, device=input_ids.device)
        if position_ids is None:
            position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)[:, -S:]
        x = self.embed(input_ids)  # (B, S, d)
        if self.positions is not None:
            x = self.positions(x, position_ids)
        x = self.dropout(x)
        slopes = self.alibi.slopes if self.alibi is not None else None
        bias = ops.attention_bias(attention_mask, input_ids, slopes)  # (B, 1|nh, S, P+S), float32
        if x.dtype != torch.float32:  # keep masked entries finite in half precision
            bias = bias.clamp(min=mask_value(x.dtype)).to(x.dtype)
        presents = []
        for block, layer_past in zip(self.blocks, past, strict=True):
            x, present = block(x, bias, position_ids, layer_past)
            presents.append(present)
        return self.lm_head(self.final_norm(x)), presents
