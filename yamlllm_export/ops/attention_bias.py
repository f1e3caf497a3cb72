"""``yamlllm::attention_bias``: the additive attention bias made from the attention mask: padding, and
ALiBi (Press et al. 2022) when slopes are given.

Lowers to plain ops on every target (ORT has no ALiBi kernel; GroupQueryAttention takes the result as
``attention_bias``). Padding and positions are ``ops/masking.py``'s: key positions are ``cumsum(mask) - 1``
clamped at 0, so pads do not shift positions, and a query's position is that of its own slot (the last S
columns):

    bias[b, h, i, j] = −slope_h · |pos[b, j] − pos[b, T − S + i]|    (ALiBi; 0 without slopes)
                     + mask_value    where mask[b, j] == 0

The distance is symmetric, so one formula serves both masks: under a causal mask every visible key lies
at or before its query (the paper's slope·(pos_j − pos_i)), and without one (``causal: false``) keys after
the query are penalised by their distance too, as in bidirectional ALiBi encoders, never rewarded.

Shapes: attention_mask (B, T) int64, input_ids (B, S) (only its shape is used), alibi_slopes (nh,) or None.
Returns float32 (B, nh or 1, S, T).
"""

from __future__ import annotations

import torch

from yamlllm_export.ops.masking import padding_bias, positions_from_mask
from yamlllm_export.ops.registry import custom_op


@custom_op("attention_bias")
def attention_bias(attention_mask: torch.Tensor, input_ids: torch.Tensor, alibi_slopes: torch.Tensor | None) -> torch.Tensor:
    S, T = input_ids.shape[1], attention_mask.shape[1]
    pad = padding_bias(attention_mask).expand(-1, 1, S, -1)  # (B, 1, S, T)
    if alibi_slopes is None:
        return pad.contiguous()
    pos = positions_from_mask(attention_mask).float()  # (B, T)
    distance = (pos[:, None, :] - pos[:, T - S :, None]).abs()  # (B, S, T)
    return -alibi_slopes.float()[None, :, None, None] * distance[:, None] + pad  # (B, nh, S, T)


@attention_bias.op.register_fake
def _(attention_mask, input_ids, alibi_slopes):  # noqa: ANN001, ANN202
    heads = 1 if alibi_slopes is None else alibi_slopes.shape[0]
    return attention_mask.new_empty(attention_mask.shape[0], heads, input_ids.shape[1], attention_mask.shape[1], dtype=torch.float32)


def alibi_slopes(num_heads: int) -> torch.Tensor:
    """Per-head slopes 2^(-8k/n) for the closest power of two n ≤ num_heads, interleaved with the
    half-step slopes of 2n for the remaining heads (the paper's recipe for other head counts)."""
    import math

    def powers(n: int) -> list[float]:
        start = 2 ** (-8 / n)
        return [start ** (k + 1) for k in range(n)]

    n = 2 ** math.floor(math.log2(num_heads))
    slopes = powers(n)
    if n < num_heads:
        slopes += powers(2 * n)[0::2][: num_heads - n]
    return torch.tensor(slopes, dtype=torch.float32)
