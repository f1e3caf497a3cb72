"""A benchmark's results: rows per system, written as ``bench.json`` and ``bench.md``, plotted as PNGs, and
shown as a rich table. Every speed is a median over the measured rounds (see ``measure``)."""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
from dataclasses import asdict, dataclass
from pathlib import Path

from yamlllm_export.bench.measure import Measured
from yamlllm_export.bench.types import Workload

MIB = 1 << 20


@dataclass(frozen=True)
class Row:
    label: str
    kind: str
    ep: str
    folder: str
    logits: str | None = None  # positions whose logits each forward computes: "last" or "all" (None: unknown)
    cache: str | None = None  # "kv", or "window": every step recomputes the whole window (a full-window graph)
    prefill_ms: float | None = None
    prompt_tok_s: float | None = None
    decode_tok_s: float | None = None
    achieved_gbs: float | None = None  # weight bytes per decode step x steps per second
    peak_rss_mib: float | None = None
    model_rss_mib: float | None = None  # peak minus the process's RSS before the model loaded
    device_mib: float | None = None
    parameter_count: int | None = None
    kv_cache_bytes_per_token: int | None = None
    build_s: float | None = None  # the folder's ONNX build: on the ort row only (the PyTorch rows build nothing)
    error: str = ""


def row_for(m: Measured, workload: Workload) -> Row:
    s, info = m.system, m.system.info
    if m.error or not m.rounds or s.kind == "bandwidth":
        return Row(label=s.label, kind=s.kind, ep=s.ep, folder=s.folder, error=m.error)
    prefill, decode = m.median("prefill_s"), m.median("decode_s")
    steps_per_s = workload.gen_len / decode
    onnx = s.kind == "ort"
    return Row(
        label=s.label,
        kind=s.kind,
        ep=s.ep,
        folder=s.folder,
        logits=(info.logits if info else None) if onnx else "last",  # the PyTorch loop asks for the last only
        cache=info.cache if info else None,
        prefill_ms=prefill * 1e3,
        prompt_tok_s=workload.batch * workload.prompt_len / prefill,
        decode_tok_s=workload.batch * steps_per_s,
        achieved_gbs=info.weight_bytes_per_token * steps_per_s / 1e9 if info else None,
        peak_rss_mib=m.peak_rss / MIB,
        model_rss_mib=(m.peak_rss - m.baseline_rss) / MIB,
        device_mib=m.device_bytes / MIB if m.device_bytes is not None else None,
        parameter_count=info.parameter_count if info else None,
        kv_cache_bytes_per_token=info.kv_cache_bytes_per_token if info else None,
        build_s=info.build_seconds if info and onnx else None,
    )


def machine() -> dict:
    """What the numbers were measured on."""
    import onnxruntime

    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")), cpu)
    return {
        "date": datetime.date.today().isoformat(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "onnxruntime": onnxruntime.__version__,
        "python": platform.python_version(),
        "load_average_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,  # others' work on a shared machine
    }


@dataclass(frozen=True)
class BenchReport:
    workload: Workload
    rounds: int
    warmup: int
    bandwidth_gbs: float | None  # the read-bandwidth probe's median, None when not measured
    rows: tuple[Row, ...]
    measured: tuple[Measured, ...]
    machine: dict
    fresh: bool = False  # every round in a new worker session (``measure(fresh=True)``)

    def to_dict(self) -> dict:
        raw = {
            m.system.label: [{"prefill_s": r.prefill_s, "decode_s": r.decode_s, "bandwidth_gbs": r.bandwidth_gbs} for r in m.rounds]
            for m in self.measured
        }
        return {
            "workload": self.workload.to_dict(),
            "rounds": self.rounds,
            "warmup": self.warmup,
            "fresh_sessions": self.fresh,
            "machine": self.machine,
            "bandwidth_gbs": self.bandwidth_gbs,
            "rows": [asdict(r) for r in self.rows],
            "raw_rounds": raw,
        }

    def write(self, out_dir: Path, plots: bool = True) -> list[Path]:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "bench.json").write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        (out_dir / "bench.md").write_text(markdown(self))
        written = [out_dir / "bench.json", out_dir / "bench.md"]
        if plots:
            written += plot(self, out_dir)
        return written


