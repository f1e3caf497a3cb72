"""ONNX Runtime sessions for a model folder, quiet on machines without a GPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from yamlllm_export.export.io_contract import IOContract


def cpu_session(model_dir: str | Path, *, threads: int = 0) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # errors only
    if threads:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(str(Path(model_dir) / "model.onnx"), opts, providers=["CPUExecutionProvider"])


def default_positions(mask: np.ndarray, new_tokens: int) -> np.ndarray:
    """cumsum(mask) - 1 clamped at 0, for the last ``new_tokens`` slots (the model's own default)."""
    return np.maximum(np.cumsum(mask, axis=-1) - 1, 0)[:, -new_tokens:].astype(np.int64)


def run_step(
    session: ort.InferenceSession, contract: IOContract, input_ids: np.ndarray, mask: np.ndarray, past: list[np.ndarray]
) -> tuple[np.ndarray, list[np.ndarray]]:
    """One forward of the exported graph → (logits, presents as a flat [k0, v0, k1, v1, ...] list)."""
    feeds = {"input_ids": input_ids.astype(np.int64), "attention_mask": mask.astype(np.int64)}
    if contract.has_position_ids:
        feeds["position_ids"] = default_positions(mask, input_ids.shape[1])
    feeds.update(zip(contract.past_names(), past, strict=True))
    logits, *presents = session.run(contract.output_names(), feeds)
    return logits, presents
