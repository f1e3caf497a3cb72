"""``validate`` on quantized folders: the export error against the model with the same dequantized weights
passes with the accuracy level's tolerance and fails when one scale tensor is altered; the quality row
(KL, top-1, perplexity vs the float model on the English text) is reported separately."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import numpy_helper

from tests.validate_fixtures import FAST, assert_recorded, copy_folder, edit_graph
from yamlllm_export.cli import main

FAST_ARGS = [f"--{k.replace('_', '-')}={v}" for k, v in FAST.items()]
pytestmark = pytest.mark.xdist_group(name="quant-validate")
EXPORT_CHECKS = ("prefill", "decode", "incremental", "long context", "tokens")


@pytest.fixture(scope="session")
def quantized(tmp_path_factory):
    """quantized(model, *flags) -> a folder built through the CLI once per session."""
    cache = {}

    def get(model: str, *flags: str):
        if (model, flags) not in cache:
            out = tmp_path_factory.mktemp("quant") / f"{model}-{'-'.join(flags)}"
            result = CliRunner().invoke(main, ["build", f"models/{model}.yaml", "-o", str(out), *flags])
            assert result.exit_code == 0, result.output
            cache[model, flags] = out
        return cache[model, flags]

    return get


def _validate(folder, report):
    result = CliRunner().invoke(main, ["validate", str(folder), *FAST_ARGS, "--report", str(report)])
    return result, {c["check"]: c for c in json.loads((report / "parity.json").read_text())["checks"] if c["ep"] in ("cpu", "-")}


CASES = [
    ("tiny-llama", "--quant", "int4"),
    ("tiny-gpt2", "--quant", "int4"),  # tied: GatherBlockQuantized table, int8 head
    ("tiny-llama", "--quant", "int8", "--target", "portable"),
    # float32 scales (all opset 18 takes) dequantize a float16 weight, then a Cast: this build failed onnx.checker
    ("tiny-llama", "--quant", "int8", "--target", "portable", "--dtype", "float16"),
]


@pytest.mark.parametrize("case", CASES, ids=[" ".join(c) for c in CASES])
def test_quantized_folder_validates_both_ways(quantized, tmp_path, case):
    folder = quantized(*case)
    assert_recorded(folder)  # the hashes of the quantized files, not of the float export they replaced
    result, rows = _validate(folder, tmp_path / "rep")
    assert result.exit_code == 0, result.output
    assert all(rows[c]["status"] == "pass" for c in (*EXPORT_CHECKS, "weights"))
    assert rows["prefill"]["tolerance"] == "‖Δ‖/‖ref‖ ≤ 8e-02"  # accuracy level 4
    quality = rows["quality"]
    assert quality["status"] == "pass" and "KL" in quality["measured"] and "ppl" in quality["measured"]
    assert "english.txt" in quality["detail"]


def _scale_up(model: onnx.ModelProto, factor: float = 1.25) -> None:
    """Multiply the first MatMulNBits' scales by ``factor``: the graph no longer computes with the weights
    build.json says it does."""
    node = next(n for n in model.graph.node if n.op_type == "MatMulNBits")
    init = next(i for i in model.graph.initializer if i.name == node.input[2])
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * np.float32(factor), init.name))


def test_altered_scale_fails_the_export_error(quantized, tmp_path):
    broken = edit_graph(copy_folder(quantized("tiny-llama", "--quant", "int4"), tmp_path / "broken"), _scale_up)
    result, rows = _validate(broken, tmp_path / "rep")
    assert result.exit_code == 1, result.output
    assert rows["weights"]["status"] == "fail" and rows["weights"]["value"] > 10 * rows["weights"]["limit"]
