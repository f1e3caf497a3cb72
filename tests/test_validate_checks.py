"""``validate`` on good and deliberately broken exports: every tiny model × target passes every check on the
CPU, and each broken graph fails the check that names its bug while the checks it cannot affect pass."""

from __future__ import annotations

import json
import math
import re
import shutil

import pytest

from tests.conftest import TARGETS, TINY_MODELS
from tests.validate_fixtures import (
    boost_token,
    copy_folder,
    drop_padding_mask,
    edit_graph,
    failed,
    fix_past_length,
    misspell_op,
    point_external_data,
    positions_counted_from_the_right,
    round_logits_to_fp16,
    row,
    run,
    set_default_opset,
    set_rope_tables,
    shift_cache,
    to_external_data,
    truncate_lm_head,
)
from yamlllm_export.errors import FolderError
from yamlllm_export.spec import load_spec
from yamlllm_export.validate.parity import EPS32, FP32_HEADROOM

STRUCTURE = {"checker", "shape inference", "io contract", "opset", "external data"}
PARITY = ("prefill", "right padding", "decode", "incremental", "long context", "tokens")
GRID = [pytest.param(m, t, id=f"{m}-{t}", marks=pytest.mark.xdist_group(name=m)) for m in TINY_MODELS for t in TARGETS]


@pytest.mark.parametrize(("model", "target"), GRID)
def test_every_tiny_build_passes(built, tmp_path, model, target):
    report = run(built(model, target), tmp_path / "parity")
    bad = [(r.check, r.ep, r.status, r.measured, r.detail) for r in report.results if r.status != "pass"]
    assert report.exit_code == 0 and not bad, bad
    assert {(c, "cpu") for c in (*PARITY, "session")} | {(c, "-") for c in STRUCTURE} == {(r.check, r.ep) for r in report.results}
    spec = load_spec(built(model, target) / "model.yaml")
    for r in report.results:  # every logits row carries a finite measured value under its limit, ε·√L·(C·√d + T)
        if r.check in PARITY[:5]:
            assert math.isfinite(r.value) and r.value <= r.limit, r
            layers, width, keys = map(int, re.search(r"ε·√(\d+)·\(16·√(\d+) \+ (\d+)\)", r.tolerance).groups())
            assert (layers, width) == (spec.num_layers, spec.layer.hidden_dim), r
            assert r.limit == pytest.approx(EPS32 * math.sqrt(layers) * (FP32_HEADROOM * math.sqrt(width) + keys)), r
    saved = json.loads((tmp_path / "parity" / "parity.json").read_text())
    assert saved["passed"] is True and saved["exit_code"] == 0 and len(saved["checks"]) == len(report.results)
    assert "| prefill | cpu |" in (tmp_path / "parity" / "parity.md").read_text()


# name: (edit of model.onnx, checks that must fail, checks that must pass)
BROKEN = {
    "cache-read-at-wrong-offset": (shift_cache, {"decode", "incremental"}, {"prefill", *STRUCTURE}),
    "attention-mask-dropped": (drop_padding_mask, {"prefill", "decode"}, {"incremental", "long context", *STRUCTURE}),
    "wrong-rope-theta": (lambda m: set_rope_tables(m, theta=500.0), {"prefill", "decode", "long context"}, STRUCTURE),
    "rope-table-wrong-past-64": (
        lambda m: set_rope_tables(m, theta=0.0, from_position=64),
        {"long context"},
        {"prefill", "decode", "incremental", "tokens", *STRUCTURE},
    ),
    # incremental compares two fp16-rounded outputs: one-ulp flips (2⁻¹¹ of a logit) may exceed the fp32 limit
    "logits-rounded-to-fp16": (round_logits_to_fp16, {"prefill", "right padding", "decode"}, STRUCTURE),
    "leaked-token-bias": (lambda m: boost_token(m, 7, 100.0, 256), {"tokens"}, STRUCTURE),
    "unknown-op": (misspell_op, {"checker", "session"}, {"io contract", "opset", "external data"}),
    "lm-head-shape-mismatch": (truncate_lm_head, {"shape inference"}, {"checker", "io contract", "opset"}),
    "past-length-not-dynamic": (fix_past_length, {"io contract"}, {"checker", "opset", "external data"}),
}
BROKEN_GRID = [
    pytest.param(name, target, id=f"{name}-{target}", marks=pytest.mark.xdist_group(name="tiny-llama"))
    for name in BROKEN
    for target in TARGETS
]


