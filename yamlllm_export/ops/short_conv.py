"""``yamlllm::short_conv``: a causal depthwise convolution that carries its last L − 1 inputs as a state
(LFM2's short convolution, the conv of Mamba-2 and gated DeltaNet).

Notation: B batch, S new tokens, C channels, L kernel size; the state holds L − 1 inputs, channels first
(B, C, L − 1), as onnxruntime-genai's LFM2 ``past.{i}.conv`` does.

    y_t[c] = Σ_{j<L} w[c, j] · u_{t−L+1+j}[c] + b[c]          (u_{<0} read from the state)

Pads (token_mask 0) are taken out of the sequence before the conv: the new tokens' real inputs are moved
to the front of the chunk in their order (a permutation: ``dest``), the conv runs over state ++ compacted
inputs, and each output goes back to its token's slot. So a pad neither changes the state nor sits between
two real tokens' inputs, whatever side it is on, and the new state is the last L − 1 *real* inputs.
Lowerings: ``lowerings/recurrent.py`` (Conv, or ``com.microsoft.CausalConvWithState`` on ``ort``).
"""

from __future__ import annotations

import torch

from yamlllm_export.ops.registry import custom_op


def compaction(token_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(dest (B, S), n (B, 1)): dest[t] is token t's slot once the real tokens are moved to the front in
    order and the pads after them (a permutation of 0..S−1); n counts each row's real tokens."""
    m = token_mask.to(torch.int64)
    c = m.cumsum(1)  # (B, S) real tokens up to and including t
    n = c[:, -1:]  # (B, 1)
    t = torch.arange(m.shape[1], device=m.device)
    return torch.where(m.bool(), c - 1, n + t - c), n  # pads: n + (pads before t)


@custom_op("short_conv")
def short_conv(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, past_state: torch.Tensor, token_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """x (B, S, C), weight (C, L), bias (C,) or None, past_state (B, C, L − 1), token_mask (B, S) →
    y (B, S, C), present_state (B, C, L − 1)."""
    B, S, C = x.shape
    L = weight.shape[1]
    dest, n = compaction(token_mask)
    idx = dest[..., None].expand(B, S, C)
    x = x * token_mask[..., None].to(x.dtype)  # a pad's input is 0 (it lands after the real ones)
    compact = torch.zeros_like(x).scatter(1, idx, x)  # (B, S, C): real inputs first
    seq = torch.cat([past_state.transpose(1, 2), compact], dim=1)  # (B, L − 1 + S, C)
    y = seq[:, 0:S] * weight[:, 0]  # (B, S, C): tap j reads u_{t − L + 1 + j}
    for j in range(1, L):
        y = y + seq[:, j : j + S] * weight[:, j]
    if bias is not None:
        y = y + bias
    keep = (n + torch.arange(L - 1, device=x.device))[..., None].expand(B, L - 1, C)  # the L − 1 inputs ending at the last real one
    return y.gather(1, idx), seq.gather(1, keep).transpose(1, 2).contiguous()


@short_conv.op.register_fake
def _(x, weight, bias, past_state, token_mask):  # noqa: ANN001, ANN202
    return torch.empty_like(x), torch.empty_like(past_state)
