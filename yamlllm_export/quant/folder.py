"""Quantize the ``model.onnx`` of a (temporary) build folder in place, one weight at a time, and record the
bytes it takes.

The graph is read without its weights. Each MatMul to quantize goes through the same quantizer as
``apply.quantize_graph`` (ORT's, or the per-channel int8 one) on a one-node model holding only its weight,
read from the float data file by offset; the quantized tensors are appended to a new data file at once. So
the memory is the graph plus one weight (and, for a tied head, its transposed copy), whatever the model's
size, and the result equals quantizing the whole model (tests/test_quant_streamed.py).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import onnx
from onnx import TensorProto, numpy_helper
from onnx.external_data_helper import load_external_data_for_tensor, set_external_data, uses_external_data

from yamlllm_export.quant.apply import Plan, embedding_note, plan_quantization, quantize_nodes, summarize
from yamlllm_export.quant.config import QuantConfig

if TYPE_CHECKING:
    from torch import nn

    from yamlllm_export.model.seeded import SeededWeights

SIZE_THRESHOLD = 1024  # onnx.save_model's: a tensor whose raw bytes' sys.getsizeof reaches it goes external


def quantize_folder(folder: Path, cfg: QuantConfig, target: str, reference: nn.Module | SeededWeights, external_data: str) -> dict:
    """Rewrite ``folder/model.onnx`` (+ its external data) quantized; ``reference`` is the PyTorch model or the
    seeded build's ``SeededWeights``. Returns build.json's ``quantization``."""
    path, data = folder / "model.onnx", folder / external_data
    float_bytes = path.stat().st_size + data.stat().st_size
    model = onnx.load(str(path), load_external_data=False)
    load = lambda t: numpy_helper.to_array(_loaded(t, folder))  # noqa: E731
    plan = plan_quantization(model, cfg, reference, load)
    fresh = folder / f"{external_data}.quantized"
    with fresh.open("wb") as out:
        sink = _Sink(out, external_data)
        embedding = _quantize_each(model, cfg, target, plan, folder, sink)
        summary = summarize(model, cfg, target, plan, embedding)
        _externalize_rest(model, folder, sink)
    path.unlink()
    data.unlink()
    fresh.rename(data)
    onnx.save_model(model, str(path))
    summary["bytes"] = {"float": float_bytes, "quantized": path.stat().st_size + data.stat().st_size}
    return summary


class _Sink:
    """Appends tensors' raw bytes to the new data file, leaving each an external reference."""

    def __init__(self, out: BinaryIO, location: str) -> None:
        self.out, self.location = out, location
        self.written: set[str] = set()

    def put(self, tensor: TensorProto) -> None:
        if not tensor.HasField("raw_data") or sys.getsizeof(tensor.raw_data) < SIZE_THRESHOLD:
            return  # stays inline, as onnx.save_model leaves it
        offset = self.out.tell()
        self.out.write(tensor.raw_data)
        set_external_data(tensor, self.location, offset, self.out.tell() - offset)
        tensor.ClearField("raw_data")
        tensor.data_location = TensorProto.EXTERNAL
        self.written.add(tensor.name)


def _loaded(tensor: TensorProto, folder: Path) -> TensorProto:
    """A copy of ``tensor`` with its bytes in it (read by offset from the float data file)."""
    copy = TensorProto()
    copy.CopyFrom(tensor)
    if uses_external_data(copy):
        load_external_data_for_tensor(copy, str(folder))
        del copy.external_data[:]
        copy.data_location = TensorProto.DEFAULT
    return copy


def _mini_model(model: onnx.ModelProto, nodes: list[onnx.NodeProto], inits: list[TensorProto]) -> onnx.ModelProto:
    mini = onnx.ModelProto(ir_version=model.ir_version, producer_name=model.producer_name)
    mini.opset_import.extend(model.opset_import)
    mini.graph.name = model.graph.name
    mini.graph.node.extend(nodes)
    mini.graph.initializer.extend(inits)
    return mini


