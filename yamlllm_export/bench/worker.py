"""One system in its own process, so that its peak RSS (and device memory) is its own.

Protocol (JSON lines): the parent writes ``{"system": ..., "workload": ...}``; the worker loads and answers
``{"ready": ..., "baseline_rss": ...}``; then each ``round`` line gets a ``Round`` back and ``exit`` gets the
peak memory. Any failure is answered ``{"error": "<one line>"}``. Library chatter on stdout is sent to
stderr, so only the protocol uses stdout.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from yamlllm_export.bench.types import ModelInfo, System, Workload


def _rss_bytes() -> int:
    """Peak resident set size of this process so far. /proc's VmHWM is this process's own; getrusage's
    ru_maxrss is not: Linux carries it over from the parent through fork and exec."""
    status = Path("/proc/self/status")
    if status.is_file():
        line = next((x for x in status.read_text().splitlines() if x.startswith("VmHWM:")), "")
        if line:
            return int(line.split()[1]) * 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)


def _device_bytes(system: System) -> int | None:
    """Device memory this process holds on CUDA: torch's peak allocation, or for ORT what the driver reports."""
    if system.ep != "cuda":
        return None
    if system.kind in ("eager", "compile"):
        import torch

        return int(torch.cuda.max_memory_allocated())
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],  # noqa: S607
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    rows = [line.split(",") for line in out.splitlines() if line.strip()]
    return next((int(mib) * (1 << 20) for pid, mib in rows if int(pid) == os.getpid()), None)


def runner_class(kind: str) -> Any:
    """The runner of a system kind; importing it first lets the baseline RSS include the libraries."""
    if kind == "ort":
        from yamlllm_export.bench.ort_loop import OrtRunner

        return OrtRunner
    if kind in ("eager", "compile"):
        from yamlllm_export.bench.torch_loop import TorchRunner

        return TorchRunner
    if kind == "bandwidth":
        from yamlllm_export.bench.bandwidth import BandwidthProbe

        return lambda system, _workload: BandwidthProbe(system.ep)
    raise ValueError(f"unknown system kind {kind!r}")


def serve(proto: Any) -> None:
    def send(obj: dict) -> None:
        proto.write(json.dumps(obj) + "\n")
        proto.flush()

    try:
        request = json.loads(sys.stdin.readline())
        raw = request["system"]
        info = ModelInfo(**raw["info"]) if raw.get("info") else None
        system = System(**{**raw, "info": info})
        factory = runner_class(system.kind)
        baseline = _rss_bytes()  # libraries loaded, model not yet
        runner = factory(system, Workload(**request["workload"]))
        send({"ready": True, "baseline_rss": baseline})
        for line in sys.stdin:
            if line.strip() == "round":
                send(asdict(runner.round()))
            elif line.strip() == "exit":
                send({"peak_rss": _rss_bytes(), "device_bytes": _device_bytes(system)})
                return
    except Exception as err:  # noqa: BLE001 - every failure goes back to the parent as one line
        text = " ".join(str(err).split())[:300]
        send({"error": f"{type(err).__name__}: {text}" if text else type(err).__name__})


def main() -> None:
    proto = os.fdopen(os.dup(1), "w")  # the protocol keeps the real stdout ...
    os.dup2(2, 1)  # ... and whatever else prints (ORT, torch, C code) goes to stderr
    sys.stdout = sys.stderr
    serve(proto)


if __name__ == "__main__":
    main()
