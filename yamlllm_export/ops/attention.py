"""``yamlllm::attention``: multi-head attention with grouped KV heads, optional RoPE, optional additive bias
(padding and ALiBi), a dense KV cache, and the variants causal / bidirectional, sliding window and logit
softcap.

Lowers to ``com.microsoft.GroupQueryAttention`` (target ``ort``), ONNX ``Attention`` (opset 23, target
``onnx``) or plain MatMul/Softmax (``portable``). Contract (B batch, S new tokens, P past tokens, T = P + S,
nh/nkv query/KV heads, hs head size):

- query (B, S, nh·hs), key and value (B, S, nkv·hs): projections of the new tokens, RoPE not applied yet;
- past_key, past_value (B, nkv, P, hs): keys (already rotated) and values of earlier tokens;
- attention_bias (B, 1 or nh, S, T) or None: added to the scaled (and capped) scores; masked keys hold
  ``mask_value``;
- cos_cache, sin_cache (max_positions, rd/2) and position_ids (B, S), all or none: RoPE for q and k on the
  first rd ≤ hs features of each head (partial rotary when rd < hs);
- returns output (B, S, nh·hs) and present_key, present_value (B, nkv, T, hs) = past ++ new.

Visibility is by cache index (``ops/masking.py:visibility_mask``): new token i sits at index P + i and sees
index j when ``j ≤ P + i`` (``causal``; without it every j < T) and ``j > P + i − window_size``
(``window_size`` > 0: the last window_size entries, itself included, as in Mistral). Padding is the bias's
job, which makes left and right padding equally correct (see ``lowerings/ort.py`` for why that matters on ORT).

``softcap`` > 0 caps the scaled scores, ``softcap · tanh(scores / softcap)``, before the mask and bias
are added (Gemma 2), the order of GroupQueryAttention's and ONNX Attention's ``softcap``.

``sinks`` (nh,) or None: attention sinks (GPT-OSS), one learned logit per query head that joins the
softmax's denominator and attends to nothing, p_j = exp(s_j) / (exp(sink_h) + Σ_k exp(s_k)): the scores
get a sink column, the softmax runs over T + 1 entries and the column is dropped. The sink is not capped,
masked or biased; a row whose keys are all masked gives ~0 (the sink takes it all), never NaN.

``rope_interleaved``: RoPE pairs features (2i, 2i+1) (ReaLLM-Forge, GPT-J) instead of (i, i + rd/2).

``softmax`` (ReaLLM-Forge's variants, ``ops/softmax_variants.py``): another function of the masked score
row replaces the softmax, with its learned parameters packed in ``softmax_params`` and its constants in
``softmax_consts``; masked keys get exactly 0 weight. "softmax" (the default) is the softmax.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from yamlllm_export.ops.masking import mask_value, visibility_mask
from yamlllm_export.ops.registry import custom_op
from yamlllm_export.ops.rotary import apply_rotary, rotary_inputs
from yamlllm_export.ops.softmax_variants import variant_weights


def attend_scores(
    scores: torch.Tensor, bias: torch.Tensor | None, *, causal: bool, window_size: int, softcap: float, sinks: torch.Tensor | None = None,
    softmax: str = "softmax", softmax_params: torch.Tensor | None = None, softmax_consts: list[float] | None = None,
) -> torch.Tensor:  # fmt: skip
    """softmax(cap(scores) + mask + bias) over keys, with each head's sink logit in the denominator when
    ``sinks`` (nh,) is given, or another ``softmax`` variant; scores (B, nh, S, T) already scaled."""
    S, T = scores.shape[-2:]
    if softcap > 0:
        scores = softcap * torch.tanh(scores / softcap)
    additive = visibility_mask(S, T - S, causal=causal, window_size=window_size, dtype=scores.dtype, device=scores.device)
    if bias is not None:
        additive = additive + bias.to(scores.dtype)  # (B, 1|nh, S, T)
    scores = scores + additive
    if softmax != "softmax":  # a masked key holds mask_value (or twice it); every visible one is far above half of it
        return variant_weights(scores, additive < mask_value(scores.dtype) / 2, softmax, softmax_params, softmax_consts)
    if sinks is None:
        return scores.softmax(-1)
    sink = sinks.to(scores.dtype).view(1, -1, 1, 1).expand(*scores.shape[:-1], 1)  # (B, nh, S, 1)
    return torch.cat([scores, sink], dim=-1).softmax(-1)[..., :T]  # the sink's share is dropped


def attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    bias: torch.Tensor | None,
    *,
    scale: float,
    causal: bool,
    window_size: int,
    softcap: float,
    sinks: torch.Tensor | None = None,
    softmax: str = "softmax",
    softmax_params: torch.Tensor | None = None,
    softmax_consts: list[float] | None = None,
) -> torch.Tensor:
    """softmax(cap(q·kᵀ·scale) + mask + bias [‖ sinks])·v (or a ``softmax`` variant's weights · v);
    q (B, nh, S, hs), k (B, nkv, T, hs), v (B, nkv, T, dv) → (B, nh, S, dv). MLA's eager reference uses it
    too (nkv = nh there, dv ≠ hs)."""
    S, T = q.shape[2], k.shape[2]
    G = q.shape[1] // k.shape[1]
    if softcap <= 0 and sinks is None and softmax == "softmax":  # the fused kernel, when nothing sits between the product and the mask
        mask = visibility_mask(S, T - S, causal=causal, window_size=window_size, dtype=q.dtype, device=q.device)
        if bias is not None:
            mask = mask + bias.to(q.dtype)  # (B, 1|nh, S, T)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale, enable_gqa=G != 1)
    k, v = k.repeat_interleave(G, dim=1), v.repeat_interleave(G, dim=1)  # (B, nh, T, hs)
    probs = attend_scores(
        q @ k.transpose(-1, -2) * scale, bias, causal=causal, window_size=window_size, softcap=softcap, sinks=sinks,
        softmax=softmax, softmax_params=softmax_params, softmax_consts=softmax_consts,
    )  # fmt: skip
    return probs @ v


@custom_op("attention")
def attention_op(
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
    window_size: int = 0,
    causal: bool = True,
    softcap: float = 0.0,
    sinks: torch.Tensor | None = None,
    rope_interleaved: bool = False,
    softmax: str = "softmax",
    softmax_params: torch.Tensor | None = None,
    softmax_consts: list[float] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    B, S, _ = query.shape
    hs = past_key.shape[-1]
    q = query.view(B, S, num_heads, hs)
    k = key.view(B, S, num_kv_heads, hs)
    if (rotary := rotary_inputs(cos_cache, sin_cache, position_ids)) is not None:
        q = apply_rotary(q, *rotary, interleaved=rope_interleaved)
        k = apply_rotary(k, *rotary, interleaved=rope_interleaved)
    q = q.transpose(1, 2)  # (B, nh, S, hs)
    k = torch.cat([past_key, k.transpose(1, 2)], dim=2)  # (B, nkv, T, hs)
    dv = past_value.shape[-1]  # = hs, except for infinite heads (free value head size)
    v = torch.cat([past_value, value.view(B, S, num_kv_heads, dv).transpose(1, 2)], dim=2)
    out = attend(
        q, k, v, attention_bias, scale=scale, causal=causal, window_size=window_size, softcap=softcap, sinks=sinks,
        softmax=softmax, softmax_params=softmax_params, softmax_consts=softmax_consts,
    )  # fmt: skip
    return out.transpose(1, 2).reshape(B, S, num_heads * dv), k, v


def attention_fake(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, past_key: torch.Tensor, past_value: torch.Tensor,
    attention_bias: torch.Tensor | None, cos_cache: torch.Tensor | None, sin_cache: torch.Tensor | None,
    position_ids: torch.Tensor | None, num_heads: int, num_kv_heads: int, scale: float,
    window_size: int = 0, causal: bool = True, softcap: float = 0.0, sinks: torch.Tensor | None = None,
    rope_interleaved: bool = False, softmax: str = "softmax", softmax_params: torch.Tensor | None = None,
    softmax_consts: list[float] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """Output shapes of ``attention`` (and ``complex_attention``, whose signature is its first 16 arguments)."""
    B, S, _ = query.shape
    T = past_key.shape[2] + S
    k_shape, v_shape = (B, num_kv_heads, T, past_key.shape[3]), (B, num_kv_heads, T, past_value.shape[3])
    return query.new_empty(B, S, num_heads * past_value.shape[3]), past_key.new_empty(k_shape), past_value.new_empty(v_shape)


attention_op.op.register_fake(attention_fake)


def attention(
    *,
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
    window_size: int = 0,
    causal: bool = True,
    softcap: float = 0.0,
    sinks: torch.Tensor | None = None,
    rope_interleaved: bool = False,
    softmax: str = "softmax",
    softmax_params: torch.Tensor | None = None,
    softmax_consts: list[float] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``yamlllm::attention`` by keyword: the op's schema is positional (torch custom ops cannot take tensors by
    keyword only), so call sites go through here and name every argument; two of one type (``window_size``
    and ``causal``, ``cos_cache`` and ``sin_cache``) cannot be swapped unnoticed."""
    return attention_op(
        query,
        key,
        value,
        past_key,
        past_value,
        attention_bias,
        cos_cache,
        sin_cache,
        position_ids,
        num_heads,
        num_kv_heads,
        scale,
        window_size,
        causal,
        softcap,
        sinks,
        rope_interleaved,
        softmax,
        softmax_params,
        softmax_consts,
    )
