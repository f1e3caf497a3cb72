"""How big a model `build` handles on this machine: wall time, peak RSS and disk of one build, and the largest
model each dtype could build here from the measured memory.

    python benchmarks/scale.py [SPEC] [--dtype float16] [--quant int4] [--target ort] [--keep] [--out FILE.json]

SPEC defaults to models/llama-style.yaml (6.7 B). The build runs as `python -m yamlllm_export build` in a
child process; its peak RSS is the child's ru_maxrss (resource.getrusage(RUSAGE_CHILDREN)), so nothing of this
script's own memory counts. The output folder goes to a temporary directory beside --out-dir and is deleted
afterwards unless --keep. One JSON row is appended to --out (default benchmarks/results/scale.json) and printed
as a markdown row, with the largest model each dtype could build here (``largest_buildable``: MemAvailable and
the free disk against export/resources.py's estimates, which this row's measured peak checks).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from yamlllm_export.export.resources import (  # noqa: E402
    DISK_FACTOR,
    RAM_FACTOR_EXTERNAL,
    RAM_OVERHEAD,
    available_ram,
    build_ram,
    largest_weight,
)
from yamlllm_export.spec import load_spec  # noqa: E402
from yamlllm_export.spec.sizes import DTYPE_BYTES  # noqa: E402

GB = 1e9


def run_build(spec: Path, out: Path, args: argparse.Namespace) -> tuple[float, float, int, str]:
    """(wall seconds, CPU seconds, peak RSS bytes of the build process, its first output line)."""
    cmd = [sys.executable, "-m", "yamlllm_export", "build", str(spec), "-o", str(out), "--dtype", args.dtype, "--target", args.target]
    cmd += ["--quant", args.quant] if args.quant else []
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"build failed (exit {proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024, proc.stdout.strip().splitlines()[0]  # KiB on Linux


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def largest_buildable(ram: int, disk: int) -> dict[str, dict[str, float]]:
    """Billions of parameters buildable here per dtype. Streamed (a seeded build, quantized or not): RAM holds
    the graph and one weight, so the free disk bounds the size (weights written once; --quant writes them
    twice, float then quantized). Held in RAM (--weights): export/resources.py's estimate bounds it."""
    room = max(0, ram - RAM_OVERHEAD)
    return {
        dtype: {
            "streamed_disk_bound_b": round(disk / (size * DISK_FACTOR) / 1e9, 1),
            "weights_in_ram_b": round(room / (size * RAM_FACTOR_EXTERNAL) / 1e9, 1),
        }
        for dtype, size in DTYPE_BYTES.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", nargs="?", default=str(ROOT / "models" / "llama-style.yaml"))
    parser.add_argument("--dtype", default="float16")
    parser.add_argument("--quant", default=None)
    parser.add_argument("--target", default="ort")
    parser.add_argument("--out-dir", default=tempfile.gettempdir(), help="where the temporary build folder goes")
    parser.add_argument("--out", default=str(HERE / "results" / "scale.json"))
    parser.add_argument("--keep", action="store_true", help="keep the built folder")
    args = parser.parse_args()

    spec_path = Path(args.spec)
    spec = load_spec(spec_path)
    params = spec.parameter_count()
    weight_bytes = params * DTYPE_BYTES[args.dtype]
    streamed = True  # a seeded build streams, quantized or not
    estimate = build_ram(params, DTYPE_BYTES[args.dtype], largest_weight(spec), mode="streamed", quant=args.quant is not None)
    ram_before, disk_before = available_ram(), shutil.disk_usage(args.out_dir).free
    out = Path(tempfile.mkdtemp(prefix="scale-", dir=args.out_dir)) / "model"
    try:
        wall, cpu, peak, line = run_build(spec_path, out, args)
        disk = folder_bytes(out)
        data = (out / "model.onnx.data").stat().st_size
    finally:
        if not args.keep:
            shutil.rmtree(out.parent, ignore_errors=True)
    row = {
        "spec": spec_path.name,
        "parameters": params,
        "dtype": args.dtype,
        "quant": args.quant,
        "target": args.target,
        "streamed": streamed,
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 1),  # wall / cpu shows how busy the machine was
        "peak_rss_gb": round(peak / GB, 2),
        "weight_gb": round(weight_bytes / GB, 2),
        "peak_over_weights": round(peak / weight_bytes, 3),
        "estimate_gb": round(estimate / GB, 2),
        "disk_gb": round(disk / GB, 2),
        "data_gb": round(data / GB, 2),
        "available_ram_gb": round(ram_before / GB, 1),
        "free_disk_gb": round(disk_before / GB, 1),
        "cpus": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 1),
        "build_line": line,
        "largest_buildable": largest_buildable(ram_before, disk_before),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    path = Path(args.out)
    rows = json.loads(path.read_text()) if path.exists() else []
    path.write_text(json.dumps([*rows, row], indent=2) + "\n")
    print("| spec | params | dtype | quant | wall s | peak RSS GB | weights GB | peak/weights | disk GB |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {row['spec']} | {params / 1e9:.2f} B | {args.dtype} | {args.quant or '-'} | {row['wall_s']} | {row['peak_rss_gb']} | "
        f"{row['weight_gb']} | {row['peak_over_weights']} | {row['disk_gb']} |"
    )
    print(f"largest model buildable here (B parameters): {row['largest_buildable']}")


if __name__ == "__main__":
    main()
