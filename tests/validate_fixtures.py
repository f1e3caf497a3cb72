"""Helpers for the ``validate`` tests: copy a built folder, break its ``model.onnx`` the way real exports
break (cache fed at the wrong offset, padding mask dropped, wrong RoPE tables, precision lost, ...), and
run ``validate_folder`` with small, fast settings.

Each break edits the good graph with the ``onnx`` package and leaves ``model.yaml`` and ``build.json``
alone, so the reference is still the right model and only the graph is wrong.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from yamlllm_export.runtime.folder_check import FILES, check_files, record_files
from yamlllm_export.runtime.session import graph_nodes
from yamlllm_export.validate.runner import ValidateOptions, validate_folder

FAST = {"steps": 3, "batch": 3, "prompt_len": 8}  # lengths 8/6/4; long context: max_positions - 3 + 3 steps
BIG = np.iinfo(np.int64).max


def copy_folder(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def edit_graph(folder: Path, edit: Callable[[onnx.ModelProto], None]) -> Path:
    """Apply ``edit`` to ``folder/model.onnx`` in place (weights stay inline), as if the build had written it."""
    model = onnx.load(str(folder / "model.onnx"))
    edit(model)
    onnx.save(model, str(folder / "model.onnx"))
    return rerecord(folder)


def assert_recorded(folder: Path) -> None:
    """build.json records every file the build left in ``folder`` (reports of later runs aside) with the hashes
    of its final bytes: quantized and kept-quantized folders are rewritten after the export."""
    files = json.loads((folder / "build.json").read_text())[FILES]
    written = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} - {"build.json"}
    assert set(files) == {n for n in written if not n.startswith(("parity/", "bench/"))}, (sorted(files), sorted(written))
    check_files(folder, files, full=True)


def rerecord(folder: Path) -> Path:
    """build.json's file hashes made to match the folder's files: the break stands for an exporter bug that wrote
    these bytes, which parity must catch (a file changed after the build is refused before any check)."""
    info = json.loads((folder / "build.json").read_text())
    info[FILES] = record_files(folder)
    (folder / "build.json").write_text(json.dumps(info))
    return folder


def edit_build_json(folder: Path, **weights: object) -> None:
    info = json.loads((folder / "build.json").read_text())
    info["weights"].update(weights)
    (folder / "build.json").write_text(json.dumps(info))


def run(folder: Path, report_dir: Path, **options: object) -> object:
    """``validate_folder`` on the CPU with the FAST settings (overridable)."""
    return validate_folder(folder, ValidateOptions(**{"eps": ("cpu",), **FAST, **options, "report_dir": report_dir}))


def failed(report: object) -> set[str]:
    return {r.check for r in report.results if r.status == "fail"}


def row(report: object, check: str, ep: str = "cpu") -> object:
    return next(r for r in report.results if r.check == check and r.ep in (ep, "-"))


# --- graph surgery -------------------------------------------------------------------------------


def _const(name: str, values: list[int]) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=helper.make_tensor(name, onnx.TensorProto.INT64, [len(values)], values))


def _producer_index(graph: onnx.GraphProto, tensor: str) -> int:
    return next(i for i, n in enumerate(graph.node) if tensor in n.output)


def wrap_output(model: onnx.ModelProto, tensor: str, make: Callable[[str, str], list[onnx.NodeProto]]) -> None:
    """The node producing ``tensor`` now writes ``tensor_orig``; ``make(orig, tensor)`` computes ``tensor`` from it."""
    graph = model.graph
    i = _producer_index(graph, tensor)
    producer = graph.node[i]
    orig = f"{tensor}_orig"
    producer.output[list(producer.output).index(tensor)] = orig
    for k, node in enumerate(make(orig, tensor)):
        graph.node.insert(i + 1 + k, node)


def rewire_input(model: onnx.ModelProto, name: str, make: Callable[[str, str], list[onnx.NodeProto]]) -> None:
    """Every consumer of graph input ``name`` reads ``make(name, new)``'s result instead."""
    graph = model.graph
    new = f"{name}_broken"
    for node in all_nodes(graph):  # If bodies read outer values by name too
        for k, inp in enumerate(node.input):
            if inp == name:
                node.input[k] = new
    for k, node in enumerate(make(name, new)):
        graph.node.insert(k, node)


