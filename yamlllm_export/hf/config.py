"""An HF ``config.json``, read with the key-path errors the rest of the tool gives.

transformers 5 writes ``rope_parameters`` (with ``rope_theta`` inside); 4.x wrote ``rope_theta`` and
``rope_scaling`` side by side. ``rope()`` reads both.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yamlllm_export.errors import BuildError

_MISSING = object()


@dataclass(frozen=True)
class HFConfig:
    folder: Path
    raw: dict[str, Any]
    source: str | None = None  # what error messages name instead of config.json (a GGUF file's metadata)
    key_path: str = ""  # where ``raw`` sits in the file, for error messages ("text_config." for a multimodal wrapper)

    @property
    def model_type(self) -> str:
        return str(self.raw.get("model_type", ""))

    @property
    def where(self) -> str:
        return self.source or str(self.folder / "config.json")

    def get(self, key: str, default: Any = None) -> Any:
        """``raw[key]``, or ``default`` when absent or null (HF writes null for 'use the default')."""
        value = self.raw.get(key)
        return default if value is None else value

    def require(self, key: str) -> Any:
        value = self.raw.get(key, _MISSING)
        if value is _MISSING or value is None:
            raise BuildError(f"{self.where}: '{self.key_path}{key}' is missing (needed for model_type {self.model_type!r})")
        return value

    def refuse(self, key: str, why: str) -> BuildError:
        return BuildError(f"{self.where}: {self.key_path}{key}={self.raw.get(key)!r} is not supported ({why})")

    def rope(self, theta_default: float = 10000.0) -> tuple[float, dict[str, Any] | None]:
        """(rope_theta, the scaling parameters or None) from either config layout."""
        params = dict(self.raw.get("rope_parameters") or {})
        scaling = dict(self.raw.get("rope_scaling") or {})
        theta = params.pop("rope_theta", None) or self.raw.get("rope_theta") or theta_default
        merged = {**scaling, **params}
        kind = merged.get("rope_type", merged.get("type", "default"))
        return float(theta), (merged if kind not in (None, "default") else None)


def read_config(folder: str | Path) -> HFConfig:
    folder = Path(folder)
    path = folder / "config.json"
    if not folder.is_dir():
        raise BuildError(f"{folder}: not a folder (import-hf reads a local Hugging Face model folder)")
    if not path.is_file():
        raise BuildError(f"{folder}: no config.json (not a Hugging Face model folder)")
    try:
        raw = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BuildError(f"{path}: not valid JSON ({err})") from None
    except RecursionError:
        raise BuildError(f"{path}: JSON nested too deeply to be a model config") from None
    if not isinstance(raw, dict):
        raise BuildError(f"{path}: expected a JSON object")
    bad = first_nonfinite(raw)
    if bad is not None:
        key, value = bad
        raise BuildError(f"{path}: {key} = {value} is not a finite number (JSON has no NaN or Infinity; a broken converter wrote it)")
    return HFConfig(folder, raw)


def first_nonfinite(data: Any) -> tuple[str, float] | None:
    """(key path, value) of the first NaN or ±inf in parsed JSON (Python's json reads ``NaN``, ``Infinity`` and
    ``1e400`` as floats), in document order; None if every number is finite."""
    stack: list[tuple[str, Any]] = [("", data)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            return where or "<top level>", value
        if isinstance(value, dict):
            stack.extend((f"{where}.{k}" if where else str(k), v) for k, v in reversed(value.items()))
        elif isinstance(value, list):
            stack.extend((f"{where}[{i}]", v) for i, v in reversed(list(enumerate(value))))
    return None
