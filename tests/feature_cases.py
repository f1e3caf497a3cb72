"""Spec dicts for the feature parity grids: one tiny base model and ``case(...)`` to change it.

``case("layer.attention.window_size", 8, "layer.attention.num_kv_heads", 2)`` returns a copy of ``BASE``
with those dotted keys set (``...`` deletes a key). Dims stay tiny so one export takes a few seconds.
"""

from __future__ import annotations

import copy
from typing import Any

BASE: dict[str, Any] = {
    "name": "tiny-feature",
    "embedding": {
        "vocab_size": 256,
        "max_position_embeddings": 96,
        "embedding_dim": 64,
        "positional_encoding": {"type": "rope", "rope_theta": 10000.0},
    },
    "num_layers": 2,
    "layer": {
        "hidden_dim": 64,
        "attention": {"num_heads": 4, "num_kv_heads": 2, "bias": False},
        "ffn": {"intermediate_size": 128, "activation": "swiglu", "use_gated_activation": True, "bias": False},
        "layer_norm": {"type": "rmsnorm", "eps": 1e-6},
    },
    "initialization": {"type": "gpt2"},
}


def case(*pairs: Any, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """``base`` (default ``BASE``) with each dotted key of ``pairs`` (key, value, key, value, ...) set."""
    d = copy.deepcopy(base or BASE)
    for path, value in zip(pairs[::2], pairs[1::2], strict=True):
        *parents, last = path.split(".")
        node = d
        for p in parents:
            node = node.setdefault(p, {})
        if value is ...:
            node.pop(last, None)
        else:
            node[last] = value
    return d
