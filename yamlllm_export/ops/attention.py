"""``yamlllm::attention``: causal multi-head attention with grouped KV heads, optional RoPE, optional
additive bias (padding and ALiBi) and a dense KV cache.

Lowers to ``com.microsoft.GroupQueryAttention`` (target ``ort``) or plain MatMul/Softmax (``portable``).
Contract (B batch, S new tokens, P past tokens, T = P + S, nh/nkv query/KV heads, hs head size):

- query (B, S, nh·hs), key and value (B, S, nkv·hs): projections of the new tokens, RoPE not applied yet;
- past_key, past_value (B, nkv, P, hs): keys (already rotated) and values of earlier tokens;
- attention_bias (B, 1 or nh, S, T) or None: added to the scaled scores; masked keys hold ``mask_value``;
- cos_cache, sin_cache (max_positions, rd/2) and position_ids (B, S), all or none: RoPE for q and k;
- returns output (B, S, nh·hs) and present_key, present_value (B, nkv, T, hs) = past ++ new.

Causality is by cache index: new token i sees cache entries 0 .. P + i. Padding is the bias's job, which
makes left and right padding equally correct (see ``lowerings/ort.py`` for why that matters on ORT).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from yamlllm_export.ops.masking import mask_value
from yamlllm_export.ops.registry import custom_op
from yamlllm_export.ops.rotary import apply_rotary


@custom_op("attention")
def attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    past_key: torch.Tensor,
    past_value: torch.Tensor,
    attention_bias: torch.Tensor | None,
    cos_cache: torch.Tensor | None,
    sin_cache: torch.Tensor | None,
    position_ids: torch.Tensor | None,
    num_heads: int,
    num_kv_heads: int,
    scale: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    B, S, _ = query.shape
    hs = past_key.shape[-1]
    q = query.view(B, S, num_heads, hs)
    k = key.view(B, S, num_kv_heads, hs)
    if cos_cache is not None:
        q = apply_rotary(q, position_ids, cos_cache, sin_cache)
        k = apply_rotary(k, position_ids, cos_cache, sin_cache)
    q = q.transpose(1, 2)  # (B, nh, S, hs)
    k = torch.cat([past_key, k.transpose(1, 2)], dim=2)  # (B, nkv, T, hs)
    v = torch.cat([past_value, value.view(B, S, num_kv_heads, hs).transpose(1, 2)], dim=2)
    P, T = past_key.shape[2], past_key.shape[2] + S
    visible = torch.arange(T, device=q.device) <= (P + torch.arange(S, device=q.device))[:, None]  # (S, T)
    mask = torch.where(visible, 0.0, mask_value(q.dtype)).to(q.dtype)
    if attention_bias is not None:
        mask = mask + attention_bias.to(q.dtype)  # (B, 1|nh, S, T)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale, enable_gqa=num_heads != num_kv_heads)
    return out.transpose(1, 2).reshape(B, S, num_heads * hs), k, v


@attention.op.register_fake
def _(query, key, value, past_key, past_value, attention_bias, cos_cache, sin_cache, position_ids, num_heads, num_kv_heads, scale):  # noqa: ANN001, ANN202
    B, S, _ = query.shape
    T = past_key.shape[2] + S
    present_shape = (B, num_kv_heads, T, past_key.shape[3])
    return query.new_empty(B, S, num_heads * past_key.shape[3]), past_key.new_empty(present_shape), past_value.new_empty(present_shape)
