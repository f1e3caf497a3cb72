"""Rebuild the PyTorch reference of a model folder from ``model.yaml`` and build.json's weight source.

A seeded build is reproducible only with the same torch version (the RNG streams may change between
releases); the rebuilt weights' sha256 must equal the recorded one. Any mismatch is an error, never
ignored: parity against a different model would prove nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from yamlllm_export.errors import BuildError
from yamlllm_export.export.provenance import weights_sha256
from yamlllm_export.spec import load_spec

if TYPE_CHECKING:
    from yamlllm_export.model.decoder import DecoderLM


class WindowRecompute(torch.nn.Module):
    """The PyTorch side of a full-window graph (``IOContract.full_window``), stepped like the ONNX side
    (``runtime/stepper.py``), for ``validate`` and ``bench``: its "cache" is the window's token ids, and every step runs the whole window,
    cropped to the last ``window`` tokens; → the logits of the new tokens."""

    def __init__(self, model: torch.nn.Module, window: int) -> None:
        super().__init__()
        self.model, self.window = model, window

    def forward(
        self, ids: torch.Tensor, mask: torch.Tensor, position_ids: None, past: torch.Tensor | None, *, last_logits: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        seq = ids if past is None else torch.cat([past, ids], dim=1)  # (B, P+S)
        keep = self.window or seq.shape[1]
        logits, _ = self.model(seq[:, -keep:], mask[:, -keep:], last_logits=last_logits)
        return logits[:, -min(ids.shape[1], logits.shape[1]) :], seq


def read_build_info(folder: str | Path) -> dict:
    folder = Path(folder)
    path = folder / "build.json"
    if not folder.is_dir():
        raise BuildError(f"{folder}: not a model folder (no such directory)")
    for name in ("model.onnx", "model.yaml", "build.json"):
        if not (folder / name).is_file():
            raise BuildError(f"{folder}: not a model folder ({name} is missing)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise BuildError(f"{path}: not valid JSON ({err.msg}, line {err.lineno})") from None


def load_reference(folder: str | Path) -> DecoderLM:
    """The PyTorch model the folder was exported from (eval mode), or ``BuildError`` saying why not."""
    folder = Path(folder)
    info = read_build_info(folder)
    source = info.get("weights", {})
    if source.get("kind") == "file":
        model = _from_file(folder, info, source)
    elif source.get("kind") == "seed":
        model = _from_seed(folder, info, source)
    else:
        raise BuildError(f"{folder}: weights came from an in-memory model ({source.get('kind')!r}); the reference cannot be rebuilt")
    if weights_sha256(model) != source.get("sha256"):
        raise BuildError(f"{folder}: rebuilt weights differ from the exported ones (sha256 mismatch); model.yaml or build.json was changed")
    return model


def _from_seed(folder: Path, info: dict, source: dict) -> DecoderLM:
    from yamlllm_export.model.builders import build_model

    if source.get("torch_version") != torch.__version__:
        raise BuildError(
            f"{folder}: seeded build made with torch {source.get('torch_version')}, this is torch {torch.__version__}; "
            "rebuild the folder with this torch to compare"
        )
    return build_model(load_spec(folder / "model.yaml"), seed=int(source["seed"]), dtype=info.get("dtype", "float32"))


def _from_file(folder: Path, info: dict, source: dict) -> DecoderLM:
    """The build's weights file, reloaded from where build.json says it was, unchanged."""
    from yamlllm_export.export.weights_source import load_weights_from, weights_fingerprint
    from yamlllm_export.model.builders import build_model

    path = Path(source.get("path", ""))
    if not path.exists():
        raise BuildError(f"{folder}: the weights file {path} it was built from is gone (moved or deleted)")
    if weights_fingerprint(path) != source.get("file_sha256"):
        raise BuildError(f"{folder}: the weights file {path} changed since the build (sha256 mismatch)")
    model = build_model(load_spec(folder / "model.yaml"), seed=0, dtype=info.get("dtype", "float32"))
    load_weights_from(model, path)
    return model
