"""``build --logits last``: the logits of each row's last real token, right padding included, on every target."""

from __future__ import annotations

import numpy as np
import pytest

from tests import ort_run
from tests.feature_cases import case
from yamlllm_export import build_model, export_onnx
from yamlllm_export.lowerings import TARGET_NAMES

SPEC = case("name", "tiny-logits-last")
IDS = np.array([[5, 6, 7, 8, 9], [15, 16, 17, 0, 0], [0, 0, 25, 26, 27], [35, 0, 36, 0, 0]])
MASK = (IDS != 0).astype(np.int64)  # right padding, left padding, a hole then right padding
LAST = [4, 2, 4, 2]


@pytest.fixture(scope="module")
def last_builds(tmp_path_factory):  # noqa: ANN001, ANN201
    root = tmp_path_factory.mktemp("logits-last")
    return {t: export_onnx(SPEC, root / t, target=t, seed=0, logits="last") for t in TARGET_NAMES}


@pytest.mark.parametrize("target", TARGET_NAMES)
def test_last_real_token_of_every_row(target: str, last_builds) -> None:  # noqa: ANN001
    folder, model, new = last_builds[target], build_model(SPEC, seed=0), np.array([[1], [2], [3], [4]])
    full = ort_run.reference_logits(model, IDS, MASK)  # (B, S, vocab), every position
    got, step = ort_run.prefill_then_decode(folder, IDS, MASK, None, new, MASK.sum(-1, keepdims=True))
    assert got.shape == (len(IDS), 1, full.shape[-1])
    np.testing.assert_allclose(got[:, 0], full[np.arange(len(IDS)), LAST], atol=1e-4, rtol=0)
    assert np.abs(full[1, 2] - full[1, 4]).max() > 1e-2  # the pad slot's logits differ: a graph taking slot −1 fails
    ids, mask = np.concatenate([IDS, new], axis=1), np.concatenate([MASK, np.ones_like(new)], axis=1)
    np.testing.assert_allclose(step[:, 0], ort_run.reference_logits(model, ids, mask)[:, -1], atol=1e-4, rtol=0)  # the new token