def _adopt_opsets(model: onnx.ModelProto, mini: onnx.ModelProto) -> None:
    """The quantizer's opset and IR version changes (com.microsoft, opset 21 for int4), as it makes them."""
    for op in mini.opset_import:
        same = next((o for o in model.opset_import if o.domain == op.domain), None)
        if same is None:
            model.opset_import.append(op)
        else:
            same.version = op.version
    model.ir_version = mini.ir_version


def _quantize_each(model: onnx.ModelProto, cfg: QuantConfig, target: str, plan: Plan, folder: Path, sink: _Sink) -> str:
    """Replace each planned MatMul by its quantized nodes, in place, in the graph's order; returns the
    embedding note (a tied table becomes a GatherBlockQuantized together with its head)."""
    graph = model.graph
    nodes = list(graph.node)
    inits = {i.name: i for i in graph.initializer}
    bits = plan.bits(cfg)
    tied = (target == "ort" and cfg.head_bits is not None and plan.tied) or {}
    (head_output, table), *_ = tied.items() if tied else [(None, None)]
    replaced: dict[int, list[onnx.NodeProto]] = {}
    added: list[TensorProto] = []
    embedding = None
    for index, node in enumerate(nodes):
        if node.name not in bits:
            continue
        members = [index]
        given = [_loaded(inits[node.input[1]], folder)]
        if head_output in node.output:  # the tied table's Gathers go along (GatherBlockQuantized reuses the head's bytes)
            members = [i for i, n in enumerate(nodes) if n.op_type == "Gather" and n.input[0] == table] + members
            given.append(inits[table])  # not read: only dropped when no node reads it any more
        mini = _mini_model(model, [nodes[i] for i in members], given)
        mini = quantize_nodes(mini, cfg, target, bits[node.name], {node.name})
        if head_output in node.output:
            embedding = embedding_note(mini, plan.tied, target, cfg)
        _adopt_opsets(model, mini)
        replaced.update(_runs(list(mini.graph.node), {o: i for i in members for o in nodes[i].output}))
        for t in mini.graph.initializer:
            if t.name not in {g.name for g in given}:
                sink.put(t)
                added.append(TensorProto())
                added[-1].CopyFrom(t)  # not a view into ``mini``, which would keep its float weight alive
    graph.ClearField("node")
    graph.node.extend(n for i, node in enumerate(nodes) for n in replaced.get(i, [node]))
    read = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    kept = [t for t in inits.values() if t.name in read]
    graph.ClearField("initializer")
    graph.initializer.extend([*kept, *(t for t in added if t.name in read)])
    return embedding if embedding is not None else embedding_note(model, plan.tied, target, cfg)


def _runs(result: list[onnx.NodeProto], original: dict[str, int]) -> dict[int, list[onnx.NodeProto]]:
    """Split a one-node model's quantized nodes among the original nodes: each run of nodes ends with the one
    that writes an original node's output (the quantizer keeps the output names)."""
    runs: dict[int, list[onnx.NodeProto]] = {}
    run: list[onnx.NodeProto] = []
    for n in result:
        run.append(onnx.NodeProto())
        run[-1].CopyFrom(n)  # a view would keep the one-node model, and its float weight, alive
        owner = next((original[o] for o in n.output if o in original), None)
        if owner is not None:
            runs[owner], run = run, []
    if run:
        raise ValueError(f"quantized nodes {[n.name for n in run]} write no output of the nodes they replace")
    return runs


def _externalize_rest(model: onnx.ModelProto, folder: Path, sink: _Sink) -> None:
    """Copy every other large initializer (the float ones kept, the prepared copies) into the new data file."""
    for t in model.graph.initializer:
        if t.name in sink.written:
            continue
        if uses_external_data(t):
            t.CopyFrom(_loaded(t, folder))
        sink.put(t)
