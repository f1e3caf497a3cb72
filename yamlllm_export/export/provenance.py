"""Where a build's weights came from, and the hash that proves a rebuilt reference is the same model."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from yamlllm_export.spec.types import ModelSpec


def spec_sha256(spec: ModelSpec) -> str:
    return hashlib.sha256(json.dumps(spec.to_dict(), sort_keys=True).encode()).hexdigest()


def weights_sha256(model: nn.Module) -> str:
    """sha256 over (name, dtype, shape, bytes) of every state-dict tensor, in name order."""
    return tensors_sha256(sorted(model.state_dict().items(), key=lambda item: item[0]))


def tensors_sha256(items: Iterable[tuple[str, torch.Tensor]]) -> str:
    """``weights_sha256`` of (name, tensor) pairs given in name order (a streamed build makes them one at a time)."""
    h = hashlib.sha256()
    for name, t in items:
        t = t.detach().contiguous().cpu()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")  # 0-d: a learned scalar
    return h.hexdigest()


def seed_source(seed: int, sha256: str) -> dict[str, Any]:
    return {"kind": "seed", "seed": seed, "torch_version": torch.__version__, "sha256": sha256}


def file_source(path: Any, model: nn.Module) -> dict[str, Any]:
    """A build from a weights file or HF folder: where it was and its bytes' hash (``validate`` reloads it)."""
    from pathlib import Path

    from yamlllm_export.export.weights_source import weights_fingerprint

    path = Path(path).resolve()
    return {"kind": "file", "path": str(path), "file_sha256": weights_fingerprint(path), "sha256": weights_sha256(model)}
