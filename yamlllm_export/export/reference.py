"""Rebuild the PyTorch reference of a model folder from ``model.yaml`` and build.json's weight source.

A seeded build is reproducible only with the same torch version (the RNG streams may change between
releases); the rebuilt weights' sha256 must equal the recorded one. Any mismatch is an error, never
ignored: parity against a different model would prove nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from yamlllm_export.errors import BuildError
from yamlllm_export.export.provenance import weights_sha256
from yamlllm_export.spec import load_spec


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


def load_reference(folder: str | Path) -> torch.nn.Module:
    """The PyTorch model the folder was exported from (eval mode), or ``BuildError`` saying why not."""
    from yamlllm_export.model.builders import build_model

    folder = Path(folder)
    info = read_build_info(folder)
    source = info.get("weights", {})
    if source.get("kind") != "seed":
        raise BuildError(f"{folder}: weights came from an in-memory model ({source.get('kind')!r}); the reference cannot be rebuilt")
    if source.get("torch_version") != torch.__version__:
        raise BuildError(
            f"{folder}: seeded build made with torch {source.get('torch_version')}, this is torch {torch.__version__}; "
            "rebuild the folder with this torch to compare"
        )
    model = build_model(load_spec(folder / "model.yaml"), seed=int(source["seed"]), dtype=info.get("dtype", "float32"))
    if weights_sha256(model) != source.get("sha256"):
        raise BuildError(f"{folder}: rebuilt weights differ from the exported ones (sha256 mismatch); model.yaml or build.json was changed")
    return model
