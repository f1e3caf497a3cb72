"""Which model parameters each constant MatMul weight of an exported graph holds.

The exporter folds ``x @ W.T`` into a MatMul with a constant (K, N) initializer, and the fusion pass
concatenates q/k/v and gate/up along N. Matching columns back to parameters (exact bytes) tells ``validate``
where to put the dequantized weights in the PyTorch reference, and finds the LM head. A constant weight that
matches no parameter is left float and named in build.json: its dequantized values could not be checked.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnx import numpy_helper
from torch import nn

if TYPE_CHECKING:
    from yamlllm_export.model.seeded import SeededWeights

Slice = tuple[str, int, int]  # (parameter name, first column, end column) of the (K, N) weight = parameter.T;
# the name of one expert of a stacked (E, out, in) parameter is "name[e]"


@dataclass(frozen=True)
class ConstMatMul:
    node: str  # node name
    output: str  # output tensor name: survives quantization (the new node writes the same tensor)
    weight: str  # initializer name of B
    shape: tuple[int, ...]


def const_matmuls(graph: onnx.GraphProto) -> tuple[list[ConstMatMul], list[tuple[str, str]]]:
    """(plain MatMuls whose B is a 2-D initializer, [(node, why not quantizable)] for other constant-fed MatMuls)."""
    inits = {i.name: tuple(i.dims) for i in graph.initializer}
    producers = {o: n for n in graph.node for o in n.output}
    found, odd = [], []
    for n in graph.node:
        if n.op_type != "MatMul" or n.domain not in ("", "ai.onnx"):
            continue
        b = n.input[1]
        if b in inits and len(inits[b]) == 2:
            found.append(ConstMatMul(n.name, n.output[0], b, inits[b]))
        elif b in inits:
            odd.append((n.name, f"weight {b} is {len(inits[b])}-D (the quantizer takes 2-D weights)"))
        elif b in producers and all(i in inits or i == "" for i in producers[b].input):
            odd.append((n.name, f"weight computed from constants by {producers[b].op_type} (not folded)"))
    for n in graph.node:
        if n.domain == "com.microsoft" and n.op_type == "MoE":
            odd.append((n.name, "com.microsoft.MoE: expert weights kept float (ORT's QMoE, the quantized MoE kernel, is not used)"))
    return found, odd


def _parameters(reference: nn.Module | SeededWeights) -> Iterator[tuple[str, np.ndarray]]:
    """(name, values) of every parameter, one at a time, Linear weights first (a tied head appears under its
    own Linear name too, and is preferred): of the PyTorch model, or of a seeded build's ``SeededWeights``
    (which regenerates each parameter when asked, so the model is never whole in memory)."""
    module = reference if isinstance(reference, nn.Module) else reference.model
    linear = {f"{name}.weight" for name, m in module.named_modules() if isinstance(m, nn.Linear)}
    names = sorted((name for name, _ in module.named_parameters(remove_duplicate=False)), key=lambda name: name not in linear)
    tensors = dict(module.named_parameters(remove_duplicate=False))
    for name in names:
        tensor = tensors[name].detach() if isinstance(reference, nn.Module) else reference.value(name)
        yield name, tensor.cpu().numpy()


def _digest(a: np.ndarray) -> bytes:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).digest()


def parameter_slices(
    graph: onnx.GraphProto,
    matmuls: list[ConstMatMul],
    reference: nn.Module | SeededWeights,
    load: Callable[[onnx.TensorProto], np.ndarray] = numpy_helper.to_array,
) -> dict[str, list[Slice]]:
    """{MatMul output name: column slices of its weight, each a parameter's transpose}; weights that do not
    split exactly into parameters are left out. ``reference``: the PyTorch model or ``SeededWeights``;
    ``load`` reads an initializer. Parameters are kept as (first row, shape, SHA-256 of the values), so
    only one parameter and one weight are in memory at a time."""
    params: dict[bytes, list[tuple[str, tuple[int, ...], bytes]]] = defaultdict(list)
    for name, a in _parameters(reference):
        if a.ndim == 2:
            params[a[0].tobytes()].append((name, a.shape, _digest(a)))
        elif a.ndim == 3:  # stacked experts (E, out, in): the graph multiplies by one expert at a time
            for e in range(len(a)):
                params[a[e, 0].tobytes()].append((f"{name}[{e}]", a[e].shape, _digest(a[e])))
    inits = {i.name: i for i in graph.initializer}
    out: dict[str, list[Slice]] = {}
    for mm in matmuls:
        w = load(inits[mm.weight])
        slices, col = [], 0
        while col < w.shape[1]:
            match = next(
                (
                    (name, shape)
                    for name, shape, digest in params.get(np.ascontiguousarray(w[:, col]).tobytes(), [])
                    if shape[1] == w.shape[0] and col + shape[0] <= w.shape[1] and _digest(w[:, col : col + shape[0]].T) == digest
                ),
                None,
            )
            if match is None:
                break
            slices.append((match[0], col, col + match[1][0]))
            col += match[1][0]
        if slices and col == w.shape[1]:
            out[mm.output] = slices
    return out
