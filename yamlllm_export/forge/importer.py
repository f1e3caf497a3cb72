"""``import-forge``: a ReaLLM-Forge checkpoint's ``model_args`` → our YAML spec, through ``forge/table.py``.

Every key is read: a row maps it, ignores it (a note when its value is not the default) or refuses it; a
family's parameter is inert while its option is off; a key no row or family covers is refused when its
value is not Forge's default. The first refusal is the error (one line naming the key); nothing is written.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from yamlllm_export import __version__
from yamlllm_export.errors import BuildError, SpecError
from yamlllm_export.forge.checkpoint import ForgeCheckpoint, forge_checkpoint
from yamlllm_export.forge.options import source_key
from yamlllm_export.forge.table import ROWS, Args, Draft, defaults, family_for, row_for
from yamlllm_export.spec import load_spec
from yamlllm_export.spec.features import full_window_line, needs_full_window


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:59] + "…"


def forge_spec(args: Args) -> tuple[Draft, list[str]]:
    """(the spec mapping without its name, notes) for Forge ``model_args``; ``BuildError`` on a refused key."""
    base = defaults()
    args = {**base, **args}  # an older revision may lack newer keys: they take today's defaults
    notes = []
    for key in args:
        value, default = args[key], base.get(key, _MISSING)
        row, family = row_for(key), family_for(key)
        changed = value != default
        if row is not None:
            why = row.accept(args) if row.accept is not None else (row.why if row.kind == "refuse" and changed else None)
            if why:
                raise BuildError(f"model_args.{key} = {_short(value)}: {why}")
            if row.kind == "ignore" and changed:
                notes.append(f"model_args.{key} = {_short(value)} ignored: {row.why}")
        elif family is not None:
            if changed and not family.active(args):
                notes.append(f"model_args.{key} = {_short(value)} ignored: no effect without {family.option}")
        elif changed:
            raise BuildError(f"model_args.{key} = {_short(value)}: not read by yamlllm-export (no row in forge/table.py covers it)")
    draft: Draft = {}
    for row in ROWS:
        if row.kind == "map" and row.apply is not None:
            row.apply(draft, args)
    return _ordered(draft), notes


_MISSING = object()
ORDER = ("name", "embedding", "num_layers", "layer", "final_layer_norm", "tie_word_embeddings", "lm_head_bias", "final_logit_softcap")


def _ordered(draft: Draft) -> Draft:
    """Top-level keys in a reader's order; unset options (None: our default too) left out."""
    spec: Draft = {k: _without_none(draft[k]) for k in ORDER if k in draft}
    spec.update({k: _without_none(v) for k, v in draft.items() if k not in spec})
    spec["lm_head_bias"] = False
    return {k: v for k, v in spec.items() if v is not None}


def _without_none(value: Any) -> Any:
    return {k: _without_none(v) for k, v in value.items() if v is not None} if isinstance(value, dict) else value


def import_forge(path: str | Path, out: str | Path = "THIS.yaml") -> tuple[dict[str, Any], str, list[str]]:
    """(spec mapping, header comment, notes) for the Forge checkpoint at ``path``. ``BuildError`` for a file
    that is not Forge's or a refused option; ``SpecError`` if the mapping fails our own rules."""
    ckpt = forge_checkpoint(path)
    draft, notes = forge_spec(ckpt.model_args)
    spec = {"name": _name(ckpt), **draft}
    try:
        loaded = load_spec(spec)  # our schema and rules must accept what we write
    except SpecError as err:  # name Forge's key when the refused value came from one
        path = str(err).split(":", 1)[0]
        key = source_key(path, {**defaults(), **ckpt.model_args})
        if key is None:
            raise
        value = {**defaults(), **ckpt.model_args}[key]
        raise BuildError(f"model_args.{key} = {_short(value)}: outside yamlllm-export's bounds ({err})") from None
    if needs_full_window(loaded):
        notes.append(f"full-window model ({full_window_line(loaded)}): build writes a graph without a KV cache")
    return spec, _header(ckpt, out, notes), notes


def _name(ckpt: ForgeCheckpoint) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", ckpt.path.stem).strip("-") or "forge"


def _header(ckpt: ForgeCheckpoint, out: str | Path, notes: list[str]) -> str:
    at = f", iter_num {ckpt.iter_num}" if ckpt.iter_num is not None else ""
    lines = [
        f"Imported from the ReaLLM-Forge checkpoint {ckpt.path.resolve()} (model_args{at})",
        f"by yamlllm-export {__version__} import-forge (docs/forge-import.md). Keys left out take yamlllm-export's defaults.",
        "Build it with these weights:",
        f"  yamlllm-export build {out} --weights {ckpt.path.resolve()} -o out/",
        *(f"note: {n}" for n in notes),
    ]
    return "".join(f"# {line}\n" for line in lines)
