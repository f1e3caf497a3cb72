"""``validate`` on the CUDA execution provider (marker ``cuda``): skipped unless ORT ships the CUDA EP and
an NVIDIA GPU is present. Half-precision builds must pass there; an fp32 GroupQueryAttention build, which
CUDA has no kernel for, must be reported as unsupported on CUDA rather than as a parity failure."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from tests.conftest import MODELS
from yamlllm_export.cli import main
from yamlllm_export.runtime.session import availability

CUDA = availability("cuda")
pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not CUDA.usable, reason=f"CUDA EP not usable: {CUDA.reason}")]


def _validate_cuda(folder, report):
    args = ["validate", str(folder), "--ep", "cuda", "--steps", "8", "--batch", "4", "--prompt-len", "32", "--report", str(report)]
    result = CliRunner().invoke(main, args)
    return result, json.loads((report / "parity.json").read_text())


@pytest.mark.parametrize("model", ["tiny-llama", "tiny-alibi"])
def test_fp16_builds_pass_on_cuda(tmp_path, model):
    from yamlllm_export import export_onnx

    folder = export_onnx(MODELS / f"{model}.yaml", tmp_path / "fp16", dtype="float16")
    result, report = _validate_cuda(folder, tmp_path / "rep")
    assert result.exit_code == 0, result.output
    cuda_rows = [c for c in report["checks"] if c["ep"] == "cuda"]
    assert len(cuda_rows) == 6 and all(c["status"] == "pass" for c in cuda_rows)
    assert cuda_rows[0]["detail"].startswith("CUDAExecutionProvider")


@pytest.mark.xdist_group(name="tiny-llama")
def test_fp32_portable_build_passes_on_cuda(built, tmp_path):
    result, _ = _validate_cuda(built("tiny-llama", "portable"), tmp_path / "rep")
    assert result.exit_code == 0, result.output


@pytest.mark.xdist_group(name="tiny-llama")
def test_fp32_gqa_build_is_unsupported_on_cuda_not_failed(built, tmp_path):
    result, report = _validate_cuda(built("tiny-llama", "ort"), tmp_path / "rep")
    assert result.exit_code == 2, result.output
    assert "GroupQueryAttention x2" in result.stderr and "has no kernel for them" in result.stderr
    assert not [c for c in report["checks"] if c["status"] == "fail"]
