"""Where ``--weights`` points: a checkpoint of the compiled model, a Hugging Face model folder (its
family maps the tensors to our names), a GGUF file (dequantized; gguf/tensors.py maps its names), or a
ReaLLM-Forge checkpoint (train.py's dict with ``model_args``; forge/weights.py maps its names). One entry
point for build and for validate's reload."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from yamlllm_export.errors import BuildError
from yamlllm_export.weights.checkpoint import file_sha256, load_weights, read_checkpoint

FORGE_PICKLES = {".pt", ".pth"}  # train.py writes ckpt.pt


def load_weights_from(model: nn.Module, path: str | Path) -> list[str]:
    """Load the weights at ``path`` into ``model`` in place; returns notes (casts). ``BuildError`` if unfit."""
    from yamlllm_export.gguf import is_gguf, load_gguf_weights
    from yamlllm_export.hf import is_hf_folder, load_hf_weights

    path = Path(path)
    if is_hf_folder(path):
        return load_hf_weights(model, path)
    if is_gguf(path):
        return load_gguf_weights(model, path)
    if path.is_dir():
        raise BuildError(f"{path}: a folder without config.json (--weights takes a checkpoint file or a Hugging Face model folder)")
    if path.suffix.lower() in FORGE_PICKLES and path.is_file():
        from yamlllm_export.forge import is_forge_dict, load_forge_weights, load_pickle

        obj = load_pickle(path)
        if is_forge_dict(obj):
            return load_forge_weights(model, str(path), obj)
        del obj  # not Forge's: read again as a plain state dict
    return load_weights(model, read_checkpoint(path), str(path))


def weights_fingerprint(path: str | Path) -> str:
    """sha256 of a checkpoint file, or of an HF folder's config.json and weight files."""
    from yamlllm_export.hf import hf_fingerprint

    path = Path(path)
    return hf_fingerprint(path) if path.is_dir() else file_sha256(path)
