"""The pieces of ``validate`` on their own: metrics and tolerances, greedy-token agreement, the exit code a
report adds up to, bfloat16 transport, which nodes fell back to another EP, and the resource estimate."""

from __future__ import annotations

import math

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper

from tests.conftest import MODELS
from yamlllm_export.runtime.session import fallback_nodes
from yamlllm_export.runtime.stepper import bfloat16_bits_to_float32, float32_to_bfloat16_bits, host_value, to_numpy_float32
from yamlllm_export.spec import load_spec
from yamlllm_export.validate.checks import Settings
from yamlllm_export.validate.parity import EPS32, FP32_HEADROOM, Tolerance, max_abs, max_rel, rel_l2, token_agreement
from yamlllm_export.validate.report import FAIL, PASS, UNSUPPORTED, CheckResult, EpRun, Report
from yamlllm_export.validate.resources import estimate


def test_tolerances_by_dtype():
    fp32 = Tolerance.for_spec("float32", load_spec(MODELS / "tiny-llama.yaml"))  # 2 layers of width 64
    assert (fp32.metric, fp32.layers, fp32.width, fp32.min_agreement) == ("max_rel", 2, 64, 1.0)
    # ε·√L·(C·√d + T): four times the layers double the limit; the width counts as a random walk, the keys linearly
    assert fp32.limit(32) == pytest.approx(EPS32 * math.sqrt(2) * (FP32_HEADROOM * 8 + 32))
    assert Tolerance.for_dtype("float32", 8, 64).limit(32) == pytest.approx(2 * fp32.limit(32))
    assert Tolerance.for_dtype("float32", 2, 256).limit(64) == pytest.approx(2 * fp32.limit(32))
    assert EPS32 == 2.0**-23
    for half, eps_h in (("float16", 2.0**-10), ("bfloat16", 2.0**-7)):
        # √L·(C·ε_h + ε·(C·√d + T)): half storage rounding on top of the float32 accumulation
        tol = Tolerance.for_dtype(half, 2, 64)
        assert (tol.metric, tol.min_agreement) == ("max_rel", 0.99)
        assert tol.limit(32) == pytest.approx(math.sqrt(2) * FP32_HEADROOM * eps_h + fp32.limit(32))
        assert Tolerance.for_dtype(half, 8, 64).limit(32) == pytest.approx(2 * tol.limit(32))
    limit = fp32.limit(32)
    assert fp32.ok(limit, 32) and not fp32.ok(limit * 1.01, 32) and fp32.ok(limit * 1.01, 64)
    assert not fp32.ok(math.inf, 32) and not fp32.ok(math.nan, 32)
    assert fp32.describe(32) == f"max|Δ|/σ ≤ {limit:.1e} (ε·√2·(16·√64 + 32))"


def test_metrics_count_valid_positions_only_and_treat_nan_as_failure():
    ref = np.zeros((2, 3, 4), np.float32)
    ref[..., 0] = 2.0  # σ of every position: std(2, 0, 0, 0) = √3/2
    got = ref.copy()
    got[1, 0] = 5.0  # a pad position: ignored
    valid = np.array([[1, 1, 1], [0, 1, 1]])
    assert max_abs(ref, got, valid) == 0.0 and max_rel(ref, got, valid) == 0.0
    got[0, 2, 1] = 0.5
    assert max_abs(ref, got, valid) == 0.5
    assert max_rel(ref, got, valid) == pytest.approx(0.5 / (math.sqrt(3) / 2))
    assert max_rel(ref * 10, got * 10, valid) == pytest.approx(max_rel(ref, got, valid))  # scale-free
    ref2 = np.ones((1, 1, 4), np.float32)
    assert rel_l2(ref2, ref2 * 1.01, np.ones((1, 1))) == pytest.approx(0.01, rel=1e-3)
    got[1, 0, 0] = np.nan  # even in a pad row: NaN reaches valid rows through the next layer
    assert max_abs(ref, got, valid) == math.inf and rel_l2(ref, got, valid) == math.inf and max_rel(ref, got, valid) == math.inf


def test_relative_error_is_per_position():
    """A position whose logits spread little is judged against its own spread, not the batch's."""
    ref = np.array([[[0.0, 10.0, -10.0], [0.0, 0.1, -0.1]]], np.float32)
    got = ref + np.array([[[0.0, 1e-3, 0.0], [0.0, 1e-3, 0.0]]], np.float32)
    sigma = ref[0].std(axis=-1)
    assert max_rel(ref, got, np.ones((1, 2))) == pytest.approx(1e-3 / sigma[1], rel=1e-3)


def test_token_disagreements_count_only_where_the_reference_is_decided():
    ref = np.array([[[1.0, 0.9995, 0.0], [1.0, 0.5, 0.0], [0.0, 2.0, 1.0]]], np.float32)  # gaps 5e-4, 0.5, 1.0
    got = np.array([[[0.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 2.0, 1.0]]], np.float32)  # differs at 0 and 1
    agree = token_agreement(ref, got, np.ones((1, 3)))
    assert (agree.compared, agree.disagreements, agree.near_ties) == (2, 1, 1)
    assert agree.agreement == 0.5
    assert token_agreement(ref, got, np.array([[1, 0, 1]])).disagreements == 0


