"""Quantize the constant-weight MatMuls of an exported graph, per target:

ort       com.microsoft.MatMulNBits (ORT's own weight-only quantizer, ``onnxruntime.quantization``)
onnx      int4: opset-21 blocked DequantizeLinear (int4, ``block_size``) → MatMul (ORT's quantizer, QDQ format),
          which ORT's DQMatMulToMatMulNBits fusion turns back into MatMulNBits at session start;
          int8: per-channel int8 DequantizeLinear → MatMul
portable  int8 per-channel DequantizeLinear → MatMul (opset 18 has no 4-bit types)

The LM head gets ``lm_head`` precision (``float``: left as it is), an int4 build's FFN down projections
``ffn_down`` precision. Every constant-weight MatMul ends quantized or named in the summary with the reason; the
summary is build.json's ``quantization``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnx import helper, numpy_helper

from yamlllm_export.quant.config import QuantConfig
from yamlllm_export.quant.ort_import import matmul_nbits_quantizer
from yamlllm_export.quant.prepare import prepare_matmuls
from yamlllm_export.quant.weight_map import ConstMatMul, Slice, const_matmuls, parameter_slices

if TYPE_CHECKING:
    from torch import nn

    from yamlllm_export.model.seeded import SeededWeights

HEAD = "lm_head.weight"
DOWN = ".ffn.down.weight"  # the FFN's output projection (model/builders.py names it; MoE experts stay body)
GBQ_NOTE = "embedding table: GatherBlockQuantized"


def _quantizer_config(cfg: QuantConfig, bits: int, qdq: bool) -> object:
    from onnxruntime.quantization.quant_utils import QuantFormat

    mnq = matmul_nbits_quantizer()

    fmt = QuantFormat.QDQ if qdq else QuantFormat.QOperator
    if cfg.algo == "hqq" and bits == 4:  # an 8-bit head: float zero points have no 8-bit CPU kernel, so RTN
        return mnq.HQQWeightOnlyQuantConfig(block_size=cfg.block_size, bits=bits, quant_format=fmt)
    return mnq.DefaultWeightOnlyQuantConfig(
        block_size=cfg.block_size, is_symmetric=True, accuracy_level=cfg.accuracy_level, quant_format=fmt, bits=bits
    )


def _ort_quantize(model: onnx.ModelProto, cfg: QuantConfig, bits: int, nodes: set[str], qdq: bool) -> onnx.ModelProto:
    """ORT's MatMulNBitsQuantizer on the MatMuls named in ``nodes`` (every other node excluded)."""
    MatMulNBitsQuantizer = matmul_nbits_quantizer().MatMulNBitsQuantizer  # noqa: N806 - the class

    exclude = [n.name for n in model.graph.node if n.op_type == "MatMul" and n.name not in nodes]
    quantizer = MatMulNBitsQuantizer(model, nodes_to_exclude=exclude, algo_config=_quantizer_config(cfg, bits, qdq))
    log = logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer")
    level = log.level
    log.setLevel(logging.WARNING)  # it logs every node at INFO
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # HQQ's torch.from_numpy on a read-only array warns; it only reads it
            quantizer.process()
    finally:
        log.setLevel(level)
    return quantizer.model.model


def _int8_per_channel(model: onnx.ModelProto, nodes: set[str]) -> None:
    """Symmetric int8, one scale per output column: B ≈ DequantizeLinear(q, s, axis=1), q = round(B / s),
    s = max|B[:, n]| / 127. Standard ONNX since opset 13, so every target can run it. Opset 13-18 take float32
    scales only, so a float16 / bfloat16 weight is dequantized to float32 and cast back to its own type."""
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    kept, new_nodes = [], []
    for node in graph.node:
        if node.name not in nodes:
            new_nodes.append(node)
            continue
        name = node.input[1]
        dtype = inits[name].data_type
        w = numpy_helper.to_array(inits[name]).astype(np.float32)
        scale = np.abs(w).max(axis=0) / 127.0
        scale[scale == 0] = 1.0
        q = np.clip(np.rint(w / scale), -127, 127).astype(np.int8)
        kept += [
            numpy_helper.from_array(q, f"{name}_DQ_Q8"),
            numpy_helper.from_array(scale.astype(np.float32), f"{name}_DQ_scales"),
            numpy_helper.from_array(np.zeros_like(scale, dtype=np.int8), f"{name}_DQ_zero_points"),
        ]
        deq = f"{name}_DQ"
        dq_out = deq if dtype == onnx.TensorProto.FLOAT else f"{name}_DQ_f32"
        new_nodes.append(
            helper.make_node(
                "DequantizeLinear",
                [f"{name}_DQ_Q8", f"{name}_DQ_scales", f"{name}_DQ_zero_points"],
                [dq_out],
                name=f"{node.name}_DQ",
                axis=1,
            )
        )
        if dq_out != deq:
            new_nodes.append(helper.make_node("Cast", [dq_out], [deq], name=f"{node.name}_DQ_cast", to=dtype))
        new_nodes.append(helper.make_node("MatMul", [node.input[0], deq], list(node.output), name=node.name))
        del inits[name]
    graph.ClearField("node")
    graph.node.extend(new_nodes)
    graph.ClearField("initializer")
    graph.initializer.extend([*inits.values(), *kept])


