"""Dynamic NTK in a padded batch: each row's base comes from that row's own length, so a row's logits are
those of the row run alone, whatever its neighbours' length and padding, on every target."""

from __future__ import annotations

import numpy as np
import pytest

from tests import ort_run
from tests.feature_cases import CASES_BY_ID
from yamlllm_export import build_model
from yamlllm_export.lowerings import TARGET_NAMES

SPEC = CASES_BY_ID["rope-dynamic"]  # factor 2 from original context 32
LENGTHS = (40, 20)  # one row past the original context, one below it
rng = np.random.default_rng(0)
TOKENS = [rng.integers(1, 256, n) for n in LENGTHS]
NEXT = np.array([[7], [9]])


def batch(side: str) -> tuple[np.ndarray, np.ndarray]:
    T = max(LENGTHS)
    ids, mask = np.zeros((len(LENGTHS), T), np.int64), np.zeros((len(LENGTHS), T), np.int64)
    for b, tokens in enumerate(TOKENS):
        cols = slice(T - len(tokens), T) if side == "left" else slice(0, len(tokens))
        ids[b, cols], mask[b, cols] = tokens, 1
    return ids, mask


@pytest.mark.xdist_group(name="rope-dynamic")
@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("target", TARGET_NAMES)
def test_each_row_as_if_alone(target: str, side: str, export_case) -> None:  # noqa: ANN001
    folder = export_case("rope-dynamic", SPEC, target)
    model = build_model(SPEC, seed=0)
    ids, mask = batch(side)
    next_pos = mask.sum(-1, keepdims=True)
    got, got_step = ort_run.prefill_then_decode(folder, ids, mask, None, NEXT, next_pos)
    for b, tokens in enumerate(TOKENS):
        alone = tokens[None]
        want, want_step = ort_run.prefill_then_decode(folder, alone, np.ones_like(alone), None, NEXT[b : b + 1], next_pos[b : b + 1])
        np.testing.assert_allclose(got[b][mask[b] == 1], want[0], atol=1e-4, rtol=0)
        np.testing.assert_allclose(got_step[b], want_step[0], atol=1e-4, rtol=0)
        np.testing.assert_allclose(want[0], ort_run.reference_logits(model, alone, np.ones_like(alone))[0], atol=1e-4, rtol=0)
