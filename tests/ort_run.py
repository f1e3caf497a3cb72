"""Run a built folder's ``model.onnx`` on ONNX Runtime (CPU) with explicit inputs, optionally exposing an
intermediate tensor as an extra output, and the PyTorch reference on the same inputs: for tests that feed
what ``validate`` does not (custom position_ids, masks with holes, right padding with last-position logits)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from yamlllm_export.runtime.io_contract import IOContract
from yamlllm_export.spec.load import load_spec


def contract(folder: Path) -> IOContract:
    return IOContract.for_spec(load_spec(folder / "model.yaml"))


def session(folder: Path, extra_outputs: tuple[str, ...] = ()) -> ort.InferenceSession:
    """A CPU session; ``extra_outputs`` names intermediate tensors to return after the graph's own outputs."""
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if not extra_outputs:
        return ort.InferenceSession(str(folder / "model.onnx"), opts, providers=["CPUExecutionProvider"])
    model = onnx.load(str(folder / "model.onnx"))
    model.graph.output.extend(onnx.helper.make_empty_tensor_value_info(name) for name in extra_outputs)
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def feeds(
    folder: Path, ids: np.ndarray, mask: np.ndarray, position_ids: np.ndarray | None = None, past: list[np.ndarray] | None = None
) -> dict[str, np.ndarray]:
    """The graph's inputs: an empty cache unless ``past`` is given; position_ids default to cumsum(mask) − 1."""
    io = contract(folder)
    B, S = ids.shape
    if past is None:
        past = [np.zeros(io.cache_shape(name, B, 0), np.float32) for name in io.past_names()]
    out = {"input_ids": ids.astype(np.int64), "attention_mask": mask.astype(np.int64)}
    if io.has_position_ids:
        if position_ids is None:
            position_ids = np.maximum(np.cumsum(mask, -1) - 1, 0)[:, -S:]
        out["position_ids"] = position_ids.astype(np.int64)
    out.update(zip(io.past_names(), past, strict=True))
    return out


@torch.no_grad()
def reference_logits(
    model: torch.nn.Module, ids: np.ndarray, mask: np.ndarray, position_ids: np.ndarray | None = None, **kwargs: object
) -> np.ndarray:
    pos = None if position_ids is None else torch.from_numpy(position_ids.astype(np.int64))
    logits, _ = model(torch.from_numpy(ids.astype(np.int64)), torch.from_numpy(mask.astype(np.int64)), pos, **kwargs)
    return logits.float().numpy()


def prefill_then_decode(
    folder: Path, ids: np.ndarray, mask: np.ndarray, positions: np.ndarray | None, next_ids: np.ndarray, next_positions: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Logits of a prompt, then of one cached decode step (mask extended by a 1)."""
    sess = session(folder)
    outputs = sess.run(None, feeds(folder, ids, mask, positions))
    step_mask = np.concatenate([mask, np.ones((len(ids), 1), np.int64)], axis=1)
    past = outputs[1 : 1 + len(contract(folder).past_names())]
    step = sess.run(["logits"], feeds(folder, next_ids, step_mask, next_positions, past=past))[0]
    return outputs[0], step