def shift_cache(model: onnx.ModelProto) -> None:
    """Layer 0's past is read one slot off (drop the oldest entry, repeat the newest): a wrong cache offset."""
    for kv in ("key", "value"):
        name = f"past_key_values.0.{kv}"
        p = name.replace(".", "_")

        def make(src: str, dst: str, p: str = p) -> list[onnx.NodeProto]:
            return [
                _const(f"{p}_one", [1]), _const(f"{p}_last", [-1]), _const(f"{p}_end", [BIG]), _const(f"{p}_axis", [2]),
                helper.make_node("Slice", [src, f"{p}_one", f"{p}_end", f"{p}_axis"], [f"{p}_tail"]),
                helper.make_node("Slice", [src, f"{p}_last", f"{p}_end", f"{p}_axis"], [f"{p}_newest"]),
                helper.make_node("Concat", [f"{p}_tail", f"{p}_newest"], [dst], axis=2),
            ]  # fmt: skip

        rewire_input(model, name, make)


def drop_padding_mask(model: onnx.ModelProto) -> None:
    """The attention bias (built from attention_mask) is replaced by zeros: pads are attended to."""

    def make(src: str, dst: str) -> list[onnx.NodeProto]:
        zero = helper.make_node("Constant", [], ["bias_zero"], value=helper.make_tensor("bias_zero", onnx.TensorProto.FLOAT, [], [0.0]))
        return [zero, helper.make_node("Mul", [src, "bias_zero"], [dst])]

    wrap_output(model, "attention_bias", make)


def set_rope_tables(model: onnx.ModelProto, *, theta: float, from_position: int = 0) -> None:
    """Rewrite the RoPE cos/sin tables from ``from_position`` on with another ``theta`` (0: no rotation)."""
    for init in model.graph.initializer:
        if init.name.endswith(("rotary.cos", "rotary.sin")):
            table = numpy_helper.to_array(init).copy()
            rows, half = table.shape
            if theta:
                angles = np.outer(np.arange(rows), theta ** (-np.arange(half) / half))
                wrong = np.cos(angles) if init.name.endswith("cos") else np.sin(angles)
            else:
                wrong = np.full_like(table, 1.0 if init.name.endswith("cos") else 0.0)
            table[from_position:] = wrong[from_position:]
            init.CopyFrom(numpy_helper.from_array(table.astype(np.float32), init.name))


ATTENTION_OPS = ("GroupQueryAttention", "Attention", "MultiHeadAttention")


def all_nodes(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """The graph's nodes and those of its If / Loop bodies, depth first (runtime/session.py's walk)."""
    return list(graph_nodes(graph))


GQA_POSITIONS = 9  # com.microsoft.GroupQueryAttention's position_ids input


def scale_softmax(model: onnx.ModelProto, factor: float, head_dim: int) -> int:
    """The softmax scale × ``factor``: the ``scale`` attribute of fused attention nodes (0 means 1/√head_dim),
    and the scalar 1/√head_dim initializers the portable graph multiplies its scores by. Returns the edits."""
    default, edits = 1.0 / np.sqrt(head_dim), 0
    for node in all_nodes(model.graph):  # If bodies too (a half-precision ort build's run-time choice)
        if node.op_type in ATTENTION_OPS:
            attr = next((a for a in node.attribute if a.name == "scale"), None)
            if attr is None:
                attr = node.attribute.add()
                attr.name, attr.type = "scale", onnx.AttributeProto.FLOAT
            attr.f = (attr.f or default) * factor
            edits += 1
    for init in model.graph.initializer:
        value = numpy_helper.to_array(init)
        if value.size == 1 and value.dtype == np.float32 and np.isclose(value.item(), default, rtol=1e-6):
            init.CopyFrom(numpy_helper.from_array((value * factor).astype(np.float32), init.name))
            edits += 1
    return edits


def swap_rotary_halves(model: onnx.ModelProto) -> int:
    """rotate_half(x) = (x₂, -x₁) instead of (-x₂, x₁): every rotation turns the other way (sin negated)."""
    edits = 0
    for init in model.graph.initializer:
        if init.name.endswith("rotary.sin"):
            init.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(init), init.name))
            edits += 1
    return edits


