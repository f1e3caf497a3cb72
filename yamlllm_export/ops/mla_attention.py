"""``yamlllm::mla_attention``: multi-head latent attention (MLA, DeepSeek-V2, arXiv 2405.04434 §2.1) over a
cache of compressed latents.

Notation: B batch, S new tokens, P cached tokens, T = P + S, nh heads, dn the per-head "nope" q/k dim,
dr the decoupled RoPE dim (one key shared by all heads), dv the value head dim, L the KV latent rank.

- query (B, S, nh·(dn + dr)): per head [q_nope (dn), q_rope (dr)], RoPE not applied yet;
- latent (B, S, L): the (normalised) compressed KV c_kv of the new tokens;
- rope_key (B, S, dr): the shared RoPE key of the new tokens, not rotated yet;
- past_latent (B, 1, P, L), past_rope_key (B, 1, P, dr): the cache (rope keys already rotated);
  rope_key and past_rope_key are both None for MLA without RoPE (dr = 0; present_rope_key is then (B, 1, T, 0)
  and the caller drops it: the cache is the latent alone);
- attention_bias (B, 1|nh, S, T) or None: added to the scaled scores (padding; masked keys hold ``mask_value``);
- cos_cache, sin_cache (max_positions, dr/2) and position_ids (B, S), all or none: RoPE for q_rope and rope_key;
- w_uk (nh·dn, L), w_uv (nh·dv, L): the up-projections of the latent to keys and values (``nn.Linear`` weights);
- returns output (B, S, nh·dv) and present_latent (B, 1, T, L), present_rope_key (B, 1, T, dr) = past ++ new.

The eager reference below is the paper's formula: decompress every cached latent to per-head keys
k = [c·W_ukᵀ, RoPE(k_rope)] and values v = c·W_uvᵀ, then softmax(q·kᵀ·scale + mask)·v. The lowerings use the
equivalent "absorbed" form (paper §2.1.2): q_nope·W_uk is moved to the query side, so attention runs over
the latent itself as multi-query attention with one KV head of size L + dr, and W_uv is applied after the
softmax. Per-head keys and values are never materialised, which is the point of the small cache:

    scores = scale · ([q_nope·W_uk^(h), RoPE(q_rope)] · [c, RoPE(k_rope)]ᵀ)      (B, nh, S, T)
    out^(h) = softmax(scores + mask) · c · W_uv^(h)ᵀ

``ort`` lowers it to com.microsoft.RotaryEmbedding + GroupQueryAttention (kv_num_heads = 1);
``onnx`` to opset-23 RotaryEmbedding + Attention; ``portable`` to plain opset-18 ops (``lowerings/mla.py``).
Visibility, the bias and ``softcap`` are ``yamlllm::attention``'s, through the same ``attend``: new token i
(index P + i) sees index j when j ≤ P + i (``causal``; without it every j < T) and j > P + i − window_size
(``window_size`` > 0); ``softcap`` > 0 caps the scaled scores, softcap·tanh(scores/softcap), before the mask
and bias are added.
"""

from __future__ import annotations

import torch

from yamlllm_export.ops.attention import attend
from yamlllm_export.ops.registry import custom_op
from yamlllm_export.ops.rotary import apply_rotary, rotary_inputs


