"""The prediction-quality metrics of ``validate/quality.py`` against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from yamlllm_export.validate.quality import mean_kl, perplexity, top1_agreement


@pytest.mark.parametrize("vocab", [2, 7, 49152])
def test_uniform_logits_have_the_vocabulary_as_perplexity(vocab):
    tokens = np.arange(5) % vocab
    assert perplexity(np.full((5, vocab), 3.0, np.float32), tokens) == pytest.approx(vocab, rel=1e-9)


def test_perplexity_is_exp_of_the_mean_nll_of_the_next_tokens():
    # position 0 predicts token 1 with p = 0.8 (logits ln 4, 0), position 1 predicts token 0 with p = 0.5
    logits = np.array([[[0.0, math.log(4.0)], [0.0, 0.0], [9.0, -9.0]]])
    tokens = np.array([[0, 1, 0]])
    assert perplexity(logits, tokens) == pytest.approx(math.exp(-(math.log(0.8) + math.log(0.5)) / 2), rel=1e-6)
    big = logits + 1000.0  # a constant shift changes no probability, and float64 log-sum-exp does not overflow
    assert perplexity(big, tokens) == pytest.approx(perplexity(logits, tokens), rel=1e-9)
    with pytest.raises(ValueError, match="do not fit"):
        perplexity(logits, tokens[:, :2])


def test_mean_kl_of_two_point_distributions():
    p = np.log(np.array([[0.5, 0.5], [0.9, 0.1]]))
    q = np.log(np.array([[0.9, 0.1], [0.9, 0.1]]))
    expected = (0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)) / 2  # second row: KL 0
    assert mean_kl(p, q) == pytest.approx(expected, rel=1e-9)
    assert mean_kl(p, p) == pytest.approx(0.0, abs=1e-12) and mean_kl(q, p) > 0


def test_top1_agreement_counts_positions():
    a = np.array([[0.0, 1.0, 0.0], [2.0, 0.0, 0.0], [0.0, 0.0, 5.0], [1.0, 3.0, 2.0]])
    b = np.array([[0.0, 2.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [3.0, 1.0, 2.0]])
    assert top1_agreement(a, b) == 0.5
    with pytest.raises(ValueError, match="differ in shape"):
        top1_agreement(a, b[:2])