def _set_accuracy_level(model: onnx.ModelProto, level: int) -> None:
    """HQQ's config takes no accuracy level: give every MatMulNBits the recipe's."""
    for node in model.graph.node:
        if node.op_type == "MatMulNBits":
            for a in list(node.attribute):
                if a.name == "accuracy_level":
                    node.attribute.remove(a)
            node.attribute.append(helper.make_attribute("accuracy_level", level))


def weight_group(params: list[str]) -> str:
    """Which precision group a MatMul's parameters put it in: the LM head, an FFN down projection, or the body."""
    if HEAD in params:
        return "head"
    return "down" if all(p.split("[")[0].endswith(DOWN) for p in params) else "body"


def group_bits(cfg: QuantConfig, group: str) -> int | None:
    return {"head": cfg.head_bits, "down": cfg.down_bits, "body": cfg.bits}[group]


def quantize_nodes(model: onnx.ModelProto, cfg: QuantConfig, target: str, bits: int, nodes: set[str]) -> onnx.ModelProto:
    """One pass: the MatMuls named in ``nodes`` to ``bits`` in the target's form."""
    if target == "ort":
        model = _ort_quantize(model, cfg, bits, nodes, qdq=False)
        _set_accuracy_level(model, cfg.accuracy_level)
    elif bits == 4:  # onnx target: opset-21 blocked int4 DequantizeLinear
        model = _ort_quantize(model, cfg, bits, nodes, qdq=True)
    else:
        _int8_per_channel(model, nodes)
    return model


def tie_embedding(model: onnx.ModelProto, head_output: str, table: str) -> str:
    """Replace ``Gather(table, ids)`` by ``com.microsoft.GatherBlockQuantized`` over the quantized head's bytes and
    scales (a tied table is the head's weight: the same N rows of K), dropping the float table. Returns a note.

    ORT 1.31 refuses one initializer for both: MatMulNBits wants B as (N, blocks, blob), GatherBlockQuantized
    wants data of the rank of its (N, blocks) scales, so the table keeps its own (N, K·bits/8) copy of the bytes;
    the scales are shared."""
    graph = model.graph
    head = next((n for n in graph.node if head_output in n.output), None)
    if head is None or head.op_type != "MatMulNBits":
        return "embedding table kept float: the LM head is not a MatMulNBits"
    a = {x.name: helper.get_attribute_value(x) for x in head.attribute}
    if a["K"] % a["block_size"]:
        return f"embedding table kept float: K {a['K']} is not a multiple of block {a['block_size']} (the head's blocks are padded)"
    if len(head.input) > 3 and head.input[3]:
        return "embedding table kept float: the head has zero points (GatherBlockQuantized takes them only packed like its data)"
    inits = {i.name: i for i in graph.initializer}
    packed = numpy_helper.to_array(inits[head.input[1]])
    data = numpy_helper.from_array(packed.reshape(packed.shape[0], -1), f"{table}_GBQ_Q{a['bits']}")
    gathers = [n for n in graph.node if n.op_type == "Gather" and n.input[0] == table]
    for g in gathers:
        gbq = helper.make_node(
            "GatherBlockQuantized", [data.name, g.input[1], head.input[2]], list(g.output), name=f"{g.name}_GBQ",
            domain="com.microsoft", bits=a["bits"], block_size=a["block_size"], gather_axis=0, quantize_axis=1,
        )  # fmt: skip
        graph.node.insert(list(graph.node).index(g), gbq)
        graph.node.remove(g)
    graph.initializer.append(data)
    if not any(table in n.input for n in graph.node):
        graph.initializer.remove(inits[table])
    return f"{GBQ_NOTE} ({a['bits']}-bit, the LM head's weights and scales)"


@dataclass(frozen=True)
class Plan:
    """What to quantize, decided from the graph's structure and the parameters, before any weight changes."""

    tied: dict[str, str]  # {LM head MatMul output: tied embedding table}
    matmuls: list[ConstMatMul]
    odd: int  # constant-fed MatMuls the quantizer cannot take (named in not_quantized)
    slices: dict[str, list[Slice]]
    not_quantized: list[dict]
    groups: dict[str, set[str]]  # precision group: MatMul node names

    def bits(self, cfg: QuantConfig) -> dict[str, int]:
        """{MatMul node name: bits} for every MatMul to quantize."""
        return {n: bits for g, nodes in self.groups.items() if (bits := group_bits(cfg, g)) for n in nodes}


