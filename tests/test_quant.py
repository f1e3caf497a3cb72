"""``build --quant int4|int8``: every constant-weight MatMul quantized or named with the reason, the numpy
dequantizer equal to ORT's own kernels, blocked DequantizeLinear fused by ORT, and one-line refusals of bad
flags. The float builds come from the session's ``built`` cache; quantizing a copy takes well under a second."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from tests.conftest import TINY_MODELS
from yamlllm_export.cli import main
from yamlllm_export.quant.config import quant_config
from yamlllm_export.quant.dequant import matmul_nbits_weight
from yamlllm_export.quant.folder import quantize_folder
from yamlllm_export.validate.quality import mean_kl, perplexity, top1_agreement


def quantized_copy(built, reference, tmp_path, model: str, target: str = "ort", **flags: object):
    folder = tmp_path / f"{model}-{target}-q"
    shutil.copytree(built(model, target), folder)
    cfg = quant_config(flags.pop("scheme", "int4"), target=target, **flags)
    summary = quantize_folder(folder, cfg, target, reference(model), "model.onnx.data")
    return folder, summary


def _const_weight_matmuls(graph: onnx.GraphProto) -> list[str]:
    """MatMul / Gemm nodes whose B is an initializer or a Transpose of one (what a quantizer could take)."""
    inits = {i.name for i in graph.initializer}
    transposed = {n.output[0] for n in graph.node if n.op_type == "Transpose" and n.input[0] in inits}
    return [n.name for n in graph.node if n.op_type in ("MatMul", "Gemm") and (n.input[1] in inits or n.input[1] in transposed)]


@pytest.mark.parametrize("model", TINY_MODELS)
def test_every_constant_weight_matmul_is_quantized_or_named(built, reference, tmp_path, model):
    before = _const_weight_matmuls(onnx.load(built(model, "ort") / "model.onnx", load_external_data=False).graph)
    folder, summary = quantized_copy(built, reference, tmp_path, model)
    graph = onnx.load(folder / "model.onnx", load_external_data=False).graph
    named = {n["node"] for n in summary["not_quantized"]}
    left = set(_const_weight_matmuls(graph))
    assert left <= named, f"float const-weight MatMuls not named in build.json: {sorted(left - named)}"
    nbits = [n for n in graph.node if n.op_type == "MatMulNBits"]
    assert len(nbits) == summary["matmuls"]["quantized"] == len(summary["weights"]) > 0
    named_matmuls = {r["node"] for r in summary["not_quantized"] if not r["reason"].startswith("com.microsoft.MoE")}
    assert len(nbits) + len(named_matmuls) == len(before)  # every one accounted for, nothing vanished
    assert all(r["reason"] for r in summary["not_quantized"])
    assert summary["bytes"]["quantized"] < summary["bytes"]["float"]


@pytest.mark.parametrize("model", ["tiny-gpt2", "tiny-palm"])
def test_tied_table_becomes_gather_block_quantized(built, reference, tmp_path, model):
    folder, summary = quantized_copy(built, reference, tmp_path, model)
    graph = onnx.load(folder / "model.onnx", load_external_data=False).graph
    ops = [n.op_type for n in graph.node]
    assert "GatherBlockQuantized" in ops and summary["embedding"].startswith("embedding table: GatherBlockQuantized")
    assert summary["matmuls"]["head"] and not summary["not_quantized"]


@pytest.mark.parametrize(("ffn_down", "down_bits"), [(None, 8), ("int4", 4)], ids=["default", "int4"])
def test_ffn_down_precision(built, reference, tmp_path, ffn_down, down_bits):
    folder, summary = quantized_copy(built, reference, tmp_path, "tiny-llama", ffn_down=ffn_down)
    bits = {
        n.output[0]: helper.get_attribute_value(next(a for a in n.attribute if a.name == "bits"))
        for n in onnx.load(folder / "model.onnx", load_external_data=False).graph.node
        if n.op_type == "MatMulNBits"
    }
    groups = {"down": set(), "head": set(), "body": set()}
    for out, slices in summary["weights"].items():
        name = slices[0][0]
        groups["head" if name == "lm_head.weight" else "down" if name.endswith(".ffn.down.weight") else "body"].add(bits[out])
    assert groups == {"down": {down_bits}, "head": {8}, "body": {4}}
    assert summary["ffn_down"] == f"int{down_bits}"


def test_float_head_stays_float_and_is_named(built, reference, tmp_path):
    _, summary = quantized_copy(built, reference, tmp_path, "tiny-llama", lm_head="float")
    assert [n["reason"] for n in summary["not_quantized"]] == ["LM head kept float (--lm-head float)"]


def _nbits_model(packed, scales, zp, k: int, n: int, bits: int, block: int) -> onnx.ModelProto:
    inits = [numpy_helper.from_array(packed, "B"), numpy_helper.from_array(scales, "S")]
    inputs = ["x", "B", "S"]
    if zp is not None:
        inits.append(numpy_helper.from_array(zp, "Z"))
        inputs.append("Z")
    node = helper.make_node("MatMulNBits", inputs, ["y"], domain="com.microsoft", K=k, N=n, bits=bits, block_size=block, accuracy_level=1)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [k, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("com.microsoft", 1)], ir_version=10)


# float zero points (what HQQ writes) have a 4-bit CPU kernel only
LAYOUTS = [(4, "none"), (4, "packed"), (4, "float"), (8, "none"), (8, "packed")]


@pytest.mark.parametrize(("bits", "zero_points"), LAYOUTS, ids=[f"{b}bit-zp-{z}" for b, z in LAYOUTS])
@pytest.mark.parametrize("k", [64, 48], ids=["k64", "k48-padded"])
def test_dequantizer_equals_ort_matmul_nbits(bits, zero_points, k):
    """Identity activations: ORT's output is the weight it multiplies by, which ours must reproduce exactly."""
    n, block = 24, 32
    blocks = -(-k // block)
    rng = np.random.default_rng(bits)
    packed = rng.integers(0, 256, (n, blocks, block * bits // 8), dtype=np.uint8)
    scales = rng.random((n, blocks), dtype=np.float32)
    zp = {
        "none": None,
        "packed": rng.integers(0, 256, (n, -(-blocks * bits // 8)), dtype=np.uint8),
        "float": rng.random((n, blocks), dtype=np.float32) * 2**bits,
    }[zero_points]
    model = _nbits_model(packed, scales, zp, k, n, bits, block)
    node = model.graph.node[0]
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    ours = matmul_nbits_weight(node, inits)
    got = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": np.eye(k, dtype=np.float32)})[
        0
    ]
    np.testing.assert_allclose(ours, got, rtol=1e-6, atol=1e-6)


def test_onnx_target_int4_is_blocked_dequantize_linear_that_ort_fuses(built, reference, tmp_path):
    folder, summary = quantized_copy(built, reference, tmp_path, "tiny-llama", target="onnx", lm_head="int4", ffn_down="int4")
    graph = onnx.load(folder / "model.onnx", load_external_data=False).graph
    dq = [n for n in graph.node if n.op_type == "DequantizeLinear"]
    inits = {i.name: i for i in graph.initializer}
    assert dq and all(inits[n.input[0]].data_type == TensorProto.INT4 for n in dq)
    assert all(helper.get_attribute_value(a) == 32 for n in dq for a in n.attribute if a.name == "block_size")
    assert summary["op_counts"]["DequantizeLinear"] == summary["matmuls"]["quantized"]
    opts = ort.SessionOptions()
    opts.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(folder / "model.onnx"), opts, providers=["CPUExecutionProvider"])
    optimized = [n.op_type for n in onnx.load(tmp_path / "optimized.onnx", load_external_data=False).graph.node]
    assert optimized.count("MatMulNBits") == len(dq) and "DequantizeLinear" not in optimized


def test_portable_int8_is_per_channel_dequantize_linear(built, reference, tmp_path):
    folder, summary = quantized_copy(built, reference, tmp_path, "tiny-llama", target="portable", scheme="int8")
    model = onnx.load(folder / "model.onnx", load_external_data=False)
    dq = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
    assert len(dq) == summary["matmuls"]["quantized"] > 0
    assert {o.domain: o.version for o in model.opset_import}[""] == 18
    assert not [n for n in model.graph.node if n.domain == "com.microsoft"]


BAD_FLAGS = [
    (["--quant", "int3"], "--quant: unknown scheme 'int3'"),
    (["--quant", "int4", "--block-size", "24"], "--block-size: 24 is not a power of two ≥ 16"),
    (["--quant", "int4", "--block-size", "8"], "--block-size: 8 is not a power of two ≥ 16"),
    (["--quant", "int4", "--accuracy-level", "5"], "--accuracy-level: 5 is out of range (0–4)"),
    (["--quant", "int4", "--quant-algo", "gptq"], "--quant-algo: unknown algorithm 'gptq'"),
    (["--quant", "int4", "--lm-head", "int2"], "--lm-head: unknown choice 'int2'"),
    (["--quant", "int4", "--dtype", "bfloat16"], "--quant with --dtype bfloat16"),
    (["--quant", "int4", "--target", "portable"], "--quant int4 --target portable: 4-bit DequantizeLinear needs opset 21"),
    (["--quant", "int8", "--target", "portable", "--lm-head", "int4"], "--lm-head int4 --target portable"),
    (["--quant", "int4", "--target", "onnx", "--quant-algo", "hqq"], "--quant-algo hqq: writes com.microsoft.MatMulNBits only"),
    (["--block-size", "32"], "--block-size: only applies with --quant int4|int8"),
    (["--quant", "int4", "--ffn-down", "int2"], "--ffn-down: unknown choice 'int2'"),
    (["--quant", "int8", "--quant-algo", "hqq"], "--quant int8 --quant-algo hqq: HQQ writes float zero points"),
]


@pytest.mark.parametrize(("flags", "expected"), BAD_FLAGS, ids=[" ".join(f) for f, _ in BAD_FLAGS])
def test_bad_quant_flags_exit_2_with_one_line_and_write_nothing(tmp_path, flags, expected):
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["build", "models/tiny-llama.yaml", "-o", str(out), *flags])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.stderr
    assert not out.exists() and not list(tmp_path.iterdir())


def test_missing_quantizer_is_one_line(tmp_path, monkeypatch):
    import sys

    import onnxruntime.quantization

    monkeypatch.setitem(sys.modules, "onnxruntime.quantization.matmul_nbits_quantizer", None)  # as if not installed
    monkeypatch.delattr(onnxruntime.quantization, "matmul_nbits_quantizer", raising=False)
    result = CliRunner().invoke(main, ["build", "models/tiny-llama.yaml", "-o", str(tmp_path / "o"), "--quant", "int4"])
    assert result.exit_code == 2 and "ORT's weight-only quantizer cannot be imported" in result.stderr
    assert not (tmp_path / "o").exists()


def test_quality_measures():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 7, 11))
    tokens = rng.integers(0, 11, (2, 7))
    assert perplexity(np.zeros((7, 11)), tokens[0]) == pytest.approx(11.0)
    assert mean_kl(logits, logits) == pytest.approx(0.0, abs=1e-12) and mean_kl(logits, logits[::-1]) > 0.1
    assert top1_agreement(logits, logits) == 1.0 and top1_agreement(logits, -logits) == 0.0
    lp = logits[0, :-1] - np.log(np.exp(logits[0, :-1]).sum(-1, keepdims=True))
    assert perplexity(logits[0], tokens[0]) == pytest.approx(np.exp(-lp[np.arange(6), tokens[0, 1:]].mean()))


def test_build_json_records_the_recipe(built, reference, tmp_path):
    _, summary = quantized_copy(built, reference, tmp_path, "tiny-llama", block_size=64, accuracy_level=1, algo="rtn")
    assert (summary["block_size"], summary["accuracy_level"], summary["lm_head"], summary["algo"]) == (64, 1, "int8", "rtn")
    assert summary["quantizer"].startswith(f"onnxruntime {ort.__version__} MatMulNBitsQuantizer (DEFAULT algorithm: rtn)")
    folder, summary = quantized_copy(built, reference, tmp_path / "hqq", "tiny-llama", algo="hqq")
    assert summary["algo"] == "hqq" and "HQQ" in summary["quantizer"]
    graph = onnx.load(folder / "model.onnx", load_external_data=False).graph
    levels = {
        helper.get_attribute_value(a) for n in graph.node if n.op_type == "MatMulNBits" for a in n.attribute if a.name == "accuracy_level"
    }
    assert levels == {4}  # HQQ's config has no level: the recipe's is set on every node
    assert json.dumps(summary)  # plain JSON
