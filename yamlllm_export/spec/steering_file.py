"""Reading ReaLLM-Forge's manual steering vector: a .npy file of hidden_dim numbers (numpy only, no pickle)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def read_steering_vector(path: str | Path, dim: int) -> np.ndarray:
    """The vector flattened to (dim,) float32 (Forge's ``obtain_vector`` saves (1, 1, C)); OSError when the file
    cannot be read, ValueError when it is not a .npy array of ``dim`` numbers."""
    if not Path(path).is_file():
        raise OSError("no such file")
    v = np.load(path, allow_pickle=False)
    if not isinstance(v, np.ndarray) or v.dtype.kind not in "fiu" or v.size != dim:
        raise ValueError(
            f"holds {getattr(v, 'dtype', type(v).__name__)} of shape {getattr(v, 'shape', '?')}; need {dim} numbers (hidden_dim)"
        )
    return v.reshape(dim).astype(np.float32)
