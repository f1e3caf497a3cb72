"""A seeded build that never holds the whole model: trace a storage-less model, make weights when saving.

The model is traced with fake parameters (shapes and dtypes only). Each of the exported graph's weight
initializers then becomes an ``ir.LazyTensor`` that regenerates that one parameter
(``model/seeded.py``) when ``ir.save`` writes it to ``model.onnx.data``, so the build's memory is the
graph plus the largest tensor, whatever the model's size. The graph passes that read weight values do so
lazily: ``fold_lazy_transposes`` below (the constant folder's own rule for a weight's single-use
Transpose, without computing it) and the MatMul fusion (``lowerings/fuse_matmul.py``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx_ir as ir
import torch
from onnx_ir.tensor_adapters import TorchTensor
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode

from yamlllm_export.model.builders import DTYPES, skeleton
from yamlllm_export.model.seeded import SeededWeights
from yamlllm_export.spec.types import ModelSpec

PREFIX = "model."  # FlatIO holds the model as ``self.model``: initializer names are state-dict names under it


def fake_model(spec: ModelSpec, dtype: str) -> nn.Module:
    """The model with fake (storage-less) parameters and buffers, for tracing only."""
    model = skeleton(spec).to(DTYPES[dtype])  # float parameters and buffers, as build_model casts them
    with FakeTensorMode(allow_non_fake_inputs=True):
        model = model.to_empty(device="cpu")
    if spec.tie_word_embeddings:  # to_empty re-creates parameters; re-tie as build_model does
        model.lm_head.weight = model.embed.weight
    return model.eval()


def attach_weights(graph: ir.Graph, weights: SeededWeights) -> int:
    """Give every traced initializer its value: a lazy parameter or a computed buffer; returns how many."""
    params = dict(weights.model.named_parameters(remove_duplicate=False))
    attached = 0
    for value in graph.initializers.values():
        key = (value.name or "").removeprefix(PREFIX)
        if key in params:
            fake = value.const_value
            if not isinstance(fake, ir.Tensor):  # the exporter's initializers of a fake model: shapes and dtypes, no data
                raise TypeError(f"attach_weights: initializer {value.name} holds {type(fake).__name__}, not a tensor")
            value.const_value = ir.LazyTensor(_regenerated(weights, key), dtype=fake.dtype, shape=fake.shape, name=value.name)
        elif key in weights.buffers:
            value.const_value = TorchTensor(weights.buffers[key], name=value.name)
        elif isinstance(getattr(value.const_value, "raw", None), torch._subclasses.FakeTensor):
            raise ValueError(f"exported initializer {value.name} is neither a parameter nor a buffer of the model")
        else:
            continue
        attached += 1
    return attached


def _regenerated(weights: SeededWeights, key: str) -> Callable[[], ir.TensorProtocol]:
    return lambda: TorchTensor(weights.value(key))


def _transposed(tensor: ir.TensorProtocol, perm: tuple[int, ...]) -> Callable[[], ir.TensorProtocol]:
    return lambda: ir.tensor(np.ascontiguousarray(np.transpose(tensor.numpy(), perm)))


def fold_lazy_transposes(graph: ir.Graph) -> int:
    """A Transpose whose only input is a lazy weight read by nothing else becomes a lazy transposed weight,
    as the constant folder would fold it (it always folds a Transpose of a single-use initializer) but
    without computing it now. Returns how many."""
    folded = 0
    for node in list(graph):
        source = node.inputs[0] if node.op_type == "Transpose" and node.domain in ("", "ai.onnx") and node.inputs else None
        if source is None or not isinstance(source.const_value, ir.LazyTensor) or not source.is_initializer():
            continue
        if len(source.uses()) != 1 or source.is_graph_output():
            continue
        tensor, out = source.const_value, node.outputs[0]
        perm = node.attributes["perm"].as_ints() if "perm" in node.attributes else list(reversed(range(len(tensor.shape))))
        lazy = ir.LazyTensor(
            _transposed(tensor, tuple(perm)),
            dtype=tensor.dtype,
            shape=ir.Shape([tensor.shape[i] for i in perm]),
        )
        name, out.name = out.name, None
        weight = ir.Value(name=name, shape=lazy.shape, type=ir.TensorType(lazy.dtype), const_value=lazy)
        graph.register_initializer(weight)
        ir.convenience.replace_all_uses_with(out, weight)
        graph.remove(node, safe=True)
        if source.name is not None:
            del graph.initializers[source.name]
        folded += 1
    return folded
