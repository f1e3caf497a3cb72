"""Hugging Face hub ids (``ORG/NAME``) as model sources: ``import-hf ORG/NAME``, ``build --weights ORG/NAME``,
``import-gguf ORG/NAME --gguf-file FILE``.

A hub id becomes a local snapshot folder through ``huggingface_hub.snapshot_download``, which downloads when online
and answers from its cache (``HF_HUB_CACHE``, or ``HF_HOME/hub``) when offline or with ``HF_HUB_OFFLINE=1``. A local
path that exists always wins over a hub id of the same spelling, so nothing that worked before reaches the network.
Only the files the command needs are fetched: ``config.json`` for an import, the config, tokenizer and weight files
for a build, the one GGUF file named by ``--gguf-file``.
"""

from __future__ import annotations

import re
from pathlib import Path

from yamlllm_export.errors import BuildError

# owner and name as the hub spells them (letters, digits, '-', '_', '.'), one slash, nothing else
_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")

CONFIG_FILES = ["config.json", "generation_config.json"]
TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]
SAFETENSORS_FILES = ["*.safetensors", "model.safetensors.index.json"]
PICKLE_FILES = ["pytorch_model*.bin", "pytorch_model.bin.index.json"]


def is_hub_id(text: str | Path) -> bool:
    """Whether ``text`` is spelled like a hub repository id (``ORG/NAME``)."""
    return isinstance(text, str) and _HUB_ID.fullmatch(text) is not None


def resolve_model_dir(source: str | Path, *, revision: str | None = None, weights: bool = False) -> Path:
    """The local folder for ``source``: the path itself when it exists (or is no hub id), else the snapshot of the
    hub repository it names. ``weights``: also fetch the tokenizer and the weight files (safetensors, or the
    weights-only ``pytorch_model*.bin`` of a repository without safetensors)."""
    path = Path(source)
    if path.exists() or not is_hub_id(str(source)):
        return path
    repo = str(source)
    folder = _snapshot(repo, revision, CONFIG_FILES + (TOKENIZER_FILES + SAFETENSORS_FILES if weights else []))
    if not (folder / "config.json").is_file():
        raise BuildError(f"{repo}: the hub repository has no config.json (a GGUF repository? pick its file with --gguf-file NAME.gguf)")
    if weights and not any(folder.glob("*.safetensors")):
        folder = _snapshot(repo, revision, CONFIG_FILES + TOKENIZER_FILES + PICKLE_FILES)
    return folder


def resolve_gguf_file(source: str | Path, gguf_file: str | None, *, revision: str | None = None) -> Path:
    """The GGUF file for ``source`` (+ ``--gguf-file``): a local file, a file inside a local folder, or the file of
    that name in a hub repository's snapshot."""
    path = Path(source)
    if gguf_file is None:
        if path.exists() or not is_hub_id(str(source)):
            return path
        raise BuildError(f"{source}: a hub repository; name the GGUF file inside it with --gguf-file NAME.gguf")
    if path.is_file():
        raise BuildError(f"--gguf-file {gguf_file}: {source} is a file; --gguf-file picks a file inside a folder or hub repository")
    if path.is_dir() or not is_hub_id(str(source)):
        picked = path / gguf_file
        if not picked.is_file():
            raise BuildError(f"--gguf-file {gguf_file}: no such file in {path}")
        return picked
    picked = _snapshot(str(source), revision, [gguf_file]) / gguf_file
    if not picked.is_file():
        raise BuildError(f"--gguf-file {gguf_file}: not in the hub repository {source} (offline: not in its cached snapshot)")
    return picked


def _snapshot(repo: str, revision: str | None, patterns: list[str]) -> Path:
    """``snapshot_download`` of ``patterns``; every failure is one ``BuildError`` line naming the id."""
    try:
        from huggingface_hub import constants, snapshot_download
        from huggingface_hub.errors import (
            GatedRepoError,
            HfHubHTTPError,
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )
    except ImportError:  # pragma: no cover - huggingface_hub is a dependency
        raise BuildError(f"{repo}: not a local path, and reading a hub id needs the huggingface_hub package") from None
    at = f" at revision {revision}" if revision else ""
    try:
        return Path(snapshot_download(repo, revision=revision, allow_patterns=patterns))
    except LocalEntryNotFoundError:
        how = "offline mode (HF_HUB_OFFLINE)" if constants.HF_HUB_OFFLINE else "the hub could not be reached"
        raise BuildError(f"{repo}: not a local path, and not in the Hugging Face cache ({constants.HF_HUB_CACHE}){at}; {how}") from None
    except GatedRepoError:
        raise BuildError(f"{repo}: a gated hub repository; accept its terms on huggingface.co and log in (hf auth login)") from None
    except RevisionNotFoundError:
        raise BuildError(f"{repo}: no revision {revision!r} on the hub") from None
    except RepositoryNotFoundError:
        raise BuildError(f"{repo}: not a local path, and no such repository on the hub (or it is private)") from None
    except (HfHubHTTPError, OSError) as err:
        line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise BuildError(f"{repo}: could not fetch from the hub{at} ({line})") from None