def build_report(measured: list[Measured], workload: Workload, rounds: int, warmup: int, fresh: bool = False) -> BenchReport:
    probe = [m for m in measured if m.system.kind == "bandwidth" and m.rounds]
    bandwidth = probe[0].median("bandwidth_gbs") if probe else None
    rows = tuple(row_for(m, workload) for m in measured if m.system.kind != "bandwidth")
    return BenchReport(workload, rounds, warmup, bandwidth, rows, tuple(measured), machine(), fresh)


COLUMNS = (  # (header, Row field, format)
    ("system", "label", "{}"),
    ("backend", "kind", "{}"),
    ("EP", "ep", "{}"),
    ("logits", "logits", "{}"),
    ("cache", "cache", "{}"),
    ("prefill ms", "prefill_ms", "{:.1f}"),
    ("prompt tok/s", "prompt_tok_s", "{:.0f}"),
    ("decode tok/s", "decode_tok_s", "{:.1f}"),
    ("GB/s", "achieved_gbs", "{:.1f}"),
    ("peak RSS MiB", "peak_rss_mib", "{:.0f}"),
    ("model RSS MiB", "model_rss_mib", "{:.0f}"),
    ("device MiB", "device_mib", "{:.0f}"),
    ("params", "parameter_count", "{:,}"),
    ("KV B/token", "kv_cache_bytes_per_token", "{:,}"),
    ("build s", "build_s", "{:.1f}"),
)


def cells(row: Row) -> list[str]:
    if row.error:
        return [row.label, row.kind, row.ep, f"failed: {row.error}"] + [""] * (len(COLUMNS) - 4)
    out = []
    for _, name, fmt in COLUMNS:
        value = getattr(row, name)
        out.append("-" if value is None else fmt.format(value))
    return out


def header(report: BenchReport) -> str:
    w, m = report.workload, report.machine
    bw = f"{report.bandwidth_gbs:.1f} GB/s" if report.bandwidth_gbs else "not measured"
    how = (
        f"median of {report.rounds} alternated rounds, each in a new session after {report.warmup} warm-up run(s)"
        if report.fresh
        else f"median of {report.rounds} alternated rounds after {report.warmup} warm-up"
    )
    return (
        f"batch {w.batch}, prompt {w.prompt_len}, {w.gen_len} new tokens; {how}; read bandwidth {bw}; "
        f"{m['date']}, {m['cpu']} ({m['cpu_count']} CPUs), onnxruntime {m['onnxruntime']}"
    )


def markdown(report: BenchReport) -> str:
    head = "| " + " | ".join(h for h, _, _ in COLUMNS) + " |"
    rule = "|" + "---|" * len(COLUMNS)
    body = ["| " + " | ".join(cells(r)) + " |" for r in report.rows]
    return "\n".join([header(report), "", head, rule, *body]) + "\n"


def plot(report: BenchReport, out_dir: Path) -> list[Path]:
    """decode_tok_s.png and prefill_ms.png: one bar per system (matplotlib, headless); none without
    matplotlib (the ``bench`` extra), since the numbers are all in bench.json and bench.md."""
    try:
        import matplotlib
    except ImportError:
        return []

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in report.rows if not r.error and r.decode_tok_s is not None and math.isfinite(r.decode_tok_s)]
    written = []
    for field, title in (("decode_tok_s", "decode tokens/s (higher is better)"), ("prefill_ms", "prefill latency ms (lower is better)")):
        fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(rows) + 2), 3.2))
        labels = [r.label for r in rows]
        values = [getattr(r, field) for r in rows]
        ax.bar(labels, values, color="#4477aa")
        ax.set_title(title)
        ax.tick_params(axis="x", rotation=20, labelsize=8)
        for i, v in enumerate(values):
            ax.annotate(f"{v:.1f}", (i, v), ha="center", va="bottom", fontsize=8)
        fig.tight_layout()
        path = out_dir / f"{field}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written
