"""``validate`` fails the export errors that matter however small the weights: on tiny-llama (init std 0.02,
logits spread σ ≈ 0.1, where a fixed 1e-4 let a 2 % softmax-scale error pass) a 2 % softmax-scale error, a
swapped rotary half and a decode position off by one each fail, on every target, by a wide margin over the
float32 limit, while the unmutated build passes by as wide a one (docs/validation.md has the margins on
SmolLM2)."""

from __future__ import annotations

import math

import pytest

from tests.conftest import TARGETS
from tests.validate_fixtures import (
    copy_folder,
    decode_position_off_by_one,
    edit_graph,
    failed,
    row,
    run,
    scale_softmax,
    swap_rotary_halves,
)

LOGITS = ("prefill", "right padding", "decode", "incremental", "long context")
MARGIN = 5.0  # a mutation measures at least this many limits; the good build at most 1 / this
HEAD_DIM = 16  # tiny-llama: 64 / 4 heads

# name: (edit of model.onnx, checks that must fail); the others may fail too (an out-of-range position, ...)
MUTATIONS = {
    "softmax-scale-2pc": (lambda m: scale_softmax(m, 1.02, HEAD_DIM), {"prefill", "right padding", "decode", "long context"}),
    "rotary-half-swapped": (swap_rotary_halves, {"prefill", "right padding", "decode", "long context"}),
    "decode-position-off-by-one": (decode_position_off_by_one, {"decode", "incremental"}),
}
GRID = [
    pytest.param(name, target, id=f"{name}-{target}", marks=pytest.mark.xdist_group(name="tiny-llama"))
    for name in MUTATIONS
    for target in TARGETS
]


@pytest.mark.parametrize(("case", "target"), GRID)
def test_validate_fails_every_mutation(built, tmp_path, case, target):
    mutate, must_fail = MUTATIONS[case]
    edits = []
    folder = edit_graph(copy_folder(built("tiny-llama", target), tmp_path / "mutated"), lambda m: edits.append(mutate(m)))
    assert edits[0] > 0, f"{case}: nothing in the {target} graph to mutate"
    report = run(folder, tmp_path / "parity")
    assert must_fail <= failed(report), f"{case}: failed {sorted(failed(report))}, expected at least {sorted(must_fail)}"
    for check in must_fail:
        r = row(report, check)
        assert r.value is None or r.value >= MARGIN * r.limit, f"{case}: {check} only {r.value / r.limit:.1f}× its limit"
    assert report.exit_code == 1


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.xdist_group(name="tiny-llama")
def test_the_unmutated_build_passes_with_the_same_margin(built, tmp_path, target):
    report = run(built("tiny-llama", target), tmp_path / "parity")
    for check in LOGITS:
        r = row(report, check)
        assert r.status == "pass" and math.isfinite(r.value) and r.value * MARGIN <= r.limit, r
