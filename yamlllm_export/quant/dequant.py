"""The float weights a quantized graph computes with: dequantize MatMulNBits and DequantizeLinear weights with
numpy and put them into the PyTorch reference, so ``validate`` compares the graph against the model it must
equal (export error) separately from what quantization costs (quality).
"""

from __future__ import annotations

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper
from torch import nn

from yamlllm_export.errors import BuildError


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _unpack(packed: np.ndarray, bits: int, count: int) -> np.ndarray:
    """uint8 bytes → ``count`` unsigned ``bits``-bit values per row (low-order bits first), float32."""
    if bits == 8:
        return packed.reshape(len(packed), -1)[:, :count].astype(np.float32)
    per = 8 // bits
    shifts = np.arange(per, dtype=np.uint8) * bits
    vals = (packed.reshape(len(packed), -1, 1) >> shifts) & ((1 << bits) - 1)
    return vals.reshape(len(packed), -1)[:, :count].astype(np.float32)


def matmul_nbits_weight(node: onnx.NodeProto, inits: dict[str, np.ndarray]) -> np.ndarray:
    """com.microsoft.MatMulNBits' B as the (K, N) float matrix it multiplies by: (q - zp) · scale per block
    of ``block_size`` along K; zero point 2^(bits-1) when absent (symmetric)."""
    a = _attrs(node)
    k, n, bits, block = a["K"], a["N"], a["bits"], a["block_size"]
    blocks = -(-k // block)
    q = _unpack(inits[node.input[1]], bits, blocks * block).reshape(n, blocks, block)
    scales = inits[node.input[2]].astype(np.float32).reshape(n, blocks, 1)
    zp_name = node.input[3] if len(node.input) > 3 else ""
    if not zp_name:
        zp = np.float32(1 << (bits - 1))
    elif inits[zp_name].dtype == np.uint8:
        zp = _unpack(inits[zp_name].reshape(n, -1), bits, blocks).reshape(n, blocks, 1)
    else:
        zp = inits[zp_name].astype(np.float32).reshape(n, blocks, 1)
    return ((q - zp) * scales).reshape(n, blocks * block)[:, :k].T


def dequantize_linear_weight(node: onnx.NodeProto, inits: dict[str, np.ndarray]) -> np.ndarray:
    """DequantizeLinear of a constant: (x - zp) · scale, per axis or per ``block_size`` block along ``axis``."""
    a = _attrs(node)
    x = inits[node.input[0]].astype(np.float32)
    scale = inits[node.input[1]].astype(np.float32)
    zp = inits[node.input[2]].astype(np.float32) if len(node.input) > 2 and node.input[2] else np.zeros_like(scale)
    axis = a.get("axis", 1) % x.ndim
    if scale.ndim == 0:
        return (x - zp) * scale
    if a.get("block_size", 0):
        scale, zp = (np.repeat(t, a["block_size"], axis=axis).take(range(x.shape[axis]), axis=axis) for t in (scale, zp))
        return (x - zp) * scale
    shape = [1] * x.ndim
    shape[axis] = -1
    return (x - zp.reshape(shape)) * scale.reshape(shape)


def dequantized_weights(model: onnx.ModelProto, outputs: list[str]) -> dict[str, np.ndarray]:
    """{MatMul output name: its (K, N) float weight} for the quantized MatMuls of ``model``."""
    graph = model.graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    out = {}
    for name in outputs:
        node = producer.get(name)
        if node is not None and node.op_type == "MatMulNBits":
            out[name] = matmul_nbits_weight(node, inits)
        elif node is not None and node.op_type == "MatMul" and (dq := _dequantize_node(producer, node.input[1])) is not None:
            out[name] = dequantize_linear_weight(dq, inits)
        else:
            raise BuildError(f"model.onnx: build.json names {name!r} as a quantized MatMul's output, the graph has no such node")
    return out


@torch.no_grad()
def load_dequantized(model: nn.Module, weights: dict[str, list[list]], deq: dict[str, np.ndarray], *, table_shared: bool) -> nn.Module:
    """Put the dequantized columns into ``model``'s parameters (``weights``: build.json's output → slices).
    A tied LM head quantized while the table stays float (``table_shared`` False) is untied first: the graph
    then computes with two tables; with a GatherBlockQuantized table both read the head's dequantized rows."""
    params = dict(model.named_parameters(remove_duplicate=False))
    head = getattr(model, "lm_head", None)
    embed = getattr(model, "embed", None)
    names = {s[0] for slices in weights.values() for s in slices}
    tied = isinstance(head, nn.Linear) and isinstance(embed, nn.Embedding) and head.weight is embed.weight
    if tied and isinstance(head, nn.Linear) and not table_shared and "lm_head.weight" in names and "embed.weight" not in names:
        head.weight = nn.Parameter(head.weight.detach().clone())
        params["lm_head.weight"] = head.weight
    for out, slices in weights.items():
        w = torch.from_numpy(np.ascontiguousarray(deq[out]))
        for name, start, stop in slices:
            base, _, expert = name.partition("[")  # "experts.w[3]": one expert of a stacked parameter
            p = params[base][int(expert[:-1])] if expert else params[base]
            p.copy_(w[:, start:stop].T.to(p.dtype))
    return model


def _dequantize_node(producer: dict[str, onnx.NodeProto], weight: str) -> onnx.NodeProto | None:
    """The DequantizeLinear that makes a MatMul's weight, directly or through the Cast back to float16 / bfloat16
    that a float32-scale int8 weight takes (``apply._int8_per_channel``)."""
    node = producer.get(weight)
    if node is not None and node.op_type == "Cast":
        node = producer.get(node.input[0])
    return node if node is not None and node.op_type == "DequantizeLinear" else None