def decode_position_off_by_one(model: onnx.ModelProto) -> int:
    """A decode step's token is rotated as if one position later (position = past length + 1): the positions
    every consumer reads (the graph input, or the ones GroupQueryAttention gets built from the mask) get +1
    when one token is fed. Returns how many position tensors were shifted."""
    graph = model.graph
    sources = {"position_ids"} if any("position_ids" in n.input for n in graph.node) else set()
    sources |= {n.input[GQA_POSITIONS] for n in all_nodes(graph) if n.op_type == "GroupQueryAttention" and len(n.input) > GQA_POSITIONS}
    sources.discard("")
    for k, src in enumerate(sorted(sources)):
        p, new = f"obo{k}", f"obo{k}_shifted"
        consumers = [n for n in graph.node if src in n.input]
        for node in consumers:
            node.input[:] = [new if x == src else x for x in node.input]
        nodes = [
            _const(f"{p}_one_i", [1]), _const(f"{p}_two", [2]),
            helper.make_node("Shape", ["input_ids"], [f"{p}_shape"]),
            helper.make_node("Slice", [f"{p}_shape", f"{p}_one_i", f"{p}_two"], [f"{p}_len"]),
            helper.make_node("Equal", [f"{p}_len", f"{p}_one_i"], [f"{p}_decoding"]),
            helper.make_node("Cast", [f"{p}_decoding"], [f"{p}_step"], to=onnx.TensorProto.INT64),
            helper.make_node("Add", [src, f"{p}_step"], [new]),
        ]  # fmt: skip
        at = min(list(graph.node).index(n) for n in consumers)
        for j, node in enumerate(nodes):
            graph.node.insert(at + j, node)
    return len(sources)


def positions_counted_from_the_right(model: onnx.ModelProto) -> None:
    """position_ids = j - (S - real tokens): right for left padding and for decode steps, but a right-padded
    row's tokens get negative positions (an export that assumes left padding)."""

    def make(src: str, dst: str) -> list[onnx.NodeProto]:
        return [
            _const("rp_zero", [0]), _const("rp_one", [1]), _const("rp_two", [2]),
            helper.make_node("Shape", ["input_ids"], ["rp_shape"]),
            helper.make_node("Slice", ["rp_shape", "rp_one", "rp_two"], ["rp_len"]),  # (1,): S
            helper.make_node("Squeeze", ["rp_len"], ["rp_len0"]),
            helper.make_node("Range", ["rp_zero_s", "rp_len0", "rp_one_s"], ["rp_j"]),
            helper.make_node("Squeeze", ["rp_zero"], ["rp_zero_s"]),
            helper.make_node("Squeeze", ["rp_one"], ["rp_one_s"]),
            helper.make_node("ReduceSum", ["attention_mask", "rp_one"], ["rp_real"], keepdims=1),  # (B, 1)
            helper.make_node("Sub", ["rp_len", "rp_real"], ["rp_pads"]),
            helper.make_node("Sub", ["rp_j", "rp_pads"], [dst]),
        ]  # fmt: skip

    rewire_input(model, "position_ids", make)
    nodes = list(model.graph.node)  # Range reads the two scalars made after it: restore topological order
    rng = next(n for n in nodes if n.op_type == "Range" and n.output[0] == "rp_j")
    model.graph.node.remove(rng)
    model.graph.node.insert(next(i for i, n in enumerate(model.graph.node) if "rp_one_s" in n.output) + 1, rng)


def nan_logits(model: onnx.ModelProto, where: str) -> None:
    """Logits become NaN on every decode step (``where="decode"``), or at the pad positions (``"pads"``)."""

    def make(src: str, dst: str) -> list[onnx.NodeProto]:
        scalars = [
            helper.make_node("Constant", [], [f"nan_{v}"], value=helper.make_tensor(f"nan_{v}", onnx.TensorProto.FLOAT, [], [x]))
            for v, x in (("nan", float("nan")), ("zero", 0.0))
        ]
        shape = [
            _const("nan_one", [1]), _const("nan_two", [2]), _const("nan_end", [BIG]), _const("nan_axis", [1]),
            helper.make_node("Shape", ["input_ids"], ["nan_shape"]),
            helper.make_node("Slice", ["nan_shape", "nan_one", "nan_two"], ["nan_len"]),  # (1,): S
        ]  # fmt: skip
        if where == "decode":
            cond = [helper.make_node("Equal", ["nan_len", "nan_one"], ["nan_cond"])]  # (1,)
        else:  # the mask's last S columns are the new tokens': (B, S, 1)
            cond = [
                helper.make_node("Neg", ["nan_len"], ["nan_start"]),
                helper.make_node("Slice", ["attention_mask", "nan_start", "nan_end", "nan_axis"], ["nan_new"]),
                helper.make_node("Equal", ["nan_new", "nan_zero_i"], ["nan_pad"]),
                helper.make_node("Unsqueeze", ["nan_pad", "nan_two_axis"], ["nan_cond"]),
                _const("nan_zero_i", [0]), _const("nan_two_axis", [2]),
            ]  # fmt: skip
            cond = cond[-2:] + cond[:-2]
        add = [
            helper.make_node("Where", ["nan_cond", "nan_nan", "nan_zero"], ["nan_add"]),
            helper.make_node("Add", [src, "nan_add"], [dst]),
        ]
        return scalars + shape + cond + add

    wrap_output(model, "logits", make)


