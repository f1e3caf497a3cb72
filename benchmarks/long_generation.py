"""Long generations: a batch of different-length prompts generated up to the context limit, with this process's
RSS sampled at every step. Shows that memory grows with the KV cache only (at most 3x its bytes at the context:
during a step the past, the present = past ++ new, and the attention kernel's working copy are alive; the peak
of identical runs settles instead of climbing) and that every row ends cleanly (finish reason ``length``, the
longest row filling the context exactly).

    python benchmarks/long_generation.py [--context 2048] [--lengths 16,128,512,1024] [--out FILE.json]

A small LLaMA-shaped model (4 layers, 256 wide, 4 KV heads of 64: 8 KiB of fp32 cache per token and row) is
built with the given context into a temporary folder and run on the CPU EP with greedy decoding and no stop
token. A second run starts from a prompt one token short of the context (one new token, then the end).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from yamlllm_export import load_spec  # noqa: E402
from yamlllm_export.runtime.generator import Generator  # noqa: E402
from yamlllm_export.spec.sizes import kv_cache_bytes_per_token  # noqa: E402

MB = 1e6


def spec_dict(context: int) -> dict:
    d = load_spec(HERE.parent / "models" / "tiny-llama.yaml").to_dict()
    d["name"] = f"LongContext{context}"
    d["embedding"].update(max_position_embeddings=context, embedding_dim=256, vocab_size=512)
    d["layer"]["hidden_dim"] = 256
    d["layer"]["attention"].update(num_heads=4, num_kv_heads=4, head_dim=64)
    d["layer"]["ffn"]["intermediate_size"] = 512
    d["num_layers"] = 4
    return d


def build(spec: dict, tmp: Path) -> Path:
    """Built in a child process, so that torch and the exporter are not in this process's RSS."""
    (tmp / "spec.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
    subprocess.run([sys.executable, "-m", "yamlllm_export", "build", str(tmp / "spec.yaml"), "-o", str(tmp / "model")], check=True, env=env)
    return tmp / "model"


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def run(gen: Generator, prompts: list[list[int]]) -> dict:
    samples: list[int] = []

    def on_token(row: int, token: int) -> None:
        if row == 0:  # row 0 never stops early here (no stop token): one sample per step
            samples.append(rss())

    before = rss()
    result = gen.generate(prompts, max_new_tokens=1 << 20, stop_tokens=(), on_token=on_token)
    context = gen.spec.embedding.max_position_embeddings
    longest = max(len(p) for p in prompts)
    kv = kv_cache_bytes_per_token(gen.spec, "float32") * len(prompts) * context  # the whole cache at the end
    after_prefill = samples[0]
    return {
        "prompt_lengths": [len(p) for p in prompts],
        "new_tokens": [len(t) for t in result.tokens],
        "finish_reasons": list(result.finish_reasons),
        "longest_row_fills_context": longest + len(result.tokens[0]) == context,
        "steps": result.steps,
        "decode_tok_s": round(result.decode_tokens_per_second, 1),
        "rss_before_mb": round(before / MB, 1),
        "rss_after_prefill_mb": round(after_prefill / MB, 1),
        "rss_peak_mb": round(max(samples) / MB, 1),
        "rss_last_mb": round(samples[-1] / MB, 1),
        "growth_after_prefill_mb": round((max(samples) - after_prefill) / MB, 1),
        "kv_cache_at_context_mb": round(kv / MB, 1),
        "rss_quartiles_mb": [round(samples[int(q * (len(samples) - 1))] / MB, 1) for q in (0, 0.25, 0.5, 0.75, 1)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--context", type=int, default=2048)
    parser.add_argument("--lengths", default="16,128,512,1024", help="prompt lengths of the batch, comma-separated")
    parser.add_argument("--out", default=str(HERE / "results" / "long_generation.json"))
    args = parser.parse_args()
    lengths = [int(n) for n in args.lengths.split(",")]

    with tempfile.TemporaryDirectory(prefix="long-gen-") as tmp:
        folder = build(spec_dict(args.context), Path(tmp))
        gen = Generator(folder)
        prompts = [[(7 * i + row) % 500 + 1 for i in range(n)] for row, n in enumerate(lengths)]
        started = time.perf_counter()
        batch = run(gen, prompts)
        batch["wall_s"] = round(time.perf_counter() - started, 1)
        repeats = [run(gen, prompts) for _ in range(2)]  # the same batch again: the peak must settle, not climb
        edge = run(gen, [prompts[-1][:1] * (args.context - 1)])
    report = {"context": args.context, "batch": batch, "repeats": repeats, "one_short_of_context": edge}
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    ok = all(r == "length" for r in batch["finish_reasons"]) and batch["longest_row_fills_context"]
    ok &= edge["new_tokens"] == [1] and edge["finish_reasons"] == ["length"]
    # during a step the past, the present (past ++ new) and the attention kernel's working copy are alive
    ok &= batch["growth_after_prefill_mb"] <= 3 * batch["kv_cache_at_context_mb"]
    peaks = [r["rss_peak_mb"] for r in (batch, *repeats)]
    print(f"peak RSS of three identical runs: {peaks} MB; KV cache at the context {batch['kv_cache_at_context_mb']} MB")
    ok &= peaks[2] - peaks[1] <= 0.1 * batch["kv_cache_at_context_mb"] + 1  # settled: no per-run leak
    print("rows end at the context; memory grows with the KV cache only" if ok else "CHECK FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
