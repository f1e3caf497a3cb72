"""The weights a quantized folder should compute with, made again from the float weights and the recipe in
build.json, never read from the folder's graph: a scale or zero point altered in the file then shows as an
export error instead of being copied into the reference.

Each weight goes through the same quantizer pass as the build did (a one-MatMul graph), then through the numpy
dequantizer. Deterministic: the same ORT version gives the same bytes (build.json records it).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from yamlllm_export.errors import BuildError
from yamlllm_export.quant.apply import group_bits, quantize_nodes, weight_group
from yamlllm_export.quant.config import QuantConfig
from yamlllm_export.quant.dequant import dequantized_weights

NP_ELEM = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float16): TensorProto.FLOAT16}


def float_weight(model: nn.Module, slices: list[list], dtype: np.dtype) -> np.ndarray:
    """The (K, N) weight a MatMul read before quantization: the parameters' transposes side by side."""
    params = dict(model.named_parameters(remove_duplicate=False))
    cols = []
    for name, _start, _stop in slices:
        base, _, expert = name.partition("[")
        p = params[base][int(expert[:-1])] if expert else params[base]
        cols.append(p.detach().cpu().numpy().T)
    return np.ascontiguousarray(np.concatenate(cols, axis=1)).astype(dtype)


def _one_matmul(w: np.ndarray) -> onnx.ModelProto:
    elem = NP_ELEM[w.dtype]
    node = helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")
    graph = helper.make_graph(
        [node], "one_matmul", [helper.make_tensor_value_info("x", elem, [1, w.shape[0]])],
        [helper.make_tensor_value_info("y", elem, [1, w.shape[1]])], [numpy_helper.from_array(w, "w")],
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)


def recipe_weights(model: nn.Module, quant: dict, target: str, dtype: str) -> dict[str, np.ndarray]:
    """{MatMul output: dequantized (K, N) float32 weight} per build.json's ``quantization`` block."""
    cfg = QuantConfig(quant["scheme"], quant["block_size"], quant["accuracy_level"], quant["algo"], quant["lm_head"], quant["ffn_down"])
    np_dtype = np.dtype(np.float16 if dtype == "float16" else np.float32)
    out = {}
    for output, slices in quant["weights"].items():
        bits = group_bits(cfg, weight_group([s[0] for s in slices]))
        if bits is None:
            raise BuildError(f"build.json: quantization.weights names {output}, whose group the recipe keeps float")
        one = quantize_nodes(_one_matmul(float_weight(model, slices, np_dtype)), cfg, target, bits, {"mm"})
        out[output] = dequantized_weights(one, ["y"])["y"].astype(np.float32)
    return out
