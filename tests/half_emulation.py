"""A bfloat16 build made runnable on ONNX Runtime's CPU provider, which has no bfloat16 kernel for MatMul (nor
Mul, Sigmoid, Softmax, GroupQueryAttention, RotaryEmbedding, MoE, ...; docs/cuda.md): every bfloat16 tensor
becomes float32 and every bfloat16 node output is rounded to bfloat16 and back (Cast → Cast, round to nearest
even). What runs is the build's own graph with its own bfloat16 weights (bfloat16 → float32 is exact), storing
every intermediate in bfloat16 and computing in float32: what CUDA's bfloat16 kernels do, and what the
half-precision tolerance of validate/parity.py is derived for. Float16 needs none of this: ORT's CPU inserts
float32 casts around the fp16 nodes it has no kernel for."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

BF16, F32 = TensorProto.BFLOAT16, TensorProto.FLOAT


def emulate_bfloat16(src: Path, dst: Path) -> Path:
    """``src`` (a bfloat16 build) as a float32 graph that rounds like bfloat16, in ``dst``."""
    shutil.copytree(src, dst)
    model = onnx.load(str(dst / "model.onnx"))
    graph = model.graph
    initializers = {t.name: t.data_type for t in graph.initializer}  # before they become float32
    for init in graph.initializer:
        if init.data_type == BF16:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float32), init.name))
    _round_outputs(graph, initializers)
    for path in dst.glob("model.onnx*"):
        path.unlink()
    onnx.save_model(model, str(dst / "model.onnx"), save_as_external_data=True, location="model.onnx.data")
    return dst


def _round_outputs(graph: onnx.GraphProto, outer: dict[str, int]) -> dict[str, int]:
    """Rewrites ``graph`` (and its If bodies) in place; returns the bfloat16-or-not type of every value."""
    types = dict(outer)
    types |= {v.name: v.type.tensor_type.elem_type for v in (*graph.input, *graph.output, *graph.value_info)}
    nodes = []
    for node in graph.node:
        for attr in node.attribute:
            if node.op_type == "Cast" and attr.name == "to" and attr.i == BF16:
                attr.i = F32
            if attr.name == "value" and attr.t.data_type == BF16:
                attr.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(attr.t).astype(np.float32)))
        bodies = [a.g for a in node.attribute if a.type == a.GRAPH]
        inner = [_round_outputs(g, types) for g in bodies]  # If: its outputs have its branches' output types
        nodes.append(node)
        for k, out in enumerate(node.output):
            if not out:
                continue
            # an output without a recorded type (fused nodes) has its first input's type: conservative, since
            # rounding a float32 output to bfloat16 only adds error
            guess = inner[0].get(bodies[0].output[k].name, 0) if bodies else types.get(node.input[0], 0) if node.input else 0
            kind = types.setdefault(out, guess) or guess
            types[out] = kind
            if kind == BF16 and not bodies:  # an If's outputs were rounded inside its branches
                node.output[k] = f"{out}__f32"
                nodes.append(helper.make_node("Cast", [f"{out}__f32"], [f"{out}__bf16"], to=BF16))
                nodes.append(helper.make_node("Cast", [f"{out}__bf16"], [out], to=F32))
    del graph.node[:]
    graph.node.extend(nodes)
    for v in (*graph.input, *graph.output, *graph.value_info):
        if v.type.tensor_type.elem_type == BF16:
            v.type.tensor_type.elem_type = F32
    return types
