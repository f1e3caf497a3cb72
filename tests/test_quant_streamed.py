"""Builds quantize one weight at a time (quant/folder.py); the result must equal ORT's quantizer (and ours) run
on the whole loaded model (``apply.quantize_graph``): the same nodes in the same order, the same initializers
bit for bit, the same build.json summary, for every recipe option. Float builds come from the session cache."""

from __future__ import annotations

import shutil

import onnx
import pytest
from onnx import numpy_helper

from tests.test_quant import quantized_copy
from yamlllm_export.quant.apply import quantize_graph
from yamlllm_export.quant.config import quant_config

CASES = [  # (model, target, flags): the head int8/int4/float, ffn-down, tied table (GatherBlockQuantized), HQQ, QDQ int4, portable int8
    ("tiny-llama", "ort", {}),
    ("tiny-llama", "ort", {"lm_head": "int4", "ffn_down": "int4", "block_size": 64, "accuracy_level": 1}),
    ("tiny-llama", "ort", {"lm_head": "float"}),
    ("tiny-gpt2", "ort", {}),
    ("tiny-palm", "ort", {"algo": "hqq"}),
    ("tiny-mixtral", "ort", {}),
    ("tiny-llama", "onnx", {"lm_head": "int4", "ffn_down": "int4"}),
    ("tiny-gpt2", "onnx", {}),
    ("tiny-llama", "portable", {"scheme": "int8"}),
]


def _whole_model(folder, cfg, target, reference):
    model = onnx.load(str(folder / "model.onnx"))  # weights read in
    return quantize_graph(model, cfg, target, reference)


@pytest.mark.parametrize(
    ("model", "target", "flags"), CASES, ids=[f"{m}-{t}-{'-'.join(f'{v}' for v in f.values()) or 'default'}" for m, t, f in CASES]
)
def test_streamed_quantization_equals_the_whole_model_one(built, reference, tmp_path, model, target, flags):
    float_folder = tmp_path / "float"
    shutil.copytree(built(model, target), float_folder)
    folder, summary = quantized_copy(built, reference, tmp_path, model, target, **dict(flags))
    cfg = quant_config(flags.get("scheme", "int4"), target=target, **{k: v for k, v in flags.items() if k != "scheme"})
    expected, expected_summary = _whole_model(float_folder, cfg, target, reference(model))
    got = onnx.load(str(folder / "model.onnx"))
    assert [(n.op_type, n.domain, n.name, list(n.input), list(n.output)) for n in got.graph.node] == [
        (n.op_type, n.domain, n.name, list(n.input), list(n.output)) for n in expected.graph.node
    ]
    assert [n.attribute for n in got.graph.node] == [n.attribute for n in expected.graph.node]
    assert list(got.opset_import) == list(expected.opset_import) and got.ir_version == expected.ir_version
    want = {t.name: numpy_helper.to_array(t) for t in expected.graph.initializer}
    have = {t.name: numpy_helper.to_array(t) for t in got.graph.initializer}
    assert sorted(have) == sorted(want)
    for name, a in want.items():
        assert have[name].dtype == a.dtype and have[name].shape == a.shape, name
        assert have[name].tobytes() == a.tobytes(), name  # bit for bit
    assert {k: v for k, v in summary.items() if k != "bytes"} == expected_summary