def plan_quantization(
    model: onnx.ModelProto, cfg: QuantConfig, reference: nn.Module | SeededWeights, load: Callable = numpy_helper.to_array
) -> Plan:
    """Prepare the MatMuls (in place) and sort them into precision groups; ``reference`` is the PyTorch model
    the graph was exported from or its ``SeededWeights`` (to map weights to parameters)."""
    tied = prepare_matmuls(model, load)
    matmuls, odd = const_matmuls(model.graph)
    slices = parameter_slices(model.graph, matmuls, reference, load)
    not_quantized = [{"node": n, "reason": r} for n, r in odd]
    groups: dict[str, set[str]] = {"body": set(), "down": set(), "head": set()}
    for mm in matmuls:
        params = [s[0] for s in slices.get(mm.output, [])]
        if params:
            groups[weight_group(params)].add(mm.node)
        else:
            not_quantized.append({"node": mm.node, "reason": "weight matches no model parameter, so validate could not check it"})
    if groups["head"] and cfg.head_bits is None:
        not_quantized += [{"node": n, "reason": "LM head kept float (--lm-head float)"} for n in sorted(groups["head"])]
    return Plan(tied, matmuls, len(odd), slices, not_quantized, groups)


def quantize_graph(
    model: onnx.ModelProto, cfg: QuantConfig, target: str, reference: nn.Module | SeededWeights
) -> tuple[onnx.ModelProto, dict]:
    """Quantize ``model`` (float, external data loaded) whole, one ORT quantizer pass per precision group:
    the reference the streamed quantization (``quant/folder.py``, what builds use) is tested against.
    Returns (model, build.json summary)."""
    plan = plan_quantization(model, cfg, reference)
    for group, nodes in plan.groups.items():
        bits = group_bits(cfg, group)
        if nodes and bits:
            model = quantize_nodes(model, cfg, target, bits, nodes)
    return model, summarize(model, cfg, target, plan, embedding_note(model, plan.tied, target, cfg))


def summarize(model: onnx.ModelProto, cfg: QuantConfig, target: str, plan: Plan, embedding: str) -> dict:
    """build.json's ``quantization`` for the quantized graph."""
    body, head = plan.groups["body"] | plan.groups["down"], plan.groups["head"]
    quantized = {mm.output: mm.node for mm in plan.matmuls if mm.node in body | (head if cfg.head_bits else set())}
    return {
        **cfg.to_dict(),
        "quantizer": _quantizer_name(cfg, target),
        "matmuls": {"constant_weight": len(plan.matmuls) + plan.odd, "quantized": len(quantized), "head": sorted(head)},
        "not_quantized": plan.not_quantized,
        "embedding": embedding,
        "embedding_quantized": embedding.startswith(GBQ_NOTE),
        "weights": {out: [list(s) for s in plan.slices[out]] for out in sorted(quantized)},
        "op_counts": dict(sorted(Counter(n.op_type for n in model.graph.node if n.op_type in QUANT_OPS).items())),
    }


def embedding_note(model: onnx.ModelProto, tied: dict[str, str], target: str, cfg: QuantConfig) -> str:
    if not tied:
        return "embedding table kept float: not tied to the LM head (a Gather reads only the rows it needs)"
    if cfg.head_bits is None:
        return "embedding table kept float: tied to a float LM head (--lm-head float)"
    if target != "ort":
        return f"embedding table kept float: GatherBlockQuantized is a com.microsoft op (--target {target})"
    (head_output, table), *_ = tied.items()
    return tie_embedding(model, head_output, table)  # reads the head's packed weight only if it is a MatMulNBits


QUANT_OPS = ("MatMulNBits", "DequantizeLinear", "GatherBlockQuantized", "MatMul")


def _quantizer_name(cfg: QuantConfig, target: str) -> str:
    import onnxruntime

    ort_q = f"onnxruntime {onnxruntime.__version__} MatMulNBitsQuantizer"
    int8_dq = "yamlllm-export per-channel symmetric int8 (DequantizeLinear, axis 1)"
    if target == "ort":
        return f"{ort_q} (HQQ algorithm; 8-bit weights DEFAULT)" if cfg.algo == "hqq" else f"{ort_q} (DEFAULT algorithm: rtn)"
    if target == "onnx" and cfg.bits == 4:
        return f"{ort_q} (DEFAULT algorithm: rtn, QDQ format); 8-bit weights: {int8_dq}"
    return int8_dq
