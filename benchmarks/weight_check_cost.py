"""What the NaN/inf weight check (weights/checkpoint.py ``check_finite``) costs a build: ``read_checkpoint`` and
whole ``build --weights`` runs with the check and with it replaced by a no-op, alternated (docs/validation-input.md).

    PYTHONPATH=. python benchmarks/weight_check_cost.py [--builds N] [--out DIR]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from safetensors.torch import save_file

import yamlllm_export.weights.checkpoint as checkpoint
from yamlllm_export import build_model, export_onnx, load_spec

SPEC = {  # 44.6 M parameters: LLaMA-style, d 512, 4 layers, vocab 32,000 (178 MB of float32 weights)
    "name": "check-cost",
    "embedding": {"vocab_size": 32000, "max_position_embeddings": 256, "embedding_dim": 512, "positional_encoding": {"type": "rope"}},
    "num_layers": 4,
    "layer": {
        "hidden_dim": 512,
        "attention": {"num_heads": 8, "num_kv_heads": 4, "bias": False},
        "ffn": {"intermediate_size": 1408, "activation": "swiglu", "use_gated_activation": True, "bias": False},
        "layer_norm": {"type": "rmsnorm", "eps": 1e-5},
    },
}


def _no_check(*args: object) -> None:
    return None


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--builds", type=int, default=2, help="A/B pairs of whole builds (0: reads only)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    root = args.out or Path(tempfile.mkdtemp(prefix="check-cost-"))
    ckpt = root / "w.safetensors"
    if not ckpt.exists():
        model = build_model(load_spec(SPEC), seed=0)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(ckpt))
    print(f"{load_spec(SPEC).parameter_count():,} parameters, {ckpt.stat().st_size / 1e6:.0f} MB")
    real = checkpoint.check_finite
    modes: dict[str, Callable[..., None]] = {"check": real, "no check": _no_check}
    state = checkpoint.read_checkpoint(ckpt)
    alone = [_timed(lambda: [real(t, k, ckpt) for k, t in state.items()]) for _ in range(7)]
    print(f"check_finite over every tensor, in memory: median {statistics.median(alone[1:]) * 1e3:.0f} ms")
    reads: dict[str, list[float]] = {m: [] for m in modes}
    builds: dict[str, list[float]] = {m: [] for m in modes}
    for i in range(7):
        for mode in sorted(modes, reverse=bool(i % 2)):  # alternate which goes first: the machine is shared
            checkpoint.check_finite = modes[mode]
            reads[mode].append(_timed(lambda: checkpoint.read_checkpoint(ckpt)))
    for i in range(args.builds):
        for mode in sorted(modes, reverse=bool(i % 2)):
            checkpoint.check_finite = modes[mode]
            out = root / f"out-{i}-{mode.replace(' ', '-')}"
            builds[mode].append(_timed(lambda out=out: export_onnx(SPEC, out, target="ort", weights=ckpt)))
            shutil.rmtree(out)
    checkpoint.check_finite = real
    for mode in modes:
        print(f"read_checkpoint, {mode}: median {statistics.median(reads[mode][1:]) * 1e3:.0f} ms")
        if builds[mode]:
            print(f"build --weights, {mode}: {', '.join(f'{t:.1f}' for t in builds[mode])} s")


if __name__ == "__main__":
    main()