@pytest.mark.parametrize(("case", "target"), BROKEN_GRID)
def test_broken_export_fails_the_right_check(built, tmp_path, case, target):
    edit, must_fail, must_pass = BROKEN[case]
    folder = edit_graph(copy_folder(built("tiny-llama", target), tmp_path / "broken"), edit)
    report = run(folder, tmp_path / "parity")
    got = failed(report)
    assert must_fail <= got, f"{case}: failed {sorted(got)}, expected at least {sorted(must_fail)}"
    assert not (must_pass & got), f"{case}: {sorted(must_pass & got)} should have passed"
    assert report.exit_code == 1
    for check in must_fail:  # a failure says what it measured and where
        r = row(report, check)
        assert r.detail or r.measured, r


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.xdist_group(name="tiny-gpt2")
def test_right_padding_check_catches_an_export_that_assumes_left_padding(built, tmp_path, target):
    """Positions counted from the right end are right for left padding and decode steps: every other check
    passes, and only the right-padded prefill shows the learned positions read at the wrong rows."""
    folder = edit_graph(copy_folder(built("tiny-gpt2", target), tmp_path / "broken"), positions_counted_from_the_right)
    report = run(folder, tmp_path / "parity")
    assert failed(report) == {"right padding"}, failed(report)
    assert "right-padded" in row(report, "right padding").detail


@pytest.mark.xdist_group(name="tiny-llama")
def test_fp16_rounding_fails_fp32_tolerance_with_measured_value(built, tmp_path):
    folder = edit_graph(copy_folder(built("tiny-llama", "ort"), tmp_path / "broken"), round_logits_to_fp16)
    prefill = row(run(folder, tmp_path / "parity"), "prefill")
    assert prefill.status == "fail" and prefill.limit < prefill.value < 1e-2, prefill  # fp16 keeps ~2⁻¹¹ of σ
    assert prefill.measured.startswith("max|Δ|/σ ") and "(max|Δ| " in prefill.measured
    assert prefill.tolerance.startswith("max|Δ|/σ ≤ ") and prefill.tolerance.endswith("(ε·√2·(16·√64 + 8))")


@pytest.mark.xdist_group(name="tiny-llama")
def test_opset_mismatch_is_named(built, tmp_path):
    """ai.onnx 17 instead of 18: every op of this graph still exists there, so only the opset check objects."""
    folder = edit_graph(copy_folder(built("tiny-llama", "ort"), tmp_path / "broken"), lambda m: set_default_opset(m, 17))
    report = run(folder, tmp_path / "parity")
    assert failed(report) == {"opset"}
    assert "ai.onnx 17" in row(report, "opset").detail


@pytest.mark.xdist_group(name="tiny-postnorm-mqa")
def test_external_data_inside_the_folder_passes(built, tmp_path):
    folder = copy_folder(built("tiny-postnorm-mqa", "ort"), tmp_path / "ext")
    to_external_data(folder)
    report = run(folder, tmp_path / "parity")
    assert report.exit_code == 0, [(r.check, r.detail) for r in report.results if r.status != "pass"]
    assert row(report, "external data").measured.endswith("in 1 file(s)")


@pytest.mark.parametrize("where", ["outside", "missing"])
@pytest.mark.xdist_group(name="tiny-postnorm-mqa")
def test_external_data_outside_or_missing_is_refused(built, tmp_path, where):
    """Refused before any check or session (exit 2): data the graph reads from outside its folder, a data file
    build.json records that is gone."""
    folder = copy_folder(built("tiny-postnorm-mqa", "ort"), tmp_path / "ext")
    to_external_data(folder)
    if where == "outside":  # the data moved one level up and the graph points there
        shutil.move(folder / "model.onnx.data", tmp_path / "model.onnx.data")
        point_external_data(folder, "../model.onnx.data")
    else:
        (folder / "model.onnx.data").unlink()
    expected = "keeps its data at '../model.onnx.data': a path through '..'" if where == "outside" else "model.onnx.data: missing"
    with pytest.raises(FolderError, match=re.escape(expected)):
        run(folder, tmp_path / "parity")
    assert not (tmp_path / "parity").exists()


@pytest.fixture(scope="module")
def fp16_alibi(tmp_path_factory):
    from tests.conftest import MODELS
    from yamlllm_export import export_onnx

    return export_onnx(MODELS / "tiny-alibi.yaml", tmp_path_factory.mktemp("fp16") / "alibi", dtype="float16")


@pytest.mark.xdist_group(name="tiny-alibi")
def test_fp16_build_passes_its_half_precision_limit_against_fp32_reference(fp16_alibi, tmp_path):
    report = run(fp16_alibi, tmp_path / "parity")
    assert report.exit_code == 0, [(r.check, r.measured) for r in report.results if r.status != "pass"]
    prefill, tokens = row(report, "prefill"), row(report, "tokens")
    assert prefill.tolerance.startswith("max|Δ|/σ ≤") and "ε_float16" in prefill.tolerance
    assert 0 < prefill.value <= prefill.limit  # half precision is never exact
    assert tokens.tolerance == "≥ 99% agree" and tokens.value >= 0.99


@pytest.mark.xdist_group(name="tiny-alibi")
def test_fp16_broken_cache_fails_its_limit(fp16_alibi, tmp_path):
    folder = edit_graph(copy_folder(fp16_alibi, tmp_path / "broken"), shift_cache)
    report = run(folder, tmp_path / "parity")
    assert {"decode", "incremental"} <= failed(report) and "prefill" not in failed(report)
    assert row(report, "decode").value > row(report, "decode").limit
