"""``import-hf``: an HF ``config.json`` → a readable YAML spec (comments naming the source; only the keys
that differ from our defaults), checked by loading it back before anything is written."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from yamlllm_export import __version__
from yamlllm_export.hf.config import HFConfig, read_config
from yamlllm_export.spec import load_spec


def import_hf(folder: str | Path, out: str | Path = "THIS.yaml") -> tuple[dict[str, Any], str]:
    """(the spec mapping, its header comment) for the HF model in ``folder``. Raises ``BuildError`` for an
    unsupported model or config, ``SpecError`` if the mapping fails our own rules."""
    from yamlllm_export.hf.families import family_for

    cfg = read_config(folder)
    spec = {"name": _name(cfg), **family_for(cfg).to_spec(cfg)}
    load_spec(spec)  # our schema and rules must accept what we write
    return spec, _header(cfg, out)


def render_yaml(spec: dict[str, Any], header: str) -> str:
    body = yaml.safe_dump(spec, sort_keys=False, default_flow_style=False, width=120)
    return header + body


def _name(cfg: HFConfig) -> str:
    source = str(cfg.get("_name_or_path", "")) or cfg.folder.resolve().name
    return re.sub(r"[^A-Za-z0-9._-]+", "-", Path(source).name).strip("-") or cfg.model_type


def _header(cfg: HFConfig, out: str | Path) -> str:
    arch = ", ".join(cfg.get("architectures", [])) or "?"
    made_by = cfg.get("transformers_version")
    lines = [
        f"Imported from the Hugging Face model in {cfg.folder.resolve()}",
        f"  model_type {cfg.model_type}, {arch}" + (f", saved by transformers {made_by}" if made_by else ""),
        f"by yamlllm-export {__version__} import-hf. Keys left out take yamlllm-export's defaults",
        "(yamlllm-export schema). Build it with these weights:",
        f"  yamlllm-export build {out} --weights {cfg.folder.resolve()} -o out/",
    ]
    return "".join(f"# {line}\n" for line in lines)
