"""Check a model folder before trusting it: its files are the ones its build wrote, and its graph reads weights
from inside it only. No torch.

``build`` records in build.json's ``files`` the sha256, size and mtime of every file it wrote (build.json
itself aside). ``validate`` hashes them all; ``generate`` and ``bench`` compare sizes and mtimes and hash only
the files whose mtime moved (a copy that kept its bytes passes), or hash everything with ``--verify``. The
record catches corruption and edits, not an adversary, who can rewrite build.json too.

Before ONNX Runtime opens ``model.onnx`` (``runtime.session``), every external-data ``location`` must be a
relative path without ``..`` that resolves, symlinks followed, to a file inside the folder: ORT would otherwise
read whatever file the graph names.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING, Any

from yamlllm_export.errors import FolderError

if TYPE_CHECKING:
    import onnx

BUILD_INFO = "build.json"
FILES = "files"  # build.json's key: relative path -> {sha256, size, mtime_ns}


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:  # streamed: a 14 GB weights file is never held (hashlib.file_digest is Python 3.11+)
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def record_files(folder: Path) -> dict[str, dict[str, int | str]]:
    """What build.json's ``files`` holds for ``folder``: every regular file below it but build.json."""
    records: dict[str, dict[str, int | str]] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()):
        name = path.relative_to(folder).as_posix()
        if name != BUILD_INFO:
            stat = path.stat()
            records[name] = {"sha256": sha256_file(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    return records


def check_folder(folder: str | Path, *, full: bool) -> None:
    """Raise ``FolderError`` when a file build.json records changed or the graph's data lies outside the folder.
    ``full``: hash every recorded file; else only those whose size or mtime moved. A folder without a record
    (an older build, another exporter's) gets the external-data check only."""
    folder = Path(folder)
    check_files(folder, _recorded(folder), full=full)
    check_external_data(folder)


def _recorded(folder: Path) -> dict[str, dict[str, Any]]:
    try:
        info = json.loads((folder / BUILD_INFO).read_text())
    except (OSError, ValueError):
        return {}  # no build.json, or not ours to judge here (validate reports an unreadable one itself)
    files = info.get(FILES) if isinstance(info, dict) else None
    return files if isinstance(files, dict) else {}


def check_files(folder: Path, records: dict[str, dict[str, Any]], *, full: bool) -> None:
    for name, record in records.items():
        path = folder / name
        if not isinstance(record, dict) or PurePosixPath(name).is_absolute() or ".." in PurePosixPath(name).parts:
            raise FolderError(f"{folder / BUILD_INFO}: files[{name!r}] is not a file record of this folder")
        if not path.is_file():
            raise FolderError(f"{path}: missing (build.json records it: the folder is incomplete)")
        stat = path.stat()
        if stat.st_size != record.get("size"):
            raise FolderError(f"{path}: changed since the build ({stat.st_size} bytes, build.json records {record.get('size')})")
        if not full and stat.st_mtime_ns == record.get("mtime_ns"):
            continue
        digest = sha256_file(path)
        if digest != record.get("sha256"):
            raise FolderError(
                f"{path}: changed since the build (sha256 {digest[:16]}…, build.json records {str(record.get('sha256'))[:16]}…)"
            )


def check_external_data(folder: str | Path) -> None:
    """Refuse a ``model.onnx`` whose tensors keep their data outside ``folder`` (read without the data)."""
    import onnx

    folder = Path(folder)
    path = folder / "model.onnx"
    if not path.is_file():
        return  # ORT's own "file not found" names it
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001, S110 - unreadable: ORT's error (or validate's structure rows) says why
        return
    root = folder.resolve()
    for tensor in external_tensors(proto.graph):
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        why = location_problem(location, root)
        if why:
            raise FolderError(f"{path}: tensor {tensor.name!r} keeps its data at {location!r}: {why}; refused before loading")


def location_problem(location: str, root: Path) -> str:
    """Why an external-data ``location`` may not be read from the folder ``root`` (resolved), or ""."""
    if not location:
        return "no location given"
    if PurePosixPath(location).is_absolute() or PureWindowsPath(location).anchor:
        return "an absolute path, outside the folder"
    if ".." in PurePosixPath(location).parts or ".." in PureWindowsPath(location).parts:
        return "a path through '..', which may leave the folder"
    target = Path(os.path.realpath(root / location))
    if not target.is_relative_to(root):
        return f"outside the folder (it resolves to {target})"
    return ""


def external_tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    """Every tensor of ``graph`` stored as external data: initializers and node attributes, subgraphs included."""
    import onnx

    def walk(g: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
        yield from g.initializer
        for sparse in g.sparse_initializer:
            yield from (sparse.values, sparse.indices)
        for node in g.node:
            for attr in node.attribute:
                if attr.HasField("t"):
                    yield attr.t
                yield from attr.tensors
                for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
                    yield from walk(sub)

    return (t for t in walk(graph) if t.data_location == onnx.TensorProto.EXTERNAL)
