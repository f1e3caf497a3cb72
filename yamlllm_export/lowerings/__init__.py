"""Lowering targets: for each, a table {custom op → onnxscript translation}, its opset and its post-export
fusion pass. One lowering per (op, target); the target is picked here and nowhere else.

Targets: ``ort`` (com.microsoft kernels + opset 18), ``onnx`` (standard opset-23 ops: Attention,
RotaryEmbedding, RMSNormalization; no com.microsoft) and ``portable`` (plain opset-18 ops).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from yamlllm_export.errors import BuildError
from yamlllm_export.spec.features import TARGETS


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    opset: int
    table: dict[Any, Callable[..., Any]]
    fuse: Callable[[Any], dict[str, int]] | None = None
    extra_opsets: dict[str, int] = field(default_factory=dict)


def targets() -> dict[str, Target]:
    from yamlllm_export import ops  # noqa: F401 - registers the custom ops the tables key on
    from yamlllm_export.lowerings import ort, portable, standard
    from yamlllm_export.lowerings.contrib_schemas import register_contrib_schemas

    register_contrib_schemas()
    return {
        "ort": Target(
            "ort",
            "ONNX Runtime contrib kernels (GroupQueryAttention, RotaryEmbedding, ...)",
            ort.OPSET,
            ort.TABLE,
            ort.fuse,
            {"com.microsoft": 1},
        ),
        "onnx": Target("onnx", "standard ONNX opset-23 ops (Attention, RotaryEmbedding, RMSNormalization)", standard.OPSET, standard.TABLE),
        "portable": Target("portable", "plain opset-18 ops, any ONNX runtime", portable.OPSET, portable.TABLE),
    }


TARGET_NAMES = TARGETS  # ort, onnx, portable (spec/features.py names them for the feature table)


def get_target(name: str) -> Target:
    if name not in TARGET_NAMES:
        raise BuildError(f"--target: unknown target {name!r} (choose from {', '.join(TARGET_NAMES)})")
    return targets()[name]
