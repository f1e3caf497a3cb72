"""Where an ONNX decoder spends its time on ORT: one prefill and a few decode steps with ORT's profiler on,
time per op type, split into prefill and decode. The same loop as ``bench`` (``bench.ort_loop``).

    python benchmarks/profile_ort.py FOLDER [FOLDER ...] [--prompt-len 128] [--steps 16] [--warmup 1]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402

from yamlllm_export.bench.ort_loop import contract_for  # noqa: E402
from yamlllm_export.runtime.stepper import GraphStepper  # noqa: E402


def profile(folder: Path, prompt_len: int, steps: int, head_dim: int | None, warmup: int) -> tuple[Counter, Counter, int]:
    """Kernel time per op type of one prefill and ``steps`` decode steps, after ``warmup`` passes that are not counted
    of the same (the first run pages the weights in: its Gather alone can take most of a prefill)."""
    with tempfile.TemporaryDirectory() as tmp:
        opts = ort.SessionOptions()
        opts.enable_profiling, opts.profile_file_prefix = True, str(Path(tmp) / "p")
        session = ort.InferenceSession(str(folder / "model.onnx"), opts, providers=["CPUExecutionProvider"])
        stepper = GraphStepper.for_session(session, contract_for(folder, session, head_dim))
        ids = np.random.default_rng(0).integers(3, stepper.contract.vocab_size, (1, prompt_len))
        mask = np.ones((1, prompt_len + steps), np.int64)
        for _ in range(warmup + 1):
            logits, past = stepper.step(ids, mask[:, :prompt_len], stepper.empty_past(1))
            for i in range(steps):
                logits, past = stepper.step(logits[:, -1].argmax(-1)[:, None], mask[:, : prompt_len + i + 1], past)
        events = json.loads(Path(session.end_profiling()).read_text())
    runs = sorted((e for e in events if e.get("name") == "model_run"), key=lambda e: e["ts"])
    prefill_run = runs[warmup * (steps + 1)]  # the measured pass: its prefill, then its steps
    start, prefill_end = prefill_run["ts"], prefill_run["ts"] + prefill_run["dur"]
    prefill, decode = Counter(), Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= start:
            (prefill if e["ts"] < prefill_end else decode)[e["args"]["op_name"]] += e["dur"]
    nodes = len({e["name"] for e in events if e.get("cat") == "Node"})
    return prefill, decode, nodes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="+", type=Path)
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--head-dim", type=int, default=None)
    ap.add_argument("--warmup", type=int, default=1, help="passes run first and not counted (default 1)")
    args = ap.parse_args()
    for folder in args.folders:
        prefill, decode, nodes = profile(folder, args.prompt_len, args.steps, args.head_dim, args.warmup)
        print(f"\n{folder} ({nodes} kernels)")
        for name, counter, n in (("prefill", prefill, 1), (f"decode (per step, {args.steps} steps)", decode, args.steps)):
            total = sum(counter.values())
            print(f"  {name}: {total / n / 1e3:.2f} ms in kernels")
            for op, us in counter.most_common(8):
                print(f"    {op:40s} {us / n / 1e3:8.2f} ms  {100 * us / total:5.1f} %")


if __name__ == "__main__":
    main()
