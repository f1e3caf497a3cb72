"""Who sees whom, written once in torch: the finite masked value, the visibility mask by cache index
(causal, sliding window, bidirectional), padding, and positions from the attention mask.

Every eager reference uses these (``ops/attention.py``, ``ops/complex_attention.py``,
``ops/mla_attention.py``, ``ops/attention_bias.py``, ``model/decoder.py``); ``lowerings/masking.py`` is
the same rules in onnxscript, line for line, for every target's lowering.

Why a finite "minus infinity": a true -inf gives NaN for a query row whose keys are all masked (a pad row
under left padding), and that NaN reaches valid rows through the next layer. A quarter of the dtype's
lowest value stays finite when a visibility mask and a padding bias are both added (and still underflows
to 0 in softmax).
"""

from __future__ import annotations

import torch


def mask_value(dtype: torch.dtype) -> float:
    return torch.finfo(dtype).min / 4


def visibility_mask(S: int, P: int, *, causal: bool, window_size: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(S, T = P + S) additive mask: 0 where new token i (cache index P + i) may see cache index j, which
    is when j ≤ P + i (``causal``; without it every j < T) and j > P + i − window_size (``window_size`` > 0:
    the last window_size entries, itself included, as in Mistral); ``mask_value`` elsewhere."""
    T = P + S
    j = torch.arange(T, device=device)[None, :]  # (1, T) key index
    i = (P + torch.arange(S, device=device))[:, None]  # (S, 1) query index
    visible = torch.ones(S, T, dtype=torch.bool, device=device)
    if causal:
        visible = visible & (j <= i)
    if window_size > 0:
        visible = visible & (j > i - window_size)
    return torch.where(visible, 0.0, mask_value(dtype)).to(dtype)


def padding_bias(attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, T) mask with 1 for tokens, 0 for pads (either side, holes too) → (B, 1, 1, T) float32 additive
    bias: ``mask_value`` on pad keys, 0 elsewhere."""
    return torch.where(attention_mask[:, None, None, :] == 0, mask_value(torch.float32), 0.0)


def positions_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, T) mask → (B, T) int64 positions cumsum(mask) − 1 clamped at 0: tokens count 0, 1, 2, … and pads
    do not shift them (a left pad sits at 0, a pad after token p or in a hole repeats p)."""
    return (attention_mask.cumsum(-1) - 1).clamp(min=0)
