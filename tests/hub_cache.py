"""A Hugging Face hub cache laid out on disk as ``huggingface_hub`` writes it, from a local model folder, so the
hub-id paths run with no network (``HF_HUB_OFFLINE=1``):

    HF_HUB_CACHE/models--ORG--NAME/refs/main              the commit hash (and refs/TAG for other revisions)
    HF_HUB_CACHE/models--ORG--NAME/blobs/<sha256>          each file's bytes, named by its hash
    HF_HUB_CACHE/models--ORG--NAME/snapshots/<hash>/FILE   relative symlinks to the blobs
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def repo_cache(cache: Path, repo_id: str) -> Path:
    return cache / ("models--" + repo_id.replace("/", "--"))


def lay_out(cache: Path, repo_id: str, folder: Path, *, commit: str = "a" * 40, refs: tuple[str, ...] = ("main",)) -> Path:
    """Put ``folder``'s files into ``cache`` as the snapshot ``commit`` of ``repo_id`` (named by ``refs``); returns
    the snapshot folder. Blobs are hard links when the file system allows (a 0.5 GB model is not copied), else
    symlinks to the originals."""
    repo = repo_cache(cache, repo_id)
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    for ref in refs:
        (repo / "refs" / ref).write_text(commit)
    for src in sorted(p for p in folder.iterdir() if p.is_file()):
        blob = repo / "blobs" / _sha256(src)
        if not blob.exists():
            try:
                os.link(src, blob)
            except OSError:
                blob.symlink_to(src.resolve())
        link = snapshot / src.name
        if not link.is_symlink():
            link.symlink_to(os.path.relpath(blob, snapshot))
    return snapshot


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def offline_env(cache: Path) -> dict[str, str]:
    """The environment of a command that must find ``cache`` and never reach the network."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    return {**env, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
