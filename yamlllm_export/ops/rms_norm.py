"""``yamlllm::rms_norm``: root-mean-square normalisation (Zhang & Sennrich 2019), y = x / rms(x) · w.

Lowers to ``SimplifiedLayerNormalization`` (target ``ort``, ORT's kernel, which the ORT fusion pass
then chains with residual adds into ``com.microsoft.SkipSimplifiedLayerNormalization``) or plain ops.
The statistics are computed in float32 whatever the input dtype.
"""

from __future__ import annotations

import torch

from yamlllm_export.ops.registry import custom_op


@custom_op("rms_norm")
def rms_norm(x: torch.Tensor, weight: torch.Tensor | None, eps: float) -> torch.Tensor:
    xf = x.float()
    y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    if weight is not None:
        y = y * weight.float()
    return y.to(x.dtype)


@rms_norm.op.register_fake
def _(x, weight, eps):  # noqa: ANN001, ANN202
    return torch.empty_like(x)
