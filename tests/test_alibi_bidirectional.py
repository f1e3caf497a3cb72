"""ALiBi without a causal mask: the bias is −slope·|i − j| (bidirectional ALiBi encoders), checked against
that formula written here, on the eager op and on each target's lowering of ``yamlllm::attention_bias``
(the graph's ``attention_bias`` tensor), then end to end against PyTorch on every target."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests import ort_run
from tests.feature_cases import case
from yamlllm_export import ops
from yamlllm_export.lowerings import TARGET_NAMES
from yamlllm_export.validate.runner import ValidateOptions, validate_folder

HEADS = 6
# Press et al.: 6 = 4 + 2 heads: the 4-head slopes 2^-2k, then every other of the 8-head slopes
SLOPES = np.array([2.0**-e for e in (2, 4, 6, 8, 1, 3)])
SPEC = case(
    "name", "tiny-alibi-bidirectional", "embedding.positional_encoding", {"type": "alibi"},
    "layer.attention.mechanism", "alibi", "layer.attention.causal", False,
    "layer.attention.num_heads", HEADS, "layer.attention.head_dim", 16,
)  # fmt: skip
# left padding, right padding, a hole, none
MASK = np.array([[0, 0, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0, 0], [1, 1, 0, 1, 1, 0, 1], [1] * 7])


def expected_bias(mask: np.ndarray, new: int) -> np.ndarray:
    """(B, nh, new, T): −slope_h · |p_i − p_j| with p counted over the real tokens; NaN where query i or
    key j is a pad (a pad query's row is never read; a pad key holds the mask value, checked apart)."""
    B, T = mask.shape
    out = np.full((B, HEADS, new, T), np.nan)
    for b in range(B):
        p = np.cumsum(mask[b]) - 1
        for i in range(T - new, T):
            for j in range(T):
                if mask[b, i] and mask[b, j]:
                    out[b, :, i - (T - new), j] = -SLOPES * abs(p[i] - p[j])
    return out


def check(bias: np.ndarray, mask: np.ndarray, new: int) -> None:
    want = expected_bias(mask, new)
    real = ~np.isnan(want)
    assert bias.shape == want.shape
    np.testing.assert_allclose(bias[real], want[real], rtol=1e-6, atol=1e-6)
    pad_keys = np.broadcast_to(MASK[:, None, None, :] == 0, bias.shape)
    assert (bias[pad_keys] < -1e30).all()  # the finite mask value


NEW = {"prefill": MASK.shape[1], "decode": 1}  # new tokens; a decode step has the other slots cached


@pytest.mark.parametrize("step", NEW)
def test_eager_bias_is_symmetric_distance(step: str) -> None:
    mask, new = torch.from_numpy(MASK), NEW[step]
    bias = ops.attention_bias(mask, torch.zeros(len(MASK), new, dtype=torch.int64), torch.from_numpy(SLOPES).float())
    check(bias.double().numpy(), MASK, new)


@pytest.mark.parametrize("step", NEW)
@pytest.mark.parametrize("target", TARGET_NAMES)
def test_lowered_bias_is_symmetric_distance(target: str, step: str, export_case) -> None:  # noqa: ANN001
    folder, new = export_case("alibi-bidirectional", SPEC, target), NEW[step]
    io = ort_run.contract(folder)
    past = [np.zeros(io.cache_shape(n, len(MASK), MASK.shape[1] - new), np.float32) for n in io.past_names()]
    feeds = ort_run.feeds(folder, np.ones((len(MASK), new), np.int64), MASK, past=past)
    bias = ort_run.session(folder, ("attention_bias",)).run(["attention_bias"], feeds)[0]
    check(bias.astype(np.float64), MASK, new)


@pytest.mark.parametrize("target", TARGET_NAMES)
def test_bidirectional_alibi_parity(target: str, export_case, tmp_path) -> None:  # noqa: ANN001
    folder = export_case("alibi-bidirectional", SPEC, target)
    report = validate_folder(folder, ValidateOptions(eps=("cpu",), report_dir=tmp_path, steps=3, batch=3, prompt_len=8))
    # a bidirectional model's cached token never saw the tokens after it: "incremental" is n/a by design
    bad = [(r.check, r.measured, r.detail) for r in report.results if r.status != "pass" and r.check != "incremental"]
    assert not bad, bad
