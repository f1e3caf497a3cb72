"""The reference comparison (issue 7): one LLaMA-style model, the same weights, exported by yamlllm-export,
the onnxruntime-genai model builder and mobius, all run by the same plain-ORT loop, beside PyTorch eager
and torch.compile (static cache).

    python benchmarks/run.py [--rounds 7] [--work DIR] [--out benchmarks/results] [--small] [--reuse] [--no-eager] [--no-compile]
        [--same-session] [--quant] [--smollm2]

--quant adds int4 and int8 rows (issue 14): ours (`build --quant`, default recipe: block 32, accuracy level 4, int8
LM head) vs the builder's `-p int4 -e cpu` / `-p int8 -e cpu` (block 32, accuracy level 4, its own head
treatment: int4 / int8), their perplexity on the fixed English text, and the quantization ratios.
--smollm2 runs the real SmolLM2-135M-Instruct (tests/smollm2.py's cached HF folder) instead of the 125 M model.

Writes bench.json / bench.md / plots and ratios.json / ratios.md to ``--out``. Every build is timed as the
wall time of its command line (process start included), once, as a user would run it; so is a plain
``torch.onnx.export(dynamo=True)`` of the Hugging Face model (prefill graph, no cache) for scale.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from hf_llama import write_hf_llama  # noqa: E402

from yamlllm_export.bench.measure import measure  # noqa: E402
from yamlllm_export.bench.report import build_report  # noqa: E402
from yamlllm_export.bench.runner import decode_bytes_per_token, folder_info  # noqa: E402
from yamlllm_export.bench.types import ModelInfo, System, Workload  # noqa: E402
from yamlllm_export.spec import load_spec  # noqa: E402
from yamlllm_export.spec.sizes import kv_cache_bytes_per_token  # noqa: E402

SMALL = {"num_hidden_layers": 2, "hidden_size": 256, "intermediate_size": 512, "num_attention_heads": 4, "num_key_value_heads": 2}
PLAIN_EXPORT = """
import sys, torch, warnings, logging
warnings.simplefilter("ignore"); logging.getLogger("torch.onnx").setLevel(logging.ERROR)
from transformers import LlamaForCausalLM
model = LlamaForCausalLM.from_pretrained(sys.argv[1], torch_dtype=torch.float32).eval()
class Logits(torch.nn.Module):
    def __init__(self, m): super().__init__(); self.m = m
    def forward(self, ids, mask): return self.m(input_ids=ids, attention_mask=mask, use_cache=False).logits
