"""Refuse a validation before anything is loaded when RAM or disk cannot hold it.

What is held at the peak: the PyTorch reference in float32 (built in the build's dtype, then upcast, so a
half-precision build briefly holds both), one ORT session (its initializers plus MatMul weights it
pre-packs: about twice the weights), and the activations of the largest forward on both sides.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from yamlllm_export.errors import BuildError
from yamlllm_export.export import resources as export_resources
from yamlllm_export.spec.sizes import DTYPE_BYTES, kv_cache_bytes_per_token
from yamlllm_export.spec.types import ModelSpec
from yamlllm_export.validate.checks import Settings

SESSION_FACTOR = 2.0  # ORT: initializers + pre-packed copies of MatMul weights
LIBRARIES = 1 << 30  # torch + onnxruntime + onnx loaded (0.42 GB measured for `build`), with headroom
REPORT_DISK = 16 << 20  # parity.json, parity.md and ORT's profile of the first CUDA run


@dataclass(frozen=True)
class Needs:
    reference: int
    session: int
    activations: int

    @property
    def ram(self) -> int:
        return self.reference + self.session + self.activations + LIBRARIES


def estimate(spec: ModelSpec, dtype: str, settings: Settings) -> Needs:
    n = spec.parameter_count()
    reference = n * 4 + (n * DTYPE_BYTES[dtype] if dtype != "float32" else 0)
    session = int(n * DTYPE_BYTES[dtype] * SESSION_FACTOR)
    vocab, heads = spec.embedding.vocab_size, spec.layer.attention.num_heads
    batch_tokens = settings.batch * (settings.prompt_len + settings.steps)
    long_tokens = settings.long_positions
    logits = 4 * vocab * (3 * batch_tokens + 2 * long_tokens)  # reference, ONNX, recompute; long: both sides
    scores = 4 * heads * max(settings.batch * (settings.prompt_len + settings.steps) ** 2, long_tokens**2) * 3
    cache = kv_cache_bytes_per_token(spec, "float32") * (batch_tokens + long_tokens) * 3
    return Needs(reference, session, logits + scores + cache)


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB"


def check_resources(spec: ModelSpec, dtype: str, settings: Settings, report_dir: Path) -> Needs:
    """Raise ``BuildError`` when the machine cannot hold the validation; returns the estimate otherwise."""
    needs = estimate(spec, dtype, settings)
    have = export_resources.available_ram()
    if needs.ram > have:
        raise BuildError(
            f"validate needs about {_gb(needs.ram)} of RAM (reference {_gb(needs.reference)} in float32, session "
            f"{_gb(needs.session)}, activations {_gb(needs.activations)}) but {_gb(have)} is available; refused before "
            "loading anything (try a smaller --batch or --prompt-len, or a machine with more memory)"
        )
    probe = report_dir
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < REPORT_DISK:
        raise BuildError(f"validate needs {REPORT_DISK >> 20} MB of disk at {probe} for its report but {free >> 20} MB is free; refused")
    return needs
