"""Language-model quality measures on numpy logits (B, S, V) or (S, V): what quantization costs."""

from __future__ import annotations

import numpy as np


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64)
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def perplexity(logits: np.ndarray, tokens: np.ndarray) -> float:
    """exp(mean negative log-likelihood) of ``tokens[..., 1:]`` under ``logits[..., :-1, :]`` (next-token)."""
    logp = _log_softmax(logits[..., :-1, :])
    nll = -np.take_along_axis(logp, tokens[..., 1:, None].astype(np.int64), axis=-1)
    return float(np.exp(nll.mean()))


def mean_kl(p_logits: np.ndarray, q_logits: np.ndarray) -> float:
    """Mean over positions of KL(P ‖ Q) in nats, P the reference's next-token distribution."""
    lp, lq = _log_softmax(p_logits), _log_softmax(q_logits)
    return float((np.exp(lp) * (lp - lq)).sum(-1).mean())


def top1_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Share of positions where both logits pick the same top token."""
    return float((a.argmax(-1) == b.argmax(-1)).mean())
