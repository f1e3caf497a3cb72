"""Tokenizer files of a model folder: ``build --tokenizer`` checks and copies them, ``generate --prompt``
loads ``tokenizer.json`` through the ``tokenizers`` package (an optional dependency: ``[text]``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from yamlllm_export.errors import BuildError, GenerationError

TOKENIZER_JSON = "tokenizer.json"
BESIDE = ("tokenizer_config.json",)  # copied along when present next to tokenizer.json (chat template, special tokens)


def tokenizer_files(source: str | Path, vocab_size: int) -> list[Path]:
    """The files ``build --tokenizer SOURCE`` copies (SOURCE: a tokenizer.json or its folder), checked:
    valid JSON, and no token id ≥ the model's ``vocab_size``."""
    path = Path(source)
    path = path / TOKENIZER_JSON if path.is_dir() else path
    if not path.is_file():
        raise BuildError(f"--tokenizer: {path}: no such file (give a tokenizer.json or the folder holding one)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BuildError(f"--tokenizer: {path}: not a tokenizer.json ({err})") from None
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        raise BuildError(f"--tokenizer: {path}: not a tokenizer.json (no 'model' section)")
    top = _max_id(data)
    if top >= vocab_size:
        raise BuildError(f"--tokenizer: {path}: token id {top} does not fit the model's embedding.vocab_size {vocab_size}")
    return [path, *(p for p in (path.with_name(n) for n in BESIDE) if p.is_file())]


def _max_id(data: dict[str, Any]) -> int:
    vocab = data["model"].get("vocab", {})
    ids = list(vocab.values()) if isinstance(vocab, dict) else [len(vocab) - 1]  # Unigram: a list of pieces
    ids += [t["id"] for t in data.get("added_tokens") or [] if isinstance(t, dict) and isinstance(t.get("id"), int)]
    return max(ids, default=-1)


def copy_tokenizer(files: list[Path], folder: Path) -> None:
    for f in files:
        shutil.copyfile(f, folder / (TOKENIZER_JSON if f == files[0] else f.name))


def load_tokenizer(folder: str | Path) -> Any:
    """The folder's ``tokenizers.Tokenizer``; a one-line error naming the fix when there is none."""
    path = Path(folder) / TOKENIZER_JSON
    if not path.is_file():
        raise GenerationError(
            f"{folder}: no tokenizer.json, so --prompt text cannot be encoded; rebuild with "
            "`yamlllm-export build SPEC -o FOLDER --tokenizer PATH/tokenizer.json`, or pass token ids with --prompt-ids"
        )
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise GenerationError("--prompt needs the tokenizers package: pip install 'yamlllm-export[text]'") from None
    try:
        return Tokenizer.from_file(str(path))
    except Exception as err:  # noqa: BLE001 - tokenizers raises a bare Exception on malformed files
        raise GenerationError(f"{path}: cannot load ({' '.join(str(err).split())})") from None