ids, mask = torch.zeros(2, 8, dtype=torch.int64), torch.ones(2, 8, dtype=torch.int64)
b, s = torch.export.Dim("batch"), torch.export.Dim("seq")
torch.onnx.export(Logits(model), (ids, mask), dynamic_shapes=({0: b, 1: s}, {0: b, 1: s}), dynamo=True, optimize=True).save(sys.argv[2])
"""


def timed(cmd: list[str], log: Path) -> float:
    start = time.perf_counter()
    with log.open("w") as out:
        subprocess.run(cmd, check=True, stdout=out, stderr=subprocess.STDOUT)
    return time.perf_counter() - start


QUANT_BUILDS = ("yamlllm-export int4", "yamlllm-export int8", "onnxruntime-genai int4", "onnxruntime-genai int8")


def build_all(hf: Path, work: Path, reuse: bool, quant: bool = False) -> dict[str, tuple[Path, float]]:
    """{name: (folder, build seconds)} for every exporter; with ``reuse``, the builds (and their times)
    recorded in ``work/builds.json`` by an earlier run."""
    record = work / "builds.json"
    if reuse and record.is_file():
        return {k: (Path(f), t) for k, (f, t) in json.loads(record.read_text()).items()}
    py, cli = sys.executable, [sys.executable, "-m", "yamlllm_export"]
    spec = work / "model.yaml"
    builds = {
        "yamlllm-export": (work / "ours", [*cli, "build", str(spec), "-o", str(work / "ours"), "--weights", str(hf), "--logits", "last", "--overwrite"]),
        "yamlllm-export (all logits)": (work / "ours-all", [*cli, "build", str(spec), "-o", str(work / "ours-all"), "--weights", str(hf), "--overwrite"]),
        "onnxruntime-genai": (work / "genai", [py, "-m", "onnxruntime_genai.models.builder", "-i", str(hf), "-o", str(work / "genai"), "-p", "fp32", "-e", "cpu"]),
        "mobius": (work / "mobius", ["mobius", "build", "--config", str(hf), "--optimize", "--ep", "cpu", str(work / "mobius")]),
        "plain torch.onnx.export": (work / "plain", [py, "-c", PLAIN_EXPORT, str(hf), str(work / "plain" / "model.onnx")]),
    }  # fmt: skip
    if quant:  # our default recipe vs the builder's CPU recipes; all logits: perplexity needs every position
        for bits in ("int4", "int8"):
            builds[f"yamlllm-export {bits}"] = (
                work / f"ours-{bits}",
                [*cli, "build", str(spec), "-o", str(work / f"ours-{bits}"), "--weights", str(hf), "--quant", bits, "--overwrite"],
            )
            builds[f"onnxruntime-genai {bits}"] = (
                work / f"genai-{bits}",
                [py, "-m", "onnxruntime_genai.models.builder", "-i", str(hf), "-o", str(work / f"genai-{bits}"), "-p", bits, "-e", "cpu"],
            )
    (work / "plain").mkdir(exist_ok=True)
    import_s = timed([*cli, "import-hf", str(hf), "-o", str(spec), "--overwrite"], work / "import-hf.log")
    out = {}
    for name, (folder, cmd) in builds.items():
        seconds = timed(cmd, work / f"{folder.name}.log")
        out[name] = (folder, seconds + (import_s if name.startswith("yamlllm-export") else 0.0))
        print(f"built {name} in {out[name][1]:.1f} s", flush=True)
    record.write_text(json.dumps({k: (str(f), t) for k, (f, t) in out.items()}, indent=2) + "\n")
    return out


def ratios(report: dict, builds: dict[str, float]) -> dict:
    rows = {r["label"]: r for r in report["rows"]}
    ours, peers = rows["yamlllm-export"], [rows[p] for p in ("onnxruntime-genai", "mobius") if not rows[p]["error"]]
    best_decode = max(peers, key=lambda r: r["decode_tok_s"])
    best_prefill = min(peers, key=lambda r: r["prefill_ms"])
    absent = {"decode_tok_s": math.nan, "prefill_ms": math.nan, "error": ""}
    eager, compiled = rows.get("PyTorch eager", absent), rows.get("PyTorch compile", absent)
    compiled = absent if compiled["error"] else compiled
    bw = report["bandwidth_gbs"]
    return {
        "decode_vs_best_peer": {"ratio": ours["decode_tok_s"] / best_decode["decode_tok_s"], "peer": best_decode["label"], "target": 1.0},
        "prefill_vs_best_peer": {"ratio": best_prefill["prefill_ms"] / ours["prefill_ms"], "peer": best_prefill["label"], "target": 1.2},
        "decode_vs_eager": {"ratio": ours["decode_tok_s"] / eager["decode_tok_s"], "target": 2.0},
        "prefill_vs_eager": {"ratio": eager["prefill_ms"] / ours["prefill_ms"], "target": 2.0},
        "decode_vs_compile": {"ratio": ours["decode_tok_s"] / compiled["decode_tok_s"], "target": 1.0},
        "prefill_vs_compile": {"ratio": compiled["prefill_ms"] / ours["prefill_ms"], "target": 1.0},
        "bandwidth_share": {
            "ratio": ours["achieved_gbs"] / bw if bw else None,
            "achieved_gbs": ours["achieved_gbs"],
            "read_gbs": bw,
            "target": 0.9,
        },
        "build_vs_plain_export": {"ratio": builds["plain torch.onnx.export"] / builds["yamlllm-export"], "target": 1.0},
        "build_seconds": builds,
    }


def quant_ratios(report: dict, ppl: dict[str, float]) -> dict:
    """Issue 14's targets, from the same run: our int4 decode vs our fp32, the builder's int4 and eager; our
    int4 perplexity increase vs the builder's."""
    rows = {r["label"]: r for r in report["rows"]}
    ours = rows["yamlllm-export int4"]["decode_tok_s"]
    eager = rows.get("PyTorch eager", {"decode_tok_s": math.nan})["decode_tok_s"]
    base = ppl["yamlllm-export (all logits)"]
    ours_cost, builder_cost = ppl["yamlllm-export int4"] / base - 1, ppl["onnxruntime-genai int4"] / base - 1
    return {
        "int4_decode_vs_our_fp32": {"ratio": ours / rows["yamlllm-export"]["decode_tok_s"], "target": 3.0},
        "int4_decode_vs_builder_int4": {"ratio": ours / rows["onnxruntime-genai int4"]["decode_tok_s"], "target": 1.0},
        "int4_decode_vs_eager": {"ratio": ours / eager, "target": 2.0},
        "int4_ppl_cost_vs_builder": {"ratio": builder_cost / ours_cost if ours_cost > 0 else math.inf, "target": 2.0},
        "perplexity": ppl,
    }


