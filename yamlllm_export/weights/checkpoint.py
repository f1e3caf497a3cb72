"""Read a checkpoint of the compiled model and load it, refusing anything that is not exactly its weights.

Reading never executes code from the file: safetensors, or ``torch.load(weights_only=True)`` for
``.pt``/``.bin`` (a pickle that would run code is refused). Loading compares names and shapes with the
model's state dict and reports missing, unexpected and mis-shaped tensors together (the first few of
each, with counts). Float tensors in another precision are cast to the build's dtype, with a note. A float
tensor holding NaN or ±inf is refused as it is read, naming the file and the tensor (``check_finite``).
"""

from __future__ import annotations

import hashlib
import pickle
import warnings
from pathlib import Path

import torch
from torch import nn

from yamlllm_export.errors import BuildError

SAFETENSORS = {".safetensors"}
PICKLES = {".pt", ".pth", ".bin"}
SHOWN = 3  # names listed per kind of problem


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """name → tensor from a ``.safetensors`` or a weights-only ``.pt``/``.bin`` file; ``BuildError`` otherwise."""
    path = Path(path)
    if not path.is_file():
        raise BuildError(f"{path}: no such weights file")
    suffix = path.suffix.lower()
    if suffix in SAFETENSORS:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            tensors = load_file(str(path))
        except (SafetensorError, OSError) as err:
            raise BuildError(f"{path}: not a readable safetensors file ({_line(err)})") from None
        for name, t in tensors.items():
            check_finite(t, name, path)
        return tensors
    if suffix in PICKLES:
        try:
            with warnings.catch_warnings():  # torch warns about pickle protocols before refusing: one line is enough
                warnings.simplefilter("ignore")
                state = torch.load(str(path), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            raise BuildError(f"{path}: refused: the pickle holds more than tensors ({_line(err)})") from None
        except (RuntimeError, EOFError, OSError) as err:
            raise BuildError(f"{path}: not a readable PyTorch checkpoint ({_line(err)})") from None
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
            raise BuildError(f"{path}: expected a state dict (tensor name → tensor)")
        for name, t in state.items():
            check_finite(t, name, path)
        return state
    raise BuildError(f"{path}: unknown weights format {suffix!r} (use .safetensors, .pt or .bin)")


def check_finite(t: torch.Tensor, name: str, source: str | Path) -> None:
    """Refuse a float tensor with NaN or ±inf values, naming ``source`` (its file) and the tensor. The test is
    one sum over data just read (a NaN or inf anywhere makes the sum NaN or inf; ``isfinite(t).all()`` costs
    ~15x more on CPU); only a non-finite sum, which finite values reach only near the dtype's largest number,
    looks at the values themselves (docs/validation-input.md has the measured cost)."""
    if not t.is_floating_point() or t.numel() == 0 or bool(torch.isfinite(t.sum())):
        return
    bad = ~torch.isfinite(t)
    if not bool(bad.any()):
        return  # finite values whose sum overflowed
    nan = int(torch.isnan(t).sum())
    first = [int(i) for i in torch.nonzero(bad)[0]]
    raise BuildError(
        f"{source}: tensor '{name}' holds {nan} NaN and {int(bad.sum()) - nan} infinite values "
        f"(first at index {first}); a model cannot be built from it"
    )


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> list[str]:
    """Copy ``state`` into ``model`` in place; returns notes (casts). Tied tensors may appear once or twice."""
    own = model.state_dict()
    tied = _tied_aliases(model)
    missing = [k for k in own if k not in state and not any(a in state for a in tied.get(k, ()))]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} (expected {tuple(own[k].shape)})" for k in state if k in own and state[k].shape != own[k].shape]
    not_float = [f"{k} ({state[k].dtype})" for k in state if k in own and own[k].is_floating_point() and not state[k].is_floating_point()]
    problems = [
        listed("missing", missing),
        listed("unexpected", unexpected),
        listed("wrong shape", shapes),
        listed("not floating point", not_float),
    ]
    problems = [p for p in problems if p]
    if problems:
        raise BuildError(f"{source}: does not fit the model: " + "; ".join(problems))
    notes = []
    cast = sorted({str(t.dtype).removeprefix("torch.") for k, t in state.items() if t.dtype != own[k].dtype})
    if cast:
        notes.append(f"{source}: {', '.join(cast)} weights cast to {str(next(iter(own.values())).dtype).removeprefix('torch.')}")
    with torch.no_grad():
        for k, t in state.items():
            own[k].copy_(t.to(own[k].dtype))
    return notes


def _tied_aliases(model: nn.Module) -> dict[str, tuple[str, ...]]:
    """name → other state-dict names of the same tensor (a tied LM head)."""
    by_ptr: dict[int, list[str]] = {}
    for name, t in model.state_dict(keep_vars=True).items():
        by_ptr.setdefault(id(t), []).append(name)
    return {n: tuple(x for x in names if x != n) for names in by_ptr.values() for n in names if len(names) > 1}


def listed(what: str, names: list[str]) -> str:
    if not names:
        return ""
    more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
    return f"{len(names)} {what}: {', '.join(names[:SHOWN])}{more}"


def _line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 200 else text[:199] + "…"
