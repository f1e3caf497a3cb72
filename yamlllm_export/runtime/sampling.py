"""Choosing the next token from a step's logits: repetition penalty, then greedy or temperature / top-k /
top-p sampling. numpy only; a seeded ``numpy.random.Generator`` makes sampling reproducible."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from yamlllm_export.errors import GenerationError


@dataclass(frozen=True)
class SamplingOptions:
    """``do_sample`` false: greedy (argmax). The filters apply in HF's order: penalty, temperature, top-k, top-p."""

    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 0  # 0: no top-k filter
    top_p: float = 1.0  # 1: no nucleus filter
    repetition_penalty: float = 1.0  # 1: none; > 1 discourages tokens already in the prompt or the output
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise GenerationError(f"--temperature: {self.temperature} must be > 0 (greedy decoding takes no temperature)")
        if self.top_k < 0:
            raise GenerationError(f"--top-k: {self.top_k} must be ≥ 0")
        if not 0 < self.top_p <= 1:
            raise GenerationError(f"--top-p: {self.top_p} must be in (0, 1]")
        if self.repetition_penalty <= 0:
            raise GenerationError(f"--repetition-penalty: {self.repetition_penalty} must be > 0")


def penalize_repeats(logits: np.ndarray, seen: np.ndarray, penalty: float) -> np.ndarray:
    """CTRL's penalty as HF applies it: a seen token's logit is divided by ``penalty`` when positive, multiplied
    when negative, so it always becomes less likely. ``seen``: bool (B, V)."""
    if penalty == 1.0:
        return logits
    return np.where(seen, np.where(logits > 0, logits / penalty, logits * penalty), logits)


def filter_top_k(logits: np.ndarray, k: int) -> np.ndarray:
    """Keep each row's k largest logits (ties with the k-th kept too), -inf elsewhere."""
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = np.partition(logits, -k, axis=-1)[:, -k, None]
    return np.where(logits >= kth, logits, -np.inf)


def filter_top_p(logits: np.ndarray, p: float) -> np.ndarray:
    """Keep the smallest set of most likely tokens whose probability reaches ``p`` (always the top one)."""
    if p >= 1.0:
        return logits
    order = np.argsort(-logits, axis=-1, kind="stable")
    probs = softmax(np.take_along_axis(logits, order, axis=-1))
    before = np.cumsum(probs, axis=-1) - probs  # mass of the tokens ranked above each one
    drop_sorted = before >= p
    drop = np.zeros_like(drop_sorted)
    np.put_along_axis(drop, order, drop_sorted, axis=-1)
    return np.where(drop, -np.inf, logits)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=-1, keepdims=True))
    probs: np.ndarray = z / z.sum(axis=-1, keepdims=True)
    return probs


def next_tokens(logits: np.ndarray, seen: np.ndarray, options: SamplingOptions, rng: np.random.Generator) -> np.ndarray:
    """(B, V) float logits of the last position → (B,) int64 token ids."""
    logits = penalize_repeats(logits.astype(np.float64), seen, options.repetition_penalty)
    if not options.do_sample:
        greedy: np.ndarray = logits.argmax(axis=-1).astype(np.int64)
        return greedy
    logits = filter_top_p(filter_top_k(logits / options.temperature, options.top_k), options.top_p)
    cdf = np.cumsum(softmax(logits), axis=-1)
    u = rng.random((logits.shape[0], 1)) * cdf[:, -1:]  # one draw per row, in row order: seeded runs repeat
    drawn: np.ndarray = np.minimum((cdf <= u).sum(axis=-1), logits.shape[-1] - 1).astype(np.int64)
    return drawn
