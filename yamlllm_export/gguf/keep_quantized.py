"""``build --weights FILE.gguf --keep-quantized``: after export, every MatMul whose weight is made of
GGUF tensors stored in an exact type (matmul_nbits.py) becomes ``com.microsoft.MatMulNBits`` fed with
llama.cpp's own codes and scales. The exporter fuses and renames weights (q/k/v packed into one MatMul),
so weights are found by value: each MatMul's B columns are matched, in order, against the dequantized
weights they came from; a fused B becomes one MatMulNBits per part and a Concat."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from yamlllm_export.gguf.matmul_nbits import BLOCK, EXACT_TYPES, NBits, NotExact, pack
from yamlllm_export.gguf.reader import read_gguf
from yamlllm_export.gguf.tensors import FLOAT_TYPES, Piece, dequantized, pieces

ACCURACY_LEVEL = 0  # float32 compute on CPU: the weights stay exactly gguf's (level 4 quantizes activations to int8)


def _packed_weights(gguf_path: Path) -> tuple[dict[str, tuple[np.ndarray, NBits]], list[str]]:
    """our name → (its float32 weight, its MatMulNBits form) for every 2-D quantized weight; notes."""
    f = read_gguf(gguf_path)
    out: dict[str, tuple[np.ndarray, NBits]] = {}
    skipped: Counter[str] = Counter()
    cache: dict[str, np.ndarray] = {}
    for ours, p in pieces(f).items():
        t = p.source
        if t.qtype in FLOAT_TYPES or t.data.ndim != 2 or t.cols % BLOCK:
            continue
        if t.name not in cache:
            cache[t.name] = dequantized(t, f.path)
        values = _rows(cache[t.name], p)
        try:
            out[ours] = (values, pack(t.qtype, _rows(np.asarray(t.data), p), t.cols, values))
        except NotExact:
            skipped[t.qtype] += 1
    notes = [
        f"{n} {q} weights dequantized to float (no exact MatMulNBits form; kept exactly: {', '.join(EXACT_TYPES)})"
        for q, n in sorted(skipped.items())
    ]
    return out, notes


def _rows(a: np.ndarray, p: Piece) -> np.ndarray:
    return a[p.index] if p.index is not None else a


def keep_quantized(model: Any, gguf_path: str | Path) -> dict[str, Any]:
    """Rewrite ``model`` (an ``onnx.ModelProto`` with its weights loaded) in place; returns a summary for
    build.json: MatMul nodes replaced, weights kept per GGUF type, notes."""
    from onnx import helper, numpy_helper

    packed, notes = _packed_weights(Path(gguf_path))
    by_first_row: dict[bytes, list[str]] = {}
    for name, (w, _) in packed.items():
        by_first_row.setdefault(w[0].tobytes(), []).append(name)
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    uses = Counter(x for n in graph.node for x in n.input)
    new_nodes, new_inits, dropped = [], [], set()
    replaced, kept = 0, Counter[str]()
    for node in graph.node:
        b = node.input[1] if node.op_type == "MatMul" and len(node.input) == 2 else None
        init = inits.get(b) if b else None
        if init is None or len(init.dims) != 2 or uses[b] != 1:
            new_nodes.append(node)
            continue
        bt = np.ascontiguousarray(numpy_helper.to_array(init).T)  # (N, K): rows are our weights' rows
        parts = _match(bt, packed, by_first_row)
        if parts is None:
            new_nodes.append(node)
            continue
        outs = []
        for i, name in enumerate(parts):
            nbits = packed[name][1]
            out = node.output[0] if len(parts) == 1 else f"{node.name}_nbits_{i}"
            nodes, tensors = _matmul_nbits(node.input[0], out, f"{node.name}.{name}", nbits, bt.shape[1])
            new_nodes += nodes
            new_inits += tensors
            outs.append(out)
            kept[_qtype(nbits)] += 1
        if len(parts) > 1:
            new_nodes.append(helper.make_node("Concat", outs, [node.output[0]], name=f"{node.name}_concat", axis=-1))
        dropped.add(b)
        replaced += 1
    del graph.node[:]
    graph.node.extend(new_nodes)
    keep = [i for i in graph.initializer if i.name not in dropped]
    del graph.initializer[:]
    graph.initializer.extend(keep + new_inits)
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return {"matmuls_replaced": replaced, "weights_kept": dict(sorted(kept.items())), "accuracy_level": ACCURACY_LEVEL, "notes": notes}


def _qtype(n: NBits) -> str:
    return f"{n.bits}-bit" + (" + offsets" if n.offsets is not None else " float zero points" if n.zero_points is not None else "")


def _match(bt: np.ndarray, packed: dict[str, tuple[np.ndarray, NBits]], by_first_row: dict[bytes, list[str]]) -> list[str] | None:
    """Our weights whose rows, concatenated in order, are exactly ``bt``; None if any column is not one."""
    parts, row = [], 0
    while row < bt.shape[0]:
        for name in by_first_row.get(bt[row].tobytes(), []):
            w = packed[name][0]
            if w.shape[1] == bt.shape[1] and row + w.shape[0] <= bt.shape[0] and np.array_equal(bt[row : row + w.shape[0]], w):
                parts.append(name)
                row += w.shape[0]
                break
        else:
            return None
    return parts


def _matmul_nbits(x: str, out: str, stem: str, n: NBits, k: int) -> tuple[list[Any], list[Any]]:
    from onnx import helper, numpy_helper

    rows, blocks = n.scales.shape
    names = [f"{stem}.codes", f"{stem}.scales"]
    tensors = [numpy_helper.from_array(n.codes, names[0]), numpy_helper.from_array(n.scales.reshape(-1), names[1])]
    if n.zero_points is not None:
        names.append(f"{stem}.zero_points")
        tensors.append(numpy_helper.from_array(n.zero_points.reshape(-1).astype(np.float32), names[2]))
    attrs = {"K": k, "N": rows, "bits": n.bits, "block_size": BLOCK, "accuracy_level": ACCURACY_LEVEL}
    if n.offsets is None:
        return [helper.make_node("MatMulNBits", [x, *names], [out], name=f"{stem}.MatMulNBits", domain="com.microsoft", **attrs)], tensors
    # y = MatMulNBits(x) - (x summed over each 32-wide block) @ offsetsᵀ
    shape, offsets_t = f"{stem}.block_shape", f"{stem}.offsets_t"
    tensors += [
        numpy_helper.from_array(np.array([0, 0, blocks, BLOCK], np.int64), shape),
        numpy_helper.from_array(np.ascontiguousarray(n.offsets.T.astype(np.float32)), offsets_t),
        numpy_helper.from_array(np.array([-1], np.int64), f"{stem}.last_axis"),
    ]
    nodes = [
        helper.make_node("MatMulNBits", [x, *names], [f"{stem}.scaled"], name=f"{stem}.MatMulNBits", domain="com.microsoft", **attrs),
        helper.make_node("Reshape", [x, shape], [f"{stem}.blocks"], name=f"{stem}.Reshape"),  # (B, S, K/32, 32)
        helper.make_node(
            "ReduceSum", [f"{stem}.blocks", f"{stem}.last_axis"], [f"{stem}.block_sums"], name=f"{stem}.ReduceSum", keepdims=0
        ),
        helper.make_node("MatMul", [f"{stem}.block_sums", offsets_t], [f"{stem}.offset_terms"], name=f"{stem}.offsets"),
        helper.make_node("Sub", [f"{stem}.scaled", f"{stem}.offset_terms"], [out], name=f"{stem}.Sub"),
    ]
    return nodes, tensors
