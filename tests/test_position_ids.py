"""The ``position_ids`` input and masks with holes, the same on every target (docs/io-contract.md).

- Custom ``position_ids`` (gaps, an offset) are honoured: the export's logits equal PyTorch's given the
  same positions, on the prompt and on a cached decode step.
- A mask with holes (``[1, 0, 1, ...]``, with the contract's positions ``cumsum(mask) − 1``): a hole is a
  pad, so each real token's logits equal those of the row with the holes removed, run alone.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests import ort_run
from tests.feature_cases import CASES_BY_ID
from yamlllm_export import build_model
from yamlllm_export.lowerings import TARGET_NAMES

TOL = 1e-4  # fp32 parity of the tiny models (init std 0.08)
WITH_POSITION_IDS = ("rope", "learned", "mla")  # RoPE, learned table, MLA's shared rope key
ALL = (*WITH_POSITION_IDS, "alibi-6-heads-gqa")  # ALiBi takes its positions from the mask
IDS = np.array([[11, 12, 13, 14, 15, 16], [21, 22, 23, 24, 25, 26]])
CUSTOM = np.array([[0, 2, 3, 7, 8, 9], [5, 6, 7, 8, 9, 10]])  # gaps; an offset
NEXT = np.array([[30], [31]])


def _grid(cases: tuple[str, ...]) -> list:
    return [pytest.param(c, t, id=f"{c}-{t}", marks=pytest.mark.xdist_group(name=c)) for c in cases for t in TARGET_NAMES]


@pytest.mark.parametrize(("cid", "target"), _grid(WITH_POSITION_IDS))
def test_custom_position_ids_are_honoured(cid: str, target: str, export_case) -> None:  # noqa: ANN001
    folder = export_case(cid, CASES_BY_ID[cid], target)
    model = build_model(CASES_BY_ID[cid], seed=0)
    mask = np.ones_like(IDS)
    next_pos = CUSTOM[:, -1:] + 3
    got, got_step = ort_run.prefill_then_decode(folder, IDS, mask, CUSTOM, NEXT, next_pos)
    want = ort_run.reference_logits(model, IDS, mask, CUSTOM)
    full = np.concatenate([IDS, NEXT], axis=1)
    want_step = ort_run.reference_logits(model, full, np.ones_like(full), np.concatenate([CUSTOM, next_pos], axis=1))[:, -1:]
    np.testing.assert_allclose(got, want, atol=TOL, rtol=0)
    np.testing.assert_allclose(got_step, want_step, atol=TOL, rtol=0)
    default = ort_run.reference_logits(model, IDS, mask)
    assert np.abs(default - want).max() > 100 * TOL  # the positions matter: a graph ignoring them would fail


HOLES = np.array([[1, 0, 1, 1, 0, 1], [0, 1, 1, 0, 1, 1]])  # holes inside the row; left pad + a hole


@pytest.mark.parametrize(("cid", "target"), _grid(ALL))
def test_mask_with_holes_is_the_row_without_them(cid: str, target: str, export_case) -> None:  # noqa: ANN001
    folder = export_case(cid, CASES_BY_ID[cid], target)
    next_pos = HOLES.sum(-1, keepdims=True).astype(np.int64)  # the contract's cumsum(mask) − 1 for the new slot
    got, got_step = ort_run.prefill_then_decode(folder, IDS, HOLES, None, NEXT, next_pos)
    model = build_model(CASES_BY_ID[cid], seed=0)
    for b in range(len(IDS)):
        real = IDS[b][HOLES[b] == 1][None]  # (1, n): the row without its holes
        alone, alone_step = ort_run.prefill_then_decode(
            folder, real, np.ones_like(real), None, NEXT[b : b + 1], np.array([[real.shape[1]]])
        )
        np.testing.assert_allclose(got[b][HOLES[b] == 1], alone[0], atol=TOL, rtol=0)
        np.testing.assert_allclose(got_step[b], alone_step[0], atol=TOL, rtol=0)
        np.testing.assert_allclose(alone[0], ort_run.reference_logits(model, real, np.ones_like(real))[0], atol=TOL, rtol=0)