def quant_md(q: dict) -> str:
    lines = ["| ratio (higher is better) | measured | target | |", "|---|---|---|---|"]
    for key, v in q.items():
        if key != "perplexity" and math.isnan(v["ratio"]):
            lines.append(f"| {key.replace('_', ' ')} | not measured | ≥ {v['target']:.1f}x | |")
        elif key != "perplexity":
            ok = v["ratio"] >= v["target"]
            lines.append(f"| {key.replace('_', ' ')} | {v['ratio']:.2f}x | ≥ {v['target']:.1f}x | {'met' if ok else 'not met'} |")
    lines += ["", "perplexity on the English text: " + ", ".join(f"{k} {p:.2f}" for k, p in q["perplexity"].items())]
    return "\n".join(lines) + "\n"


def perplexities(folders: dict[str, Path]) -> dict[str, float]:
    from quant_quality import logits_of

    from yamlllm_export.validate.quality import perplexity
    from yamlllm_export.validate.quantized import text_tokens

    ref = folders["yamlllm-export (all logits)"]
    ids, _ = text_tokens(ref, vocab=1 << 30, max_len=1 << 30)
    return {name: perplexity(logits_of(f, ids), ids[0]) for name, f in folders.items()}


def ratios_md(r: dict) -> str:
    def line(name: str, key: str, what: str) -> str:
        v = r[key]
        if v["ratio"] is None or math.isnan(v["ratio"]):
            return f"| {name} | not measured | ≥ {v['target']:.1f}x | | {what} |"
        ok = v["ratio"] >= v["target"]
        return f"| {name} | {v['ratio']:.2f}x | ≥ {v['target']:.1f}x | {'met' if ok else 'not met'} | {what} |"

    return "\n".join([
        "| ratio (yamlllm-export ÷ other, higher is better) | measured | target | | note |",
        "|---|---|---|---|---|",
        line("decode tok/s vs the better peer", "decode_vs_best_peer", r["decode_vs_best_peer"]["peer"]),
        line("prefill speed vs the better peer", "prefill_vs_best_peer", r["prefill_vs_best_peer"]["peer"]),
        line("decode tok/s vs PyTorch eager", "decode_vs_eager", ""),
        line("prefill speed vs PyTorch eager", "prefill_vs_eager", ""),
        line("decode tok/s vs torch.compile (static cache)", "decode_vs_compile", ""),
        line("prefill speed vs torch.compile (static cache)", "prefill_vs_compile", ""),
        line("achieved ÷ measured read bandwidth", "bandwidth_share",
             f"{r['bandwidth_share']['achieved_gbs']:.1f} of {r['bandwidth_share']['read_gbs']:.1f} GB/s"),
        line("build speed vs plain torch.onnx.export", "build_vs_plain_export", ""),
        "",
        "build seconds (wall, one run each): " + ", ".join(f"{k} {v:.1f}" for k, v in r["build_seconds"].items()),
    ]) + "\n"  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--gen-len", type=int, default=64)
    ap.add_argument("--work", type=Path, default=Path("/tmp/yamlllm-bench-reference"))
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--small", action="store_true", help="a 2-layer model of the same kind (a quick check of the script)")
    ap.add_argument("--reuse", action="store_true", help="reuse the builds (and build times) of an earlier run in --work")
    ap.add_argument("--no-eager", action="store_true", help="no PyTorch eager row (its rounds are the slow ones)")
    ap.add_argument("--no-compile", action="store_true", help="no torch.compile row (it compiles in every session's warm-up)")
    ap.add_argument(
        "--same-session", action="store_true", help="keep one session per system for all rounds (default: a new one every round)"
    )
    ap.add_argument("--quant", action="store_true", help="add the int4 / int8 rows and ratios (ours vs the genai builder's)")
    ap.add_argument(
        "--smollm2", action="store_true", help="SmolLM2-135M-Instruct (real weights, tests/smollm2.py) instead of the 125 M model"
    )
    args = ap.parse_args()

    args.work.mkdir(parents=True, exist_ok=True)
    if args.smollm2:
        sys.path.insert(0, str(HERE.parent / "tests"))
        from smollm2 import hf_dir

        hf = hf_dir()
    else:
        hf = write_hf_llama(args.work / "hf", SMALL if args.small else None)
    built = build_all(hf, args.work, args.reuse, args.quant)
    ours = built["yamlllm-export"][0]
    spec = load_spec(ours / "model.yaml")
    info = folder_info(ours)  # the same weights everywhere: the same sizes
    peer_info = ModelInfo(info.parameter_count, decode_bytes_per_token(spec, "float32"), info.kv_cache_bytes_per_token)
    systems = [
        System("yamlllm-export", "ort", str(ours), info=info),
        System("yamlllm-export (all logits)", "ort", str(built["yamlllm-export (all logits)"][0]), info=info),
        System("onnxruntime-genai", "ort", str(built["onnxruntime-genai"][0]), info=peer_info),
        System("mobius", "ort", str(built["mobius"][0]), head_dim=spec.layer.attention.head_dim, info=peer_info),
        *(quant_systems(built, spec) if args.quant else []),
        *([] if args.no_eager else [System("PyTorch eager", "eager", str(ours), info=info)]),
        *([] if args.no_compile else [System("PyTorch compile", "compile", str(ours), info=info)]),
        System("read bandwidth", "bandwidth"),
    ]
    workload = Workload(prompt_len=args.prompt_len, gen_len=args.gen_len, batch=1)
    start = time.perf_counter()
    measured = measure(
        systems,
        workload,
        rounds=args.rounds,
        warmup=args.warmup,
        fresh=not args.same_session,
        progress=lambda s: print(f"[{time.perf_counter() - start:6.0f} s] {s}", flush=True),
    )
    report = build_report(measured, workload, args.rounds, args.warmup, not args.same_session)
    report.write(args.out)
    r = ratios(report.to_dict(), {k: v[1] for k, v in built.items()})
    (args.out / "ratios.json").write_text(json.dumps(r, indent=2) + "\n")
    (args.out / "ratios.md").write_text(ratios_md(r))
    print((args.out / "bench.md").read_text())
    print(ratios_md(r))
    if args.quant:
        names = ("yamlllm-export (all logits)", *QUANT_BUILDS)
        q = quant_ratios(report.to_dict(), perplexities({n: built[n][0] for n in names}))
        (args.out / "quant_ratios.json").write_text(json.dumps(q, indent=2) + "\n")
        (args.out / "quant_ratios.md").write_text(quant_md(q))
        print(quant_md(q))


def quant_systems(built: dict[str, tuple[Path, float]], spec: object) -> list[System]:
    """The quantized folders; decode reads their weight files (less the tables), so GB/s uses the bytes on disk."""
    out = []
    for name in QUANT_BUILDS:
        folder = built[name][0]
        data = sum(f.stat().st_size for f in folder.iterdir() if f.name.startswith("model.onnx"))
        info = ModelInfo(spec.parameter_count(), data, kv_cache_bytes_per_token(spec, "float32"))
        head_dim = None if name.startswith("yamlllm") else spec.layer.attention.head_dim
        out.append(System(name, "ort", str(folder), head_dim=head_dim, info=info))
    return out


if __name__ == "__main__":
    main()
