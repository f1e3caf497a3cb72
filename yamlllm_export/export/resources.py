"""Refuse a build before any work starts when RAM or disk cannot hold it (never die of memory halfway)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from yamlllm_export.errors import BuildError
from yamlllm_export.spec.types import ModelSpec

GiB = 1 << 30
# Peak RSS of `build` holding the torch model (--weights, --quant), measured (torch 2.13, 2026-11-23): libraries
# alone 0.42 GB; 1.87 GB of weights saved as external data 2.41 GB (~1.06x: initializers reference the torch
# tensors). (Saved inline, as builds did before, 0.49 GB of weights took 2.37 GB.)
RAM_FACTOR_EXTERNAL, RAM_OVERHEAD = 1.25, 1 * GiB
# A seeded build streams its weights (export/streamed.py): it holds the graph and one weight at a time, made
# in float32, cast, transposed and serialised. Measured (2026-12-02): a 1.07 B model at fp16 (2.1 GB of
# weights, largest weight 131 M values = 0.52 GB in float32) peaked at 1.21 GB.
STREAM_FACTOR, STREAM_OVERHEAD = 2.0, 1 * GiB  # × the largest weight's float32 bytes
# --quant quantizes one weight at a time (quant/folder.py): on top of the build, the weight read in, the
# quantizer's float32 copy and blocks, and a tied head's transposed copy. (Quantizing the whole loaded model, as
# builds did before, peaked at 5.4 GB for 0.67 B parameters at fp16.) Measured (2026-12-02): 1.07 B at fp16
# to int4 (largest weight 131 M values) peaked at 1.93 GB (the float build alone 1.21 GB), estimated 4.22 GB;
# the 6.7 B llama-style.yaml 2.00 GB (float alone 1.30 GB), estimated 4.22 GB (factor 4; now 2: 3.17 GB).
QUANT_FACTOR = 2.0  # × the largest weight's float32 bytes (measured +0.7 GB = 1.35×; margin)
DISK_FACTOR, DISK_OVERHEAD = 1.05, 64 << 20


def available_ram() -> int:
    """Bytes of memory available to a new allocation (MemAvailable on Linux)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _gb(n: int | float) -> str:
    return f"{n / 1e9:.1f} GB"


def build_ram(n_params: int, dtype_bytes: int, largest_values: int, *, mode: str, quant: bool = False) -> int:
    """Estimated peak RSS of a build. ``mode``: ``streamed`` (a seeded build: the graph and the largest
    weight, ``largest_values`` values) or ``in_memory`` (--weights or a given model: the whole model);
    ``quant``: then quantized one weight at a time."""
    if mode == "streamed":
        need = largest_values * 4 * STREAM_FACTOR + STREAM_OVERHEAD
    else:
        need = n_params * dtype_bytes * RAM_FACTOR_EXTERNAL + RAM_OVERHEAD
    return int(need + (largest_values * 4 * QUANT_FACTOR if quant else 0))


def largest_weight(spec: ModelSpec) -> int:
    """Values in the model's largest parameter (shapes from the meta-device skeleton; nothing allocated)."""
    from yamlllm_export.model.builders import skeleton

    return max(p.numel() for p in skeleton(spec).parameters())


def check_resources(weight_bytes: int, out_dir: Path, *, need_ram: int, what: str = "build") -> None:
    have_ram = available_ram()
    if need_ram > have_ram:
        raise BuildError(
            f"{what} needs about {_gb(need_ram)} of RAM ({_gb(weight_bytes)} of weights) but {_gb(have_ram)} is available; "
            "refused before starting (try --dtype float16, which halves the weights, or a machine with more memory)"
        )
    probe = out_dir
    while not probe.exists():
        probe = probe.parent
    need_disk = int(weight_bytes * DISK_FACTOR + DISK_OVERHEAD)
    have_disk = shutil.disk_usage(probe).free
    if need_disk > have_disk:
        raise BuildError(f"{what} needs about {_gb(need_disk)} of disk at {probe} but {_gb(have_disk)} is free; refused before starting")
