"""--keep-quantized: llama.cpp blocks become MatMulNBits whose weights ONNX Runtime computes exactly as gguf
dequantizes them (an identity input reads every weight back), and a kept build's logits match our PyTorch
model holding gguf's dequantized weights."""

from __future__ import annotations

import json

import gguf
import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from tests.gguf_fixtures import write_gguf
from tests.hf_fixtures import make_hf_model
from tests.validate_fixtures import assert_recorded
from yamlllm_export.export.writer import export_onnx
from yamlllm_export.gguf import load_gguf_weights
from yamlllm_export.gguf.importer import import_gguf
from yamlllm_export.gguf.keep_quantized import _matmul_nbits
from yamlllm_export.gguf.matmul_nbits import pack
from yamlllm_export.hf import render_yaml
from yamlllm_export.model.builders import build_model
from yamlllm_export.runtime.io_contract import IOContract
from yamlllm_export.runtime.session import cpu_session
from yamlllm_export.runtime.stepper import GraphStepper
from yamlllm_export.spec import load_spec

BYTES = {"Q4_0": (32, 18), "Q4_1": (32, 20), "Q8_0": (32, 34), "Q4_K": (256, 144)}


def random_blocks(qtype: str, rows: int, cols: int, seed: int) -> np.ndarray:
    """Random stored rows of ``qtype`` with plausible fp16 scales (and mins) in front of each block."""
    rng = np.random.default_rng(seed)
    per, size = BYTES[qtype]
    raw = rng.integers(0, 256, size=(rows, cols // per, size), dtype=np.uint8)
    halves = 2 if qtype in ("Q4_1", "Q4_K") else 1
    for h in range(halves):
        values = rng.uniform(0.001, 0.05, raw.shape[:2]) * (1 if h == 0 else rng.choice([-1, 1], raw.shape[:2]) ** (qtype == "Q4_1"))
        raw[..., 2 * h : 2 * h + 2] = values.astype(np.float16).view(np.uint8).reshape(*raw.shape[:2], 2)
    return raw.reshape(rows, -1)


def ort_weights(nbits, k: int) -> np.ndarray:
    """The (rows, K) weights ONNX Runtime's MatMulNBits (and offsets) computes: the graph on an identity input."""
    nodes, tensors = _matmul_nbits("x", "y", "w", nbits, k)
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, k, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, k, None])], tensors,
    )  # fmt: skip
    model = helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("com.microsoft", 1)])
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": np.eye(k, dtype=np.float32)[None]})[0][0].T


@pytest.mark.parametrize("qtype", sorted(BYTES), ids=str)
def test_matmul_nbits_weights_equal_gguf_dequantization_bit_for_bit(qtype: str) -> None:
    rows, cols = 24, 512
    blocks = random_blocks(qtype, rows, cols, seed=len(qtype))
    reference = gguf.quants.dequantize(blocks, gguf.GGMLQuantizationType[qtype]).reshape(rows, cols)
    nbits = pack(qtype, blocks, cols, reference)
    got = ort_weights(nbits, cols)
    assert np.array_equal(got, reference), f"{qtype}: max |Δ| {np.abs(got - reference).max():.3e}"


@pytest.mark.parametrize("quant", ["Q4_0", "Q4_1", "Q8_0"], ids=str)
def test_keep_quantized_build_matches_the_dequantized_model(quant: str, tmp_path) -> None:
    hf = make_hf_model("llama", tmp_path / "hf")
    path = write_gguf(hf, "llama", tmp_path / "model.gguf", quant=quant)
    spec, header = import_gguf(path)
    (tmp_path / "spec.yaml").write_text(render_yaml(spec, header))
    kept = export_onnx(tmp_path / "spec.yaml", tmp_path / "kept", weights=path, keep_quantized=True)
    info = json.loads((kept / "build.json").read_text())
    assert info["op_counts"]["com.microsoft.MatMulNBits"] == 7 * spec["num_layers"], info["op_counts"]  # q, k, v, o, gate, up, down
    assert_recorded(kept)  # the hashes of the rewritten graph and data
    graph = onnx.load(kept / "model.onnx", load_external_data=False).graph
    assert sum(n.op_type == "MatMul" and not n.name.endswith(".offsets") for n in graph.node) == 1  # the LM head only
    model = build_model(load_spec(kept / "model.yaml")).eval()
    load_gguf_weights(model, path)  # the float reference: gguf's dequantization
    ids = np.random.default_rng(0).integers(1, 96, (2, 9))
    with torch.no_grad():
        want = model(torch.from_numpy(ids))[0].numpy()
    stepper = GraphStepper.for_session(cpu_session(kept), IOContract.for_spec(load_spec(kept / "model.yaml")))
    got = stepper.step(ids, np.ones_like(ids), stepper.empty_past(2))[0]
    assert np.abs(got - want).max() <= 1e-4, np.abs(got - want).max()


def test_keep_quantized_notes_types_it_cannot_keep(tmp_path) -> None:
    hf = make_hf_model("llama", tmp_path / "hf")
    path = write_gguf(hf, "llama", tmp_path / "model.gguf", quant="Q5_0")
    spec, header = import_gguf(path)
    (tmp_path / "spec.yaml").write_text(render_yaml(spec, header))
    kept = export_onnx(tmp_path / "spec.yaml", tmp_path / "kept", weights=path, keep_quantized=True)
    info = json.loads((kept / "build.json").read_text())
    assert "com.microsoft.MatMulNBits" not in info["op_counts"]
    assert info["weights"]["quantized"]["notes"] == [
        "14 Q5_0 weights dequantized to float (no exact MatMulNBits form; kept exactly: Q4_0, Q4_1, Q8_0, Q4_K)"
    ]