def round_logits_to_fp16(model: onnx.ModelProto) -> None:
    """Logits pass through float16 and back: precision lost on the way out."""

    def make(src: str, dst: str) -> list[onnx.NodeProto]:
        return [
            helper.make_node("Cast", [src], ["logits_half"], to=onnx.TensorProto.FLOAT16),
            helper.make_node("Cast", ["logits_half"], [dst], to=onnx.TensorProto.FLOAT),
        ]

    wrap_output(model, "logits", make)


def boost_token(model: onnx.ModelProto, token: int, amount: float, vocab: int) -> None:
    """One vocabulary entry gets a constant added to its logit (a leaked bias): greedy tokens change."""
    bias = np.zeros(vocab, dtype=np.float32)
    bias[token] = amount

    def make(src: str, dst: str) -> list[onnx.NodeProto]:
        const = helper.make_node("Constant", [], ["token_bias"], value=numpy_helper.from_array(bias, "token_bias"))
        return [const, helper.make_node("Add", [src, "token_bias"], [dst])]

    wrap_output(model, "logits", make)


def misspell_op(model: onnx.ModelProto) -> None:
    next(n for n in model.graph.node if n.op_type == "MatMul").op_type = "MatMull"


def truncate_lm_head(model: onnx.ModelProto) -> None:
    """The LM head's weight loses half its rows: MatMul's inner dimensions no longer agree."""
    weight = next(n for n in model.graph.node if "logits" in n.output).input[1]
    init = next(i for i in model.graph.initializer if i.name == weight)
    array = numpy_helper.to_array(init)
    init.CopyFrom(numpy_helper.from_array(array[: array.shape[0] // 2].copy(), weight))
    for info in model.graph.value_info:  # keep the declared shape consistent, so only inference can object
        if info.name == weight:
            info.type.tensor_type.shape.dim[0].dim_value = array.shape[0] // 2


def fix_past_length(model: onnx.ModelProto, length: int = 5) -> None:
    dim = next(i for i in model.graph.input if i.name == "past_key_values.0.key").type.tensor_type.shape.dim[2]
    dim.Clear()
    dim.dim_value = length


def set_default_opset(model: onnx.ModelProto, version: int) -> None:
    next(o for o in model.opset_import if o.domain in ("", "ai.onnx")).version = version


def to_external_data(folder: Path, location: str = "model.onnx.data") -> None:
    """Re-save ``model.onnx`` with its weights in ``location`` (relative to the folder); small tensors (shape
    constants) stay inline, as in the writer's own external-data folders (ORT needs them inline)."""
    model = onnx.load(str(folder / "model.onnx"))
    onnx.save(model, str(folder / "model.onnx"), save_as_external_data=True, location=location, size_threshold=1024)
    rerecord(folder)


def point_external_data(folder: Path, location: str) -> None:
    """Rewrite where ``model.onnx`` says its external data lives, leaving the data file where it is."""
    model = onnx.load(str(folder / "model.onnx"), load_external_data=False)
    for init in model.graph.initializer:
        for entry in init.external_data:
            if entry.key == "location":
                entry.value = location
    onnx.save(model, str(folder / "model.onnx"))
    rerecord(folder)


def assert_parity(folder: Path, report_dir: Path, *, skip: tuple[str, ...] = (), steps: int = 8) -> object:
    """The feature grids' parity check: ``validate`` on the CPU (left-padded prefill, ``steps`` decode steps,
    right padding, incremental vs recompute, long context, tokens; fp32 max|Δ|/σ ≤ ε·√L·(16·√d + T)). Every check passes, but those in
    ``skip``, which must be reported not applicable (``n/a``) and nothing else."""
    report = run(folder, report_dir, steps=steps)
    bad = [(r.check, r.status, r.measured, r.detail) for r in report.results if r.status != ("n/a" if r.check in skip else "pass")]
    assert not bad, bad
    assert report.exit_code == 0
    return report
