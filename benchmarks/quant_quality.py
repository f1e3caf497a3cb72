"""Quantization quality on a real trained model: perplexity, mean KL and top-1 agreement against the float
build on the fixed English text, for a grid of recipes (algorithm × block × head × accuracy level), beside the
onnxruntime-genai builder's int4/int8 folders when given. Quality only: speed belongs to benchmarks/run.py.

    python benchmarks/quant_quality.py FLOAT_FOLDER [--builder NAME=FOLDER ...] [--grid default|full] [--out FILE.md]

FLOAT_FOLDER: a float32 ``build --weights HF_DIR`` of the model (with its tokenizer.json). Each recipe is applied
to a copy of that graph with the same code as ``build --quant`` (quant/folder.py), so no re-export is needed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from yamlllm_export.export.reference import load_reference  # noqa: E402
from yamlllm_export.quant.config import quant_config  # noqa: E402
from yamlllm_export.quant.folder import quantize_folder  # noqa: E402
from yamlllm_export.validate.quality import mean_kl, perplexity, top1_agreement  # noqa: E402
from yamlllm_export.validate.quantized import text_tokens  # noqa: E402

# (scheme, algo, block, head, accuracy level, FFN down)
DEFAULT_GRID = [
    ("int8", "rtn", 32, "int8", 4, "int8"),
    ("int4", "rtn", 32, "int8", 4, "int8"),  # the default recipe
    ("int4", "rtn", 32, "int8", 4, "int4"),
    ("int4", "rtn", 32, "int4", 4, "int4"),  # the genai builder's recipe
]
FULL_GRID = DEFAULT_GRID + [
    ("int4", "rtn", 32, "float", 4, "int4"),
    ("int4", "rtn", 32, "int8", 1, "int4"),
    ("int4", "rtn", 16, "int8", 4, "int4"),
    ("int4", "rtn", 64, "int8", 4, "int4"),
    ("int4", "rtn", 128, "int8", 4, "int4"),
    ("int4", "hqq", 32, "int8", 4, "int4"),
    ("int4", "hqq", 32, "int4", 4, "int4"),
]


def logits_of(folder: Path, ids: np.ndarray) -> np.ndarray:
    """One prefill of ``ids`` (1, S) through any decoder folder's model.onnx (ours or the genai builder's):
    mask of ones, positions 0.., empty caches. Returns (S, V) float32."""
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(folder / "model.onnx"), opts, providers=["CPUExecutionProvider"])
    feeds = {}
    for i in session.get_inputs():
        if i.name == "input_ids":
            feeds[i.name] = ids
        elif i.name == "attention_mask":
            feeds[i.name] = np.ones_like(ids)
        elif i.name == "position_ids":
            feeds[i.name] = np.arange(ids.shape[1], dtype=np.int64)[None]
        else:  # a past cache (batch, kv heads, 0, head size); a symbolic head size comes from genai_config.json
            head = json.loads((folder / "genai_config.json").read_text())["model"]["decoder"]["head_size"]
            shape = [1, i.shape[1], 0, i.shape[3] if isinstance(i.shape[3], int) else head]
            feeds[i.name] = np.zeros(shape, dtype=np.float16 if "float16" in i.type else np.float32)
    return session.run(["logits"], feeds)[0][0].astype(np.float32)


def size_mb(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.iterdir() if f.name.startswith("model.onnx")) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("float_folder", type=Path)
    parser.add_argument("--builder", action="append", default=[], help="NAME=FOLDER of an onnxruntime-genai builder output")
    parser.add_argument("--grid", choices=["default", "full"], default="default")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    folder = args.float_folder
    ids, how = text_tokens(folder, vocab=1 << 30, max_len=1 << 30)
    ref = logits_of(folder, ids)
    base = perplexity(ref, ids[0])
    model = load_reference(folder).float()
    rows = [("fp32 (ours)", "-", "-", "-", "-", "-", size_mb(folder), base, 0.0, 1.0)]
    for scheme, algo, block, head, level, down in DEFAULT_GRID if args.grid == "default" else FULL_GRID:
        cfg = quant_config(
            scheme, block_size=block, accuracy_level=level, algo=algo, lm_head=head, ffn_down=down if scheme == "int4" else None
        )
        with tempfile.TemporaryDirectory() as tmp:
            q = Path(tmp) / "q"
            shutil.copytree(folder, q)
            quantize_folder(q, cfg, "ort", model, "model.onnx.data")
            got = logits_of(q, ids)
            rows.append(
                (
                    f"{scheme} (ours)",
                    algo,
                    block,
                    head,
                    level,
                    f"int{cfg.down_bits}",
                    size_mb(q),
                    perplexity(got, ids[0]),
                    mean_kl(ref, got),
                    top1_agreement(ref, got),
                )
            )
        print(rows[-1], flush=True)
    for spec in args.builder:
        name, _, path = spec.partition("=")
        got = logits_of(Path(path), ids)
        rows.append(
            (
                f"{name} (genai builder)",
                "rtn",
                32,
                name,
                4,
                name,
                size_mb(Path(path)),
                perplexity(got, ids[0]),
                mean_kl(ref, got),
                top1_agreement(ref, got),
            )
        )
        print(rows[-1], flush=True)
    lines = [
        f"Text: {how}. Reference: the float32 build's logits (one prefill on ONNX Runtime CPU).",
        "",
        "| build | algorithm | block | LM head | acc. level | FFN down | size MB | perplexity | Δ ppl | mean KL | top-1 agree |",
        "|---|---|---:|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for name, algo, block, head, level, down, mb, ppl, kl, agree in rows:
        lines.append(
            f"| {name} | {algo} | {block} | {head} | {level} | {down} | {mb:.0f} | {ppl:.2f} | {ppl / base - 1:+.1%} | {kl:.4f} | {agree:.1%} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
