"""Where ONNX Runtime's real CUDA provider places each node, without a GPU (validate/placement.py: a C shim for
the CUDA libraries, built with ``cc`` at test time; skipped without a compiler or without onnxruntime-gpu).

Every build as the CUDA EP would get it (fp16 / bf16 on each target, int4 / int8, MoE, MLA, ALiBi, sinks) must
put every compute node on CUDA, or its build must refuse in one line; a float32 ``ort`` build (GroupQueryAttention
has no fp32 CUDA kernel) must say so in one line pointing at ``--dtype float16``. No GroupQueryAttention node may
combine ``attention_bias`` with ``head_sink`` or a quantized KV cache, which the CUDA kernel refuses at run time.

CI runs a representative subset (each build once per session; ~2 minutes on 2 cores). The full product
models/tiny-*.yaml × target × {fp16, bf16} × {float, int4, int8} is the ``long`` test: ``YAMLLLM_LONG_TESTS=1``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import onnx
import pytest
from click.testing import CliRunner

from tests.conftest import MODELS, TARGETS, TINY_MODELS
from tests.feature_cases import ATT, case
from yamlllm_export.cli import main
from yamlllm_export.errors import BuildError
from yamlllm_export.validate.placement import (
    CHECKED_ORT,
    CHECKED_REGISTRY,
    ShimUnavailable,
    check_cuda_placement,
    cuda_registry,
    gqa_cuda_conflicts,
    shim_dir,
)

LONG = pytest.mark.skipif(not os.environ.get("YAMLLLM_LONG_TESTS"), reason="the full product: set YAMLLLM_LONG_TESTS=1")
SINKS = case(f"{ATT}.sinks", True, "layer_overrides", [{"layers": [0], "attention": {"window_size": 5}}])

# (model or feature case, target, dtype, quant): what CI covers; every target and dtype, both schemes, the
# MoE / MLA / ALiBi / sinks lowerings
SUBSET = [
    ("tiny-llama", "ort", "float16", None),
    ("tiny-llama", "ort", "bfloat16", None),
    ("tiny-llama", "onnx", "float16", None),
    ("tiny-llama", "portable", "bfloat16", None),
    ("tiny-llama", "ort", "float16", "int4"),
    ("tiny-llama", "onnx", "float16", "int8"),
    ("tiny-mixtral", "ort", "float16", None),
    ("tiny-mla", "ort", "bfloat16", None),
    ("tiny-alibi", "ort", "float16", None),
    ("sinks", "ort", "float16", None),
    ("sinks", "ort", "bfloat16", None),
]


@pytest.fixture(scope="session")
def shim() -> Path:
    try:
        return shim_dir()
    except ShimUnavailable as err:
        pytest.skip(str(err))


@pytest.fixture(scope="session")
def cuda_build(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path | BuildError]:
    """cuda_build(model, target, dtype, quant) -> folder, or the BuildError the build refused with; once per session."""
    from yamlllm_export import export_onnx
    from yamlllm_export.quant.config import quant_config

    made: dict[tuple[str, str, str, str | None], Path | BuildError] = {}

    def get(model: str, target: str, dtype: str, quant: str | None) -> Path | BuildError:
        key = (model, target, dtype, quant)
        if key not in made:
            out = tmp_path_factory.mktemp("cuda") / "-".join(str(k) for k in key)
            spec = SINKS if model == "sinks" else MODELS / f"{model}.yaml"
            try:
                qcfg = quant_config(quant, dtype=dtype, target=target)
                made[key] = export_onnx(spec, out, target=target, dtype=dtype, seed=0, quant=qcfg)
            except BuildError as err:
                made[key] = err
        return made[key]

    return get


def assert_on_cuda(folder: Path | BuildError, shim: Path) -> None:
    if isinstance(folder, BuildError):  # a refusal is an answer, if it is one line naming the flag
        assert str(folder).count("\n") == 0 and str(folder).startswith("--"), str(folder)
        return
    assert not gqa_cuda_conflicts(onnx.load(str(folder / "model.onnx"), load_external_data=False))
    verdict = check_cuda_placement(folder, shim=shim)
    assert verdict.ok, verdict.line
    # the int64 shape nodes' one copy, and the condition of a run-time choice (If reads it on the host)
    assert verdict.placement.memcpy_count() <= 2, verdict.placement.nodes


@pytest.mark.parametrize(("model", "target", "dtype", "quant"), SUBSET, ids=lambda v: str(v))
@pytest.mark.xdist_group(name="cuda-placement")
def test_every_compute_node_on_cuda(cuda_build, shim, model, target, dtype, quant):
    assert_on_cuda(cuda_build(model, target, dtype, quant), shim)


@LONG
@pytest.mark.parametrize("quant", [None, "int4", "int8"])
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("model", TINY_MODELS)
def test_every_example_on_cuda(cuda_build, shim, model, target, dtype, quant):
    assert_on_cuda(cuda_build(model, target, dtype, quant), shim)


@pytest.mark.xdist_group(name="cuda-placement")
def test_float32_gqa_build_says_so_in_one_line(cuda_build, shim):
    """GroupQueryAttention has fp16/bf16 CUDA kernels only: ORT would run it on the CPU behind Memcpy nodes."""
    folder = cuda_build("tiny-llama", "ort", "float32", None)
    verdict = check_cuda_placement(folder, shim=shim)
    assert not verdict.ok
    assert "GroupQueryAttention x2 would run on the CPU" in verdict.line and "--dtype float16" in verdict.line
    assert "\n" not in verdict.line
    assert verdict.placement.memcpy_count() > 2


@pytest.mark.xdist_group(name="cuda-placement")
def test_float32_portable_build_runs_on_cuda(cuda_build, shim):
    verdict = check_cuda_placement(cuda_build("tiny-llama", "portable", "float32", None), shim=shim)
    assert verdict.ok, verdict.line


@pytest.mark.xdist_group(name="cuda-placement")
def test_cli_cuda_placement(cuda_build, shim):
    good = CliRunner().invoke(main, ["validate", str(cuda_build("tiny-llama", "ort", "float16", None)), "--cuda-placement"])
    assert good.exit_code == 0 and good.output.startswith("cuda placement: every compute node on CUDA"), good.output
    bad = CliRunner().invoke(main, ["validate", str(cuda_build("tiny-llama", "ort", "float32", None)), "--cuda-placement"])
    assert bad.exit_code == 1 and len(bad.output.strip().splitlines()) == 1, bad.output


def test_cli_cuda_placement_on_a_non_folder(tmp_path):
    result = CliRunner().invoke(main, ["validate", str(tmp_path), "--cuda-placement"])
    assert result.exit_code == 2 and "no model.onnx" in result.output


def test_kernel_registry_is_the_one_checked(shim):
    """The placement findings (docs/cuda.md) were read against this registry; a new onnxruntime-gpu shows here."""
    registry = cuda_registry(shim=shim)
    if registry["ort"] != CHECKED_ORT:
        pytest.skip(f"onnxruntime {registry['ort']}: placement was checked against {CHECKED_ORT} {CHECKED_REGISTRY}")
    assert {k: registry[k] for k in CHECKED_REGISTRY} == CHECKED_REGISTRY


def test_conflict_rule_sees_bias_with_sink():
    """The structural rule itself: a GQA node with attention_bias and head_sink is flagged, one without is not."""
    from onnx import helper

    def gqa(inputs: list[str]) -> onnx.ModelProto:
        node = helper.make_node("GroupQueryAttention", inputs, ["o", "pk", "pv"], domain="com.microsoft", name="gqa")
        inner = helper.make_graph([node], "g", [], [])
        return helper.make_model(
            helper.make_graph([helper.make_node("If", ["c"], ["o"], then_branch=inner, else_branch=inner)], "m", [], [])
        )

    base = ["q", "k", "v", "pk_in", "pv_in", "sl", "tl", "", "", ""]
    assert gqa_cuda_conflicts(gqa([*base, "bias", "sink"])) == ["gqa: attention_bias with head_sink", "gqa: attention_bias with head_sink"]
    assert gqa_cuda_conflicts(gqa([*base, "", "sink"])) == []
    assert gqa_cuda_conflicts(gqa([*base, "bias", "", "ks", "vs"])) == ["gqa: attention_bias with k_scale, v_scale"] * 2


@pytest.mark.xdist_group(name="cuda-placement")
def test_float32_gqa_build_is_refused_on_cuda_before_a_session(cuda_build):
    """validate / bench / generate --ep cuda on it: one line pointing at --dtype float16, before ORT is asked."""
    from yamlllm_export.runtime.session import EpUnsupported, refuse_half_only_ops

    with pytest.raises(EpUnsupported, match=r"^GroupQueryAttention x2: .* has no kernel for them in float32 .* --dtype float16"):
        refuse_half_only_ops(cuda_build("tiny-llama", "ort", "float32", None))
    refuse_half_only_ops(cuda_build("tiny-llama", "ort", "float16", None))  # half builds pass
    refuse_half_only_ops(cuda_build("tiny-llama", "portable", "float32", None))  # no GQA
