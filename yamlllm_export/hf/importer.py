"""``import-hf``: an HF ``config.json`` → a readable YAML spec (comments naming the source; only the keys
that differ from our defaults), checked by loading it back before anything is written."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from yamlllm_export import __version__
from yamlllm_export.hf.config import HFConfig, read_config
from yamlllm_export.spec import load_spec
from yamlllm_export.spec.load import dump_yaml


def import_hf(folder: str | Path, out: str | Path = "THIS.yaml", *, source: str | None = None) -> tuple[dict[str, Any], str]:
    """(the spec mapping, its header comment) for the HF model in ``folder``; ``source``: the hub id the folder is a
    snapshot of (named in the header and the default name). Raises ``BuildError`` for an unsupported model or config,
    ``SpecError`` if the mapping fails our own rules."""
    from yamlllm_export.hf.families import family_for

    cfg = read_config(folder)
    family = family_for(cfg)
    spec = {"name": _name(cfg, source), **family.to_spec(cfg)}
    tokens = _tokens(cfg, spec["embedding"]["vocab_size"])
    if tokens:
        spec["tokens"] = tokens
    load_spec(spec)  # our schema and rules must accept what we write
    return spec, _header(cfg, out, family.note, source)


def render_yaml(spec: dict[str, Any], header: str) -> str:
    return header + dump_yaml(spec)  # a norm shared by layers and final is written twice, not as an alias


def _tokens(cfg: HFConfig, vocab_size: int) -> dict[str, Any]:
    """bos/eos/pad ids from config.json (a multimodal wrapper's own, else its text_config's), else
    generation_config.json; ids outside the vocabulary (some configs keep a tokenizer's ids for a resized
    model) are left out rather than written invalid."""
    generation = cfg.folder / "generation_config.json"
    try:
        extra = json.loads(generation.read_text()) if generation.is_file() else {}
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        extra = {}
    sources = [cfg.raw, cfg.get("text_config"), extra]
    out: dict[str, Any] = {}
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        value = next((s[key] for s in sources if isinstance(s, dict) and s.get(key) is not None), None)
        ids = value if isinstance(value, list) else [value]
        if value is not None and ids and all(isinstance(i, int) and 0 <= i < vocab_size for i in ids):
            out[key] = sorted(set(ids)) if isinstance(value, list) else value
    return out


def _name(cfg: HFConfig, hub_id: str | None = None) -> str:
    source = str(cfg.get("_name_or_path", "")) or hub_id or cfg.folder.resolve().name
    return re.sub(r"[^A-Za-z0-9._-]+", "-", Path(source).name).strip("-") or cfg.model_type


def _header(cfg: HFConfig, out: str | Path, note: str, hub_id: str | None = None) -> str:
    arch = ", ".join(cfg.get("architectures", [])) or "?"
    made_by = cfg.get("transformers_version")
    lines = [
        f"Imported from the Hugging Face model {hub_id} ({cfg.folder.resolve()})"
        if hub_id
        else f"Imported from the Hugging Face model in {cfg.folder.resolve()}",
        f"  model_type {cfg.model_type}, {arch}" + (f", saved by transformers {made_by}" if made_by else ""),
        f"by yamlllm-export {__version__} import-hf. Keys left out take yamlllm-export's defaults",
        "(yamlllm-export schema). Build it with these weights:",
        f"  yamlllm-export build {out} --weights {hub_id or cfg.folder.resolve()} -o out/",
        *([f"note: {note}"] if note else []),
    ]
    return "".join(f"# {line}\n" for line in lines)
