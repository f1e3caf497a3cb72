"""The decoder-only language model: ``DecoderLM.forward(input_ids, attention_mask, position_ids,
past_key_values) -> (logits, presents)`` with one cache tuple per layer: (key, value), each (B, nkv, T, hs),
or for multi-latent attention (latent, rope_key), (B, 1, T, L) and (B, 1, T, dr) (rope_key None without RoPE);
a layer whose mixer is not attention (``model/recurrent.py``) holds its fixed-size states, or nothing.

Designed for ``torch.export`` from day one: the cache is explicit (past in, presents out), nothing is
mutated on the Python side, and missing inputs are derived with tensor ops only.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from yamlllm_export import ops
from yamlllm_export.model.positions import AlibiSlopes, LearnedPositions, SinusoidalPositions
from yamlllm_export.ops.masking import mask_value, positions_from_mask

KV = tuple[torch.Tensor, ...]  # one layer's cache: (key, value), MLA's tensors, a recurrent state, or ()


class Residual(nn.Module):
    """Where the norms of one residual sub-layer F sit: x → after(x + dropout(post(F(pre(x))))).

    Every norm placement is this one formula with some norms left out (Identity):
    pre x + F(N(x)); post N(x + F(x)) (Vaswani et al. 2017); sandwich x + N2(F(N1(x))) (peri-LN);
    output x + N(F(x)) (OLMo-2). ``builders.PLACEMENTS`` says which slots each placement fills."""

    def __init__(
        self,
        *,
        pre: nn.Module | None = None,
        post: nn.Module | None = None,
        after: nn.Module | None = None,
        dropout: float,
        scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.pre, self.post, self.after = (m if m is not None else nn.Identity() for m in (pre, post, after))
        self.dropout = nn.Dropout(dropout)
        self.scale = Scale(scale) if scale != 1.0 else nn.Identity()  # Granite's residual_multiplier

    def close(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """The residual add of sub-layer output ``h`` = F(pre(x)) onto ``x``."""
        return self.after(x + self.scale(self.dropout(self.post(h))))


class Block(nn.Module):
    """One sequential decoder layer: attention, then the FFN, each a residual sub-layer (see ``Residual``)."""

    def __init__(self, *, attn: nn.Module, ffn: nn.Module, attn_norms: Residual, ffn_norms: Residual) -> None:
        super().__init__()
        self.attn, self.ffn, self.attn_norms, self.ffn_norms = attn, ffn, attn_norms, ffn_norms

    def forward(
        self, x: torch.Tensor, bias: torch.Tensor, position_ids: torch.Tensor, past: KV, token_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, KV]:
        token_mask = _real_tokens(x, token_mask)
        h, *present = self.attn(self.attn_norms.pre(x), bias, position_ids, *past, token_mask=token_mask)
        x = self.attn_norms.close(x, h)
        return self.ffn_norms.close(x, _ffn(self.ffn, self.ffn_norms.pre(x), token_mask)), tuple(present)


class ParallelBlock(nn.Module):
    """PaLM's parallel layer (Chowdhery et al. 2022): x + Attn(N(x)) + FFN(N(x)), one shared norm; with
    ``ffn_norm`` the FFN has its own, x + Attn(N(x)) + FFN(N2(x)) (GPT-NeoX, Falcon's new architecture)."""

    def __init__(
        self, *, attn: nn.Module, ffn: nn.Module, norm: nn.Module, dropout: float, ffn_norm: nn.Module | None = None, scale: float = 1.0
    ) -> None:
        super().__init__()
        self.attn, self.ffn, self.norm = attn, ffn, norm
        self.ffn_norm = ffn_norm  # None: the FFN reads the shared norm's output
        self.dropout = nn.Dropout(dropout)
        self.scale = Scale(scale) if scale != 1.0 else nn.Identity()  # on both branches, as Residual does

    def forward(
        self, x: torch.Tensor, bias: torch.Tensor, position_ids: torch.Tensor, past: KV, token_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, KV]:
        n = self.norm(x)
        token_mask = _real_tokens(x, token_mask)
        h, *present = self.attn(n, bias, position_ids, *past, token_mask=token_mask)
        m = n if self.ffn_norm is None else self.ffn_norm(x)
        return x + self.scale(self.dropout(h)) + self.scale(self.dropout(_ffn(self.ffn, m, token_mask))), tuple(present)


def _real_tokens(x: torch.Tensor, token_mask: torch.Tensor | None) -> torch.Tensor:
    """(B, S) 1 for a real token, 0 for a pad; None (a block run on its own) means every token is real."""
    return token_mask if token_mask is not None else torch.ones(x.shape[:2], dtype=torch.int64, device=x.device)


def _ffn(ffn: nn.Module, x: torch.Tensor, token_mask: torch.Tensor) -> torch.Tensor:
    """An FFN that reads the whole window (``WINDOW``, the KAN FFN) also gets the token mask, as (B, S, 1) booleans."""
    return ffn(x, token_mask[:, :, None] > 0) if getattr(ffn, "WINDOW", False) else ffn(x)


class Softcap(nn.Module):
    """c · tanh(x / c): squashes logits smoothly into (-c, c) (Gemma 2)."""

    def __init__(self, cap: float) -> None:
        super().__init__()
        self.cap = cap

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cap * torch.tanh(x / self.cap)


class Scale(nn.Module):
    """x · c (Gemma multiplies token embeddings by √d). c is rounded to x's dtype first, as Gemma's reference
    and HF do: in bfloat16 √3072 is 55.5, not 55.43."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.full((), self.factor, dtype=x.dtype, device=x.device)


class DecoderLM(nn.Module):
    """tokens → embed (· scale, → project to d when factorized) → + positions → (norm) → blocks → final norm →
    (project back to the embedding size) → LM head → (· scale) → (softcap) → logits. Absent pieces are Identity."""

    def __init__(
        self,
        *,
        embed: nn.Embedding,
        positions: LearnedPositions | SinusoidalPositions | None,
        alibi: AlibiSlopes | None,
        blocks: list[Block | ParallelBlock],
        final_norm: nn.Module | None,
        lm_head: nn.Linear,
        dropout: float,
        embed_scale: nn.Module | None = None,
        embed_proj: nn.Module | None = None,
        embed_norm: nn.Module | None = None,
        head_proj: nn.Module | None = None,
        logit_scale: nn.Module | None = None,
        logit_softcap: nn.Module | None = None,
        steering: dict[str, tuple[int, nn.Module]] | None = None,
        fire: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.embed, self.positions, self.alibi = embed, positions, alibi
        self.fire = fire  # FIRE shared by every layer (ReaLLM-Forge's shared_fire_embeddings); per-layer FIRE is attn.fire
        self.embed_scale, self.embed_proj, self.embed_norm = _or_identity(embed_scale), _or_identity(embed_proj), _or_identity(embed_norm)
        self.blocks = nn.ModuleList(blocks)
        self.final_norm = _or_identity(final_norm)
        self.head_proj, self.lm_head, self.logit_softcap = _or_identity(head_proj), lm_head, _or_identity(logit_softcap)
        self.logit_scale = _or_identity(logit_scale)
        self.dropout = nn.Dropout(dropout)
        # ReaLLM-Forge's steering: name → (slot, module); slot 0 after the embeddings, k after block k
        self.steering = nn.ModuleDict({name: m for name, (_, m) in (steering or {}).items()})
        self.steering_slots = {name: slot for name, (slot, _) in (steering or {}).items()}

    def _steer(self, slot: int, x: torch.Tensor) -> torch.Tensor:
        """The steering modules of ``slot`` (Forge's steering vectors / LSVs), applied to the residual stream."""
        for name, module in self.steering.items():
            if self.steering_slots[name] == slot:
                x = module(x)
        return x

    def empty_cache(self, batch: int) -> list[KV]:
        """A cache of length 0 for every layer (a prefill's ``past_key_values``): each attention module's
        ``cache_dims`` gives (heads, dim) of its cache tensors: (key, value), MLA's (latent, rope_key), or the
        latent alone for MLA without RoPE; a recurrent mixer's ``state_dims`` the shapes of its zero states."""
        new = self.embed.weight.new_zeros
        out: list[KV] = []
        for block in self.blocks:
            mixer: Any = block.attn
            if hasattr(mixer, "state_dims"):
                out.append(tuple(new(batch, *dims) for dims in mixer.state_dims))
            else:
                out.append(tuple(new(batch, heads, 0, dim) for heads, dim in mixer.cache_dims))
        return out

    def layers(self) -> list[Block | ParallelBlock]:
        """The blocks, typed (iterating ``nn.ModuleList`` yields plain ``nn.Module``s)."""
        blocks = [b for b in self.blocks if isinstance(b, Block | ParallelBlock)]
        if len(blocks) != len(self.blocks):
            raise TypeError("DecoderLM.blocks holds a module that is not a Block or ParallelBlock")
        return blocks

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        past_key_values: list[KV] | None = None,
        *,
        last_logits: bool = False,
    ) -> tuple[torch.Tensor, list[KV]]:
        """input_ids (B, S); attention_mask (B, P+S) with 1 for tokens and 0 for pads (either side);
        position_ids (B, S), default cumsum(mask) - 1 clamped at 0; → logits (B, S, vocab), presents.
        ``last_logits``: logits (B, 1, vocab) of each row's last real new token only (right padding: before
        its pads), what generation needs; on a long prompt the LM head is a large share of the work (a
        128-token prompt of a 32 k vocabulary, d 768: ~25 %)."""
        B, S = input_ids.shape
        past = past_key_values if past_key_values is not None else self.empty_cache(B)
        if attention_mask is None:  # the cached length from any KV cache (a state is not one)
            kv = [layer[0] for layer, block in zip(past, self.blocks, strict=True) if not hasattr(block.attn, "state_dims")]
            attention_mask = torch.ones(B, (kv[0].shape[2] if kv else 0) + S, dtype=torch.int64, device=input_ids.device)
        if position_ids is None:
            position_ids = positions_from_mask(attention_mask)[:, -S:]
        x = self.embed_proj(self.embed_scale(self.embed(input_ids)))  # (B, S, e) → (B, S, d)
        if self.positions is not None:
            x = self.positions(x, position_ids)
        x = self._steer(0, self.dropout(self.embed_norm(x)))
        slopes = self.alibi.slopes if self.alibi is not None else None
        bias = ops.attention_bias(attention_mask, input_ids, slopes)  # (B, 1|nh, S, P+S), float32
        if x.dtype != torch.float32:  # keep masked entries finite in half precision
            bias = bias.clamp(min=mask_value(x.dtype)).to(x.dtype)
        token_mask = attention_mask[:, -S:]  # (B, S): which new tokens are real (state layers and window FFNs skip the pads)
        presents = []
        fire = _FireBiases(attention_mask, S, self.fire)
        for k, (block, layer_past) in enumerate(zip(self.blocks, past, strict=True), start=1):
            x, present = block(x, fire.added_to(bias, block), position_ids, layer_past, token_mask)
            x = self._steer(k, x)
            presents.append(present)
        if last_logits:
            x = x.gather(1, last_real(attention_mask, S)[:, None, None].expand(-1, 1, x.shape[-1]))  # (B, 1, d)
        return self.logit_softcap(self.logit_scale(self.lm_head(self.head_proj(self.final_norm(x))))), presents


class _FireBiases:
    """FIRE's per-layer biases (``model/fire.py``) for one forward, at the key positions of the mask
    (cumsum(mask) − 1, as ALiBi's): a layer's own module, or the ``shared`` one, which is evaluated once."""

    def __init__(self, attention_mask: torch.Tensor, new: int, shared: nn.Module | None) -> None:
        self.attention_mask, self.new, self.shared = attention_mask, new, shared
        self.done: dict[int, torch.Tensor] = {}

    def added_to(self, bias: torch.Tensor, block: nn.Module) -> torch.Tensor:
        """``bias`` (B, 1|nh, S, T) + the block's FIRE bias (B, nh, S, T); ``bias`` itself without FIRE."""
        fire = self.shared if self.shared is not None else getattr(block.attn, "fire", None)
        if fire is None:
            return bias
        if id(fire) not in self.done:
            self.done[id(fire)] = fire(positions_from_mask(self.attention_mask), self.new)
        return bias + self.done[id(fire)].to(bias.dtype)


def last_real(attention_mask: torch.Tensor, new: int) -> torch.Tensor:
    """(B,) index among the ``new`` last slots of each row's last real token (the last slot when none is)."""
    m = attention_mask[:, -new:]  # (B, S)
    slots = torch.arange(1, new + 1, device=m.device)  # 1-based, so a row without a real token gives 0 → S − 1 below
    last = (m * slots).amax(-1) - 1  # (B,): −1 when no real token
    return torch.where(last < 0, new - 1, last)


def _or_identity(module: nn.Module | None) -> nn.Module:
    return module if module is not None else nn.Identity()
