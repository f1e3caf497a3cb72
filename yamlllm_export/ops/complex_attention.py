"""``yamlllm::complex_attention``: attention with complex-valued queries and keys (mechanism ``complex``).

Layout: a head's hs real features hold hs/2 complex numbers, the first half the real parts and the second
half the imaginary parts, q = q[:hs/2] + i·q[hs/2:]. RoPE is the phase rotation q ↦ q·e^{i·p·θ_j} (the
cos/sin caches give e^{i·p·θ} = cos + i·sin, one θ_j per complex feature, so rd must equal hs), the score
is Re(q·conj(k))·scale, and values stay real. The cache holds rotated keys in the same real layout.

Same contract and variants as ``yamlllm::attention`` (see ``ops/attention.py``). The eager reference
computes in complex arithmetic. Every lowering reuses the real attention lowering through two identities:
Re(q·conj(k)) = Σ q_re·k_re + q_im·k_im is the real dot product of the two layouts, and
(q_re + i·q_im)·(cos + i·sin) = (q_re·cos − q_im·sin) + i·(q_im·cos + q_re·sin) is half-rotation RoPE.
"""

from __future__ import annotations

import torch

from yamlllm_export.ops.attention import attend_scores, attention_fake
from yamlllm_export.ops.registry import custom_op
from yamlllm_export.ops.rotary import rotary_inputs


def as_complex(x: torch.Tensor) -> torch.Tensor:
    """(..., hs) real layout → (..., hs/2) complex64."""
    re, im = x.float().chunk(2, dim=-1)
    return torch.complex(re.contiguous(), im.contiguous())


def as_real(z: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(..., hs/2) complex → (..., hs) real layout."""
    return torch.cat([z.real, z.imag], dim=-1).to(dtype)


@custom_op("complex_attention")
def complex_attention_op(
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
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    B, S, _ = query.shape
    hs = past_key.shape[-1]
    q = as_complex(query.view(B, S, num_heads, hs))  # (B, S, nh, hs/2) complex
    k = as_complex(key.view(B, S, num_kv_heads, hs))
    if (rotary := rotary_inputs(cos_cache, sin_cache, position_ids)) is not None:
        positions, cos, sin = rotary
        torch._check(2 * cos.shape[-1] == hs, lambda: "complex attention rotates every complex feature (rotary_dim = head_dim)")
        phase = torch.complex(cos.float(), sin.float())[positions].unsqueeze(2)  # (B, S, 1, hs/2): e^{i·p·θ}
        q, k = q * phase, k * phase
    present_k = torch.cat([past_key, as_real(k, past_key.dtype).transpose(1, 2)], dim=2)  # (B, nkv, T, hs)
    present_v = torch.cat([past_value, value.view(B, S, num_kv_heads, hs).transpose(1, 2)], dim=2)
    G = num_heads // num_kv_heads
    kc = as_complex(present_k).repeat_interleave(G, dim=1)  # (B, nh, T, hs/2)
    scores = (q.transpose(1, 2) @ kc.conj().transpose(-1, -2)).real * scale  # Re(q·conj(k)), (B, nh, S, T)
    probs = attend_scores(scores, attention_bias, causal=causal, window_size=window_size, softcap=softcap, sinks=sinks)
    out = probs.to(query.dtype) @ present_v.repeat_interleave(G, dim=1)  # (B, nh, S, hs)
    return out.transpose(1, 2).reshape(B, S, num_heads * hs), present_k, present_v


complex_attention_op.op.register_fake(attention_fake)


def complex_attention(
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
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``yamlllm::complex_attention`` by keyword: the op's schema is positional (torch custom ops cannot take tensors by
    keyword only), so call sites go through here and name every argument; two of one type (``window_size``
    and ``causal``, ``cos_cache`` and ``sin_cache``) cannot be swapped unnoticed."""
    return complex_attention_op(
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
    )
