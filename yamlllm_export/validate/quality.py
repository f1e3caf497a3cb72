"""How good a model's predictions are, from logit arrays alone (numpy; no torch, no session): perplexity of a
text, and how far one model's next-token distributions are from another's (mean KL, top-1 agreement).

Logits are (..., S, V): the prediction at position s is for token s + 1. Every sum runs in float64 with a
log-sum-exp, so float32 logits of tens give no overflow and no lost digits.
"""

from __future__ import annotations

import math

import numpy as np


def log_softmax(logits: np.ndarray) -> np.ndarray:
    x = np.asarray(logits, dtype=np.float64)
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def perplexity(logits: np.ndarray, tokens: np.ndarray) -> float:
    """exp(mean negative log-likelihood) of ``tokens[..., 1:]`` under ``logits[..., :-1, :]`` (teacher forcing:
    the logits of one forward over ``tokens``)."""
    logits, tokens = np.asarray(logits), np.asarray(tokens)
    if logits.shape[:-1] != tokens.shape or tokens.shape[-1] < 2:
        raise ValueError(f"logits {logits.shape} do not fit tokens {tokens.shape} (need (..., S, V) and (..., S), S ≥ 2)")
    logp = log_softmax(logits[..., :-1, :])
    nll = -np.take_along_axis(logp, tokens[..., 1:, None], axis=-1)
    return math.exp(float(nll.mean()))


def mean_kl(p_logits: np.ndarray, q_logits: np.ndarray) -> float:
    """Mean over positions of KL(P ‖ Q) in nats, P = softmax(p_logits) (the reference), Q = softmax(q_logits)."""
    if np.shape(p_logits) != np.shape(q_logits):
        raise ValueError(f"logits {np.shape(p_logits)} and {np.shape(q_logits)} differ in shape")
    logp, logq = log_softmax(p_logits), log_softmax(q_logits)
    return float((np.exp(logp) * (logp - logq)).sum(axis=-1).mean())


def top1_agreement(a_logits: np.ndarray, b_logits: np.ndarray) -> float:
    """Share of positions where the two arrays' most likely tokens are the same."""
    if np.shape(a_logits) != np.shape(b_logits):
        raise ValueError(f"logits {np.shape(a_logits)} and {np.shape(b_logits)} differ in shape")
    return float((np.argmax(a_logits, axis=-1) == np.argmax(b_logits, axis=-1)).mean())