def test_prompt_lengths_differ_and_fit():
    s = Settings(steps=32, batch=4, prompt_len=512, max_positions=4096)
    assert s.lengths == [512, 384, 256, 128]
    assert (s.long_prompt_len, s.long_steps) == (4092, 4)
    short = Settings(steps=32, batch=4, prompt_len=512, max_positions=4096, long_context=600)
    assert (short.long_prompt_len, short.long_positions) == (596, 600)
    assert Settings(steps=1, batch=5, prompt_len=2, max_positions=8).lengths == [2, 1, 1, 1, 1]


def _report(statuses: list[str], eps: list[EpRun], requested: tuple[str, ...] = ()) -> Report:
    rows = tuple(CheckResult(f"c{i}", "cpu", s, "m", "t", value=math.inf if s == FAIL else 0.0) for i, s in enumerate(statuses))
    return Report("f", {"name": "M"}, {}, tuple(eps), rows, requested_eps=requested)


def test_exit_codes():
    ran, skipped = EpRun("cpu", "ran"), EpRun("cuda", "skipped", "no NVIDIA GPU found")
    assert _report([PASS, PASS], [ran, skipped]).exit_code == 0
    assert _report([PASS, FAIL], [ran]).exit_code == 1
    # an EP that cannot run the build: reported, not a failure; exit 2 only when it was asked for
    auto = _report([PASS, UNSUPPORTED], [ran, EpRun("cuda", UNSUPPORTED, "no kernel")])
    assert auto.exit_code == 0 and auto.problem == ""
    asked = _report([PASS, UNSUPPORTED], [ran, EpRun("cuda", UNSUPPORTED, "no kernel")], ("cpu", "cuda"))
    assert asked.exit_code == 2 and "--ep cuda: this build cannot run there (no kernel)" in asked.problem
    nothing = _report([UNSUPPORTED], [EpRun("cpu", UNSUPPORTED, "no kernel"), skipped])
    assert nothing.exit_code == 2 and "nothing was validated" in nothing.problem
    assert _report([FAIL], [EpRun("cpu", UNSUPPORTED, "x")]).exit_code == 1  # a failure outranks the rest
    broken = _report([FAIL], [EpRun("cpu", "failed", "invalid model")])  # the session of a broken graph
    assert broken.exit_code == 1 and broken.problem == ""


def test_json_has_no_infinities():
    import json

    text = json.dumps(_report([FAIL], [EpRun("cpu", "ran")]).to_json(), allow_nan=False)
    assert '"value": "inf"' in text


def _identity_model(elem: int) -> bytes:
    x = helper.make_tensor_value_info("x", elem, [None])
    y = helper.make_tensor_value_info("y", elem, [None])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9).SerializeToString()


def test_bfloat16_crosses_ort_without_numpy_support():
    values = np.array([1.0, -2.5, 3.140625, 1e-3, 65504.0], np.float32)
    bits = float32_to_bfloat16_bits(values)
    assert np.array_equal(bfloat16_bits_to_float32(bits)[:3], values[:3])  # exactly representable
    assert np.allclose(bfloat16_bits_to_float32(bits), values, rtol=2**-8)
    assert float32_to_bfloat16_bits(np.array([1.0 + 2**-8], np.float32))[0] == 0x3F80  # ties to even
    session = ort.InferenceSession(_identity_model(onnx.TensorProto.BFLOAT16), providers=["CPUExecutionProvider"])
    binding = session.io_binding()
    value, _held = host_value(values, onnx.TensorProto.BFLOAT16)
    binding.bind_ortvalue_input("x", value)
    binding.bind_output("y", "cpu")
    session.run_with_iobinding(binding)
    out = binding.get_outputs()[0]
    assert out.data_type() == "tensor(bfloat16)"
    assert np.array_equal(to_numpy_float32(out), bfloat16_bits_to_float32(bits))


@pytest.mark.xdist_group(name="tiny-llama")
def test_fallback_detection_reads_the_profile(built, tmp_path):
    """On a CPU session every float node ran on the CPU: as seen from CUDA, that is every MatMul and the
    attention; int64 shape arithmetic never counts."""
    opts = ort.SessionOptions()
    opts.enable_profiling, opts.profile_file_prefix = True, str(tmp_path / "p")
    session = ort.InferenceSession(str(built("tiny-llama", "ort") / "model.onnx"), opts, providers=["CPUExecutionProvider"])
    feeds = {"input_ids": np.ones((1, 2), np.int64), "attention_mask": np.ones((1, 2), np.int64), "position_ids": np.array([[0, 1]])}
    feeds.update({i.name: np.zeros((1, 2, 0, 16), np.float32) for i in session.get_inputs()[3:]})
    session.run(None, feeds)
    import json

    profile = json.loads(open(session.end_profiling()).read())
    assert fallback_nodes(profile, "cpu") == {}
    fell = fallback_nodes(profile, "cuda")
    assert fell["GroupQueryAttention"] == 2 and fell["MatMul"] >= 7
    assert "Shape" not in fell


def test_resource_estimate_scales_with_the_model():
    big = load_spec(MODELS / "llama-style.yaml")  # 6.7 B parameters
    settings = Settings(steps=32, batch=4, prompt_len=512, max_positions=big.embedding.max_position_embeddings)
    fp32, fp16 = estimate(big, "float32", settings), estimate(big, "float16", settings)
    n = big.parameter_count()
    assert fp32.reference == 4 * n and fp16.reference == 6 * n  # fp16 weights, then their float32 copy
    assert fp16.session == fp32.session / 2 and fp32.ram > 5 * n
