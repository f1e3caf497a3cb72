"""An HF folder's tensors: ``model.safetensors``, sharded safetensors with their index, or the older
``pytorch_model.bin`` (read weights-only). Every file goes through ``read_checkpoint``: no code runs."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from torch import nn

from yamlllm_export.errors import BuildError
from yamlllm_export.hf.config import read_config
from yamlllm_export.weights.checkpoint import file_sha256, load_weights, read_checkpoint

# (single file, shard index), most preferred first
LAYOUTS = (("model.safetensors", "model.safetensors.index.json"), ("pytorch_model.bin", "pytorch_model.bin.index.json"))


def is_hf_folder(path: str | Path) -> bool:
    return Path(path).is_dir() and (Path(path) / "config.json").is_file()


def weight_files(folder: Path) -> list[Path]:
    """The files holding the folder's tensors, in a fixed order."""
    for single, index in LAYOUTS:
        if (folder / single).is_file():
            return [folder / single]
        if (folder / index).is_file():
            try:
                weight_map = json.loads((folder / index).read_text())["weight_map"]
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise BuildError(f"{folder / index}: not a shard index ({type(err).__name__}: {err})") from None
            files = [folder / name for name in sorted(set(weight_map.values()))]
            gone = [f.name for f in files if not f.is_file()]
            if gone:
                raise BuildError(f"{folder / index}: names shards that are missing: {', '.join(gone[:3])}")
            return files
    names = ", ".join(name for pair in LAYOUTS for name in pair)
    raise BuildError(f"{folder}: no weights (expected one of {names})")


def read_hf_state(folder: Path) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {}
    for path in weight_files(folder):
        state.update(read_checkpoint(path))
    return state


def load_hf_weights(model: nn.Module, folder: str | Path) -> list[str]:
    """Map the folder's weights onto ``model`` (built from the spec ``import-hf`` wrote); returns notes."""
    from yamlllm_export.hf.families import family_for

    cfg = read_config(folder)
    family = family_for(cfg)
    state = family.convert(cfg, read_hf_state(cfg.folder))
    try:
        return load_weights(model, state, str(cfg.folder)) + ([f"{cfg.folder}: {family.note}"] if family.note else [])
    except BuildError as err:  # the names are ours by now: say so, or "final_norm.weight" puzzles an HF user
        raise BuildError(f"{err} (tensor names after mapping {cfg.model_type} to yamlllm-export's)") from None


def hf_fingerprint(folder: str | Path) -> str:
    """sha256 over config.json and every weight file's sha256: any change to what was loaded changes it."""
    folder = Path(folder)
    h = hashlib.sha256()
    for path in [folder / "config.json", *weight_files(folder)]:
        h.update(f"{path.name}:{file_sha256(path)}\n".encode())
    return h.hexdigest()
