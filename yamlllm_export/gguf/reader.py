"""Open a GGUF file with llama.cpp's own reader (the ``gguf`` package) and turn every way it can fail into
one line naming the file: a missing package, a wrong magic, a truncated file, a missing metadata key."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from yamlllm_export.errors import BuildError

INSTALL = "pip install 'yamlllm-export[gguf]'"
_MISSING = object()


def gguf_module() -> Any:
    try:
        import gguf
    except ImportError:
        raise BuildError(f"reading GGUF files needs the gguf package: {INSTALL}") from None
    return gguf


def is_gguf(path: str | Path) -> bool:
    return Path(path).suffix.lower() == ".gguf"


@dataclass(frozen=True)
class GGUFTensor:
    """One tensor as stored: ``rows`` × ``cols`` values (``cols`` is llama.cpp's ne[0], the input dim of a
    weight), ``data`` its bytes (quantized: uint8 of shape (rows, bytes per row)) or values (F32/F16/BF16)."""

    name: str
    qtype: str  # GGMLQuantizationType name: F32, F16, Q4_1, ...
    rows: int
    cols: int
    data: np.ndarray

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.rows, self.cols) if self.rows > 1 or self.data.ndim > 1 else (self.cols,)


@dataclass(frozen=True)
class GGUFFile:
    path: Path
    arch: str
    meta: dict[str, Any]
    tensors: dict[str, GGUFTensor]

    def get(self, key: str, default: Any = None) -> Any:
        """``meta[key]``; a key starting with ``.`` is under the architecture (``.block_count``)."""
        return self.meta.get(self.arch + key if key.startswith(".") else key, default)

    def require(self, key: str) -> Any:
        value = self.get(key, _MISSING)
        if value is _MISSING:
            full = self.arch + key if key.startswith(".") else key
            raise BuildError(f"{self.path}: metadata key '{full}' is missing (needed for architecture {self.arch!r})")
        return value

    def tensor(self, name: str) -> GGUFTensor:
        if name not in self.tensors:
            raise BuildError(f"{self.path}: tensor '{name}' is missing (needed for architecture {self.arch!r})")
        return self.tensors[name]


def read_gguf(path: str | Path) -> GGUFFile:
    """The file's metadata and tensors (memory-mapped: nothing is dequantized here). Cached per file
    version: gguf's reader spends seconds on a large vocabulary, and one build reads the file three times."""
    path = Path(path)
    if not path.is_file():
        raise BuildError(f"{path}: no such GGUF file")
    stat = path.stat()
    return _read(path, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=2)
def _read(path: Path, size: int, mtime_ns: int) -> GGUFFile:
    gguf = gguf_module()
    with path.open("rb") as f:
        magic = f.read(4)
    if magic != b"GGUF":
        raise BuildError(f"{path}: not a GGUF file (magic {magic!r}, expected b'GGUF')")
    try:
        reader = gguf.GGUFReader(path)
        meta = {key: _value(field) for key, field in reader.fields.items()}
        tensors = {t.name: _tensor(t) for t in reader.tensors}
    except (ValueError, IndexError, KeyError, OverflowError, OSError, EOFError) as err:  # the reader's ways to fail on bad bytes
        line = " ".join(str(err).split())[:200] or type(err).__name__
        raise BuildError(f"{path}: not a readable GGUF file, truncated or corrupt ({line})") from None
    for key, value in meta.items():
        _finite(path, key, value)
    arch = meta.get("general.architecture")
    if not isinstance(arch, str):
        raise BuildError(f"{path}: metadata key 'general.architecture' is missing")
    return GGUFFile(path, arch, meta, tensors)


def _finite(path: Path, key: str, value: Any) -> None:
    """Refuse a NaN or ±inf metadata number (a broken converter's rope_freq_base, layer_norm_rms_epsilon, ...);
    the tokenizer's per-token arrays (scores) are not model settings and are left alone."""
    values = value if isinstance(value, list) and not key.startswith("tokenizer.") else [value]
    for i, v in enumerate(values):
        if isinstance(v, float) and not math.isfinite(v):
            at = f"[{i}]" if values is value else ""
            raise BuildError(f"{path}: metadata key '{key}'{at} = {v} is not a finite number")


def _value(field: Any) -> Any:
    """The field's Python value; a float32 reads as its shortest decimal (1e-05, not 9.999999747378752e-06)."""
    value = field.contents()
    if field.types and field.types[0].name == "FLOAT32" and isinstance(value, float):
        return float(str(np.float32(value)))
    return value


def _tensor(t: Any) -> GGUFTensor:
    ne = [int(n) for n in t.shape]  # llama.cpp order: ne[0] (contiguous) first
    if len(ne) > 2 and any(n != 1 for n in ne[2:]):
        raise ValueError(f"tensor {t.name} has {len(ne)} dims {ne}; only 1-D and 2-D tensors are mapped")
    cols, rows = ne[0], (ne[1] if len(ne) > 1 else 1)
    expected = t.n_bytes
    if t.data.nbytes != expected:
        raise ValueError(f"tensor {t.name}: {t.data.nbytes} bytes in the file, {expected} expected")
    data = t.data.reshape(rows, -1) if len(ne) > 1 else t.data.reshape(-1)
    return GGUFTensor(t.name, t.tensor_type.name, rows, cols, data)