@custom_op("mla_attention")
def mla_attention_op(
    query: torch.Tensor,
    latent: torch.Tensor,
    rope_key: torch.Tensor | None,
    past_latent: torch.Tensor,
    past_rope_key: torch.Tensor | None,
    attention_bias: torch.Tensor | None,
    cos_cache: torch.Tensor | None,
    sin_cache: torch.Tensor | None,
    position_ids: torch.Tensor | None,
    w_uk: torch.Tensor,
    w_uv: torch.Tensor,
    num_heads: int,
    scale: float,
    window_size: int = 0,
    causal: bool = True,
    softcap: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    B, S, _ = query.shape
    P, T = past_latent.shape[2], past_latent.shape[2] + S
    if rope_key is None:  # no decoupled RoPE part: dr = 0
        rope_key, past_rope_key = query.new_zeros(B, S, 0), past_latent.new_zeros(B, 1, P, 0)
    elif past_rope_key is None:
        raise ValueError("mla_attention: a rope_key needs its past_rope_key")
    dr = rope_key.shape[-1]
    dn, dv = w_uk.shape[0] // num_heads, w_uv.shape[0] // num_heads
    q_nope, q_rope = query.view(B, S, num_heads, dn + dr).split([dn, dr], dim=-1)  # (B, S, nh, dn), (B, S, nh, dr)
    k_rope = rope_key.view(B, S, 1, dr)  # (B, S, 1, dr)
    if (rotary := rotary_inputs(cos_cache, sin_cache, position_ids)) is not None:
        q_rope, k_rope = apply_rotary(q_rope, *rotary), apply_rotary(k_rope, *rotary)
    present_latent = torch.cat([past_latent, latent.unsqueeze(1)], dim=2)  # (B, 1, T, L)
    present_rope = torch.cat([past_rope_key, k_rope.transpose(1, 2)], dim=2)  # (B, 1, T, dr)
    c = present_latent[:, 0]  # (B, T, L)
    k_nope = (c @ w_uk.t()).view(B, T, num_heads, dn).transpose(1, 2)  # (B, nh, T, dn)
    v = (c @ w_uv.t()).view(B, T, num_heads, dv).transpose(1, 2)  # (B, nh, T, dv)
    k = torch.cat([k_nope, present_rope.expand(B, num_heads, T, dr)], dim=-1)  # (B, nh, T, dn + dr)
    q = torch.cat([q_nope, q_rope], dim=-1).transpose(1, 2)  # (B, nh, S, dn + dr)
    out = attend(q, k, v, attention_bias, scale=scale, causal=causal, window_size=window_size, softcap=softcap)  # (B, nh, S, dv)
    return out.transpose(1, 2).reshape(B, S, num_heads * dv), present_latent, present_rope


@mla_attention_op.op.register_fake
def _(
    query: torch.Tensor, latent: torch.Tensor, rope_key: torch.Tensor | None, past_latent: torch.Tensor, past_rope_key: torch.Tensor | None,
    attention_bias: torch.Tensor | None, cos_cache: torch.Tensor | None, sin_cache: torch.Tensor | None,
    position_ids: torch.Tensor | None, w_uk: torch.Tensor, w_uv: torch.Tensor, num_heads: int, scale: float,
    window_size: int = 0, causal: bool = True, softcap: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    B, S, _ = query.shape
    T = past_latent.shape[2] + S
    return (
        query.new_empty(B, S, w_uv.shape[0]),
        past_latent.new_empty(B, 1, T, latent.shape[-1]),
        past_latent.new_empty(B, 1, T, 0 if rope_key is None else rope_key.shape[-1]),
    )


def mla_attention(
    *,
    query: torch.Tensor,
    latent: torch.Tensor,
    rope_key: torch.Tensor | None,
    past_latent: torch.Tensor,
    past_rope_key: torch.Tensor | None,
    attention_bias: torch.Tensor | None,
    cos_cache: torch.Tensor | None,
    sin_cache: torch.Tensor | None,
    position_ids: torch.Tensor | None,
    w_uk: torch.Tensor,
    w_uv: torch.Tensor,
    num_heads: int,
    scale: float,
    window_size: int = 0,
    causal: bool = True,
    softcap: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``yamlllm::mla_attention`` by keyword: the op's schema is positional (torch custom ops cannot take tensors by
    keyword only), so call sites go through here and name every argument; two of one type (``window_size``
    and ``causal``, ``cos_cache`` and ``sin_cache``) cannot be swapped unnoticed."""
    return mla_attention_op(
        query,
        latent,
        rope_key,
        past_latent,
        past_rope_key,
        attention_bias,
        cos_cache,
        sin_cache,
        position_ids,
        w_uk,
        w_uv,
        num_heads,
        scale,
        window_size,
        causal,
        softcap,
    )
