"""The finite "minus infinity" used for masked scores.

A true -inf gives NaN for a query row whose keys are all masked (a pad row under left padding), and
that NaN reaches valid rows through the next layer. A quarter of the dtype's lowest value stays finite
when a causal mask and a padding bias are both added (and still underflows to 0 in softmax).
"""

from __future__ import annotations

import torch


def mask_value(dtype: torch.dtype) -> float:
    return torch.finfo(dtype).min / 4
