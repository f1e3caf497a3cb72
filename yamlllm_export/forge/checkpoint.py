"""Read a ReaLLM-Forge checkpoint: ``train.py``'s ``torch.save`` dict with ``model`` (the state dict) and
``model_args`` (its argparse model options), through ``torch.load(weights_only=True)`` (no code runs). A NaN or
±inf in ``model_args`` or in a tensor is refused here, naming the file and the key or tensor."""

from __future__ import annotations

import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from yamlllm_export.errors import BuildError
from yamlllm_export.forge.table import defaults
from yamlllm_export.hf.config import first_nonfinite
from yamlllm_export.weights.checkpoint import check_finite

PICKLES = {".pt", ".pth", ".ckpt"}


@dataclass(frozen=True)
class ForgeCheckpoint:
    path: Path
    model_args: dict[str, Any]
    state: dict[str, torch.Tensor]
    iter_num: int | None


def load_pickle(path: Path) -> Any:
    """The object in a weights-only pickle, or ``BuildError`` saying why it cannot be read."""
    if not path.is_file():
        raise BuildError(f"{path}: no such checkpoint file")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols before refusing: one line is enough
            warnings.simplefilter("ignore")
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise BuildError(f"{path}: refused: the pickle holds more than tensors and plain values ({_line(err)})") from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise BuildError(f"{path}: not a readable PyTorch checkpoint ({_line(err)})") from None


def is_forge_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and "model_args" in obj and "model" in obj


def forge_checkpoint(path: str | Path, obj: Any | None = None) -> ForgeCheckpoint:
    """The checkpoint at ``path`` (``obj``: its already loaded content); ``BuildError`` unless it is Forge's."""
    path = Path(path)
    obj = load_pickle(path) if obj is None else obj
    if not isinstance(obj, dict):
        raise BuildError(f"{path}: not a ReaLLM-Forge checkpoint (a {type(obj).__name__}, not train.py's dict)")
    missing = [k for k in ("model_args", "model") if k not in obj]
    if missing:
        raise BuildError(f"{path}: not a ReaLLM-Forge checkpoint (no {' and no '.join(repr(k) for k in missing)}; train.py saves both)")
    args, state = obj["model_args"], obj["model"]
    if not isinstance(args, dict) or not all(isinstance(k, str) for k in args):
        raise BuildError(f"{path}: model_args is not a dict of option names")
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise BuildError(f"{path}: 'model' is not a state dict (tensor name → tensor)")
    base = defaults()  # Forge's own defaults hold an inf (gaussian_max_norm): only a value set otherwise is checked
    if bad := first_nonfinite({k: v for k, v in args.items() if k not in base or v != base[k]}):
        raise BuildError(f"{path}: model_args.{bad[0]} = {bad[1]} is not a finite number")
    for name, tensor in state.items():
        check_finite(tensor, name, path)
    iter_num = obj.get("iter_num")
    return ForgeCheckpoint(path, dict(args), dict(state), iter_num if isinstance(iter_num, int) else None)


def _line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 200 else text[:199] + "…"
