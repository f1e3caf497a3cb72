"""Quantized builds on the CUDA execution provider (marker ``cuda``): MatMulNBits runs fp16 there (its accuracy
level is a CPU setting). Skipped unless ORT ships the CUDA EP and an NVIDIA GPU is present."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from yamlllm_export.cli import main
from yamlllm_export.runtime.session import availability

CUDA = availability("cuda")
pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not CUDA.usable, reason=f"CUDA EP not usable: {CUDA.reason}")]


@pytest.mark.parametrize("scheme", ["int4", "int8"])
def test_fp16_quantized_build_passes_on_cuda(tmp_path, scheme):
    out = tmp_path / "q"
    built = CliRunner().invoke(main, ["build", "models/tiny-llama.yaml", "-o", str(out), "--quant", scheme, "--dtype", "float16"])
    assert built.exit_code == 0, built.output
    args = ["validate", str(out), "--ep", "cuda", "--steps", "4", "--batch", "3", "--prompt-len", "16", "--report", str(tmp_path / "rep")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    rows = [c for c in json.loads((tmp_path / "rep" / "parity.json").read_text())["checks"] if c["ep"] == "cuda"]
    assert rows and all(c["status"] == "pass" for c in rows)
    assert rows[0]["detail"].startswith("CUDAExecutionProvider")
