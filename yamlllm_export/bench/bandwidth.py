"""The machine's read bandwidth, measured the way a decode step reads its weights: a sum over a buffer far
larger than the caches, with every thread (``torch.sum`` splits the reduction across the intra-op pool)."""

from __future__ import annotations

import statistics
import time

from yamlllm_export.bench.types import Round

PROBE_BYTES = 1 << 30  # 1 GiB: well past any last-level cache


class BandwidthProbe:
    def __init__(self, device: str = "cpu", nbytes: int = PROBE_BYTES) -> None:
        import torch

        self.torch = torch
        self.device = torch.device("cuda" if device == "cuda" else "cpu")
        self.buffer = torch.ones(nbytes // 4, dtype=torch.float32, device=self.device)
        self.buffer.sum()  # first touch: page faults are not bandwidth

    def _sync(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()

    def round(self, repeats: int = 5) -> Round:
        """GB/s (1e9 bytes per second): the median of ``repeats`` full sums."""
        times = []
        for _ in range(repeats):
            self._sync()
            start = time.perf_counter()
            self.buffer.sum()
            self._sync()
            times.append(time.perf_counter() - start)
        seconds = statistics.median(times)
        return Round(prefill_s=0.0, decode_s=seconds, bandwidth_gbs=self.buffer.numel() * 4 / seconds / 1e9)
