"""``yamlllm::linear_attention``: ReaLLM-Forge's linear attention (``attention_variant: linear``), an
element-wise (diagonal) running sum, not the outer product of Katharopoulos et al. 2020.

Notation: B batch, S new tokens, H heads, D head size; s the learned scalar scale.

    φ(u) = ELU(s·u) + 1
    S_t = S_{t−1} + φ(k_t) ⊙ v_t,   z_t = z_{t−1} + φ(k_t)                      (B, H, D) each
    y_t[h, d] = φ(q_t)[h, d] · S_t[h, d] / max(Σ_d' φ(q_t)[h, d'] · z_t[h, d'], 1e-3)

A prefill is a cumulative sum over the new tokens. A pad (token_mask 0) adds nothing to S or z: its φ(k)
is multiplied by 0, and sums do not depend on order, so a pad on either side changes no state.
Lowerings: ``lowerings/recurrent.py`` (CumSum; ``com.microsoft.LinearAttention`` on ``ort``).
"""

from __future__ import annotations

import torch

from yamlllm_export.ops.registry import custom_op

CLAMP = 1e-3  # Forge's floor on the normaliser


def feature(u: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """φ(u) = ELU(s·u) + 1 (α = 1), positive everywhere."""
    return torch.nn.functional.elu(scale * u) + 1


@custom_op("linear_attention")
def linear_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scale: torch.Tensor,
    past_kv_sum: torch.Tensor, past_k_sum: torch.Tensor, token_mask: torch.Tensor, num_heads: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """query, key, value (B, S, H·D), scale () , past sums (B, H, D), token_mask (B, S) →
    y (B, S, H·D), present kv_sum, k_sum (B, H, D)."""
    B, S, _ = query.shape
    q, k, v = (t.view(B, S, num_heads, -1) for t in (query, key, value))  # (B, S, H, D)
    fq = feature(q, scale)
    fk = feature(k, scale) * token_mask[:, :, None, None].to(k.dtype)  # a pad adds nothing
    kv_sum = past_kv_sum[:, None] + (fk * v).cumsum(1)  # (B, S, H, D): S_t
    k_sum = past_k_sum[:, None] + fk.cumsum(1)  # z_t
    den = (fq * k_sum).sum(-1, keepdim=True).clamp(min=CLAMP)  # (B, S, H, 1)
    y = (fq * kv_sum / den).reshape(B, S, -1)
    return y, kv_sum[:, -1].contiguous(), k_sum[:, -1].contiguous()


@linear_attention.op.register_fake
def _(query, key, value, scale, past_kv_sum, past_k_sum, token_mask, num_heads):  # noqa: ANN001, ANN202
    return torch.empty_like(query), torch.empty_like(past_kv_sum), torch.empty_like(past_k_sum)
