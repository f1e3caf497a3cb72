"""``bench``: turn the command line's folders and YAML files into systems, measure them, write the report.

A YAML file is built on the fly into a temporary folder (fp32 for the CPU EP, fp16 for CUDA, whose
GroupQueryAttention has no fp32 kernel), and its build time is reported with it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from yamlllm_export.bench.measure import measure
from yamlllm_export.bench.report import BenchReport, build_report
from yamlllm_export.bench.types import KINDS, ModelInfo, System, Workload
from yamlllm_export.errors import BuildError
from yamlllm_export.runtime.folder_check import check_folder
from yamlllm_export.spec import ModelSpec, load_spec
from yamlllm_export.spec.features import needs_full_window
from yamlllm_export.spec.sizes import DTYPE_BYTES

BACKENDS = ("ort", "eager", "compile")


@dataclass(frozen=True)
class BenchOptions:
    workload: Workload = Workload()
    ep: str = "cpu"
    backends: tuple[str, ...] = ("ort", "eager")
    rounds: int = 5
    warmup: int = 1
    bandwidth: bool = True  # also measure the machine's read bandwidth, alternated with the systems
    out_dir: Path | None = None  # None: FOLDER/bench for one folder, else ./bench-results
    plots: bool = True
    logits: str = "last"  # build option for YAML inputs: "last" (what generation needs, like the PyTorch rows) or "all"
    fresh: bool = False  # a new worker session for every round (see ``measure``)
    verify: bool = False  # hash every file build.json records (else sizes and mtimes: runtime/folder_check.py)


def decode_bytes_per_token(spec: ModelSpec, dtype: str) -> int:
    """Weight bytes one decode step reads: all parameters but the tables it only gathers a row from (token
    embeddings unless tied to the head, learned positions). MoE layers count every expert: an upper bound."""
    emb = spec.embedding
    gathered = 0 if spec.tie_word_embeddings else emb.vocab_size * emb.embedding_dim
    if emb.positional_encoding.type == "learned":
        gathered += emb.max_position_embeddings * spec.layer.hidden_dim
    return (spec.parameter_count() - gathered) * DTYPE_BYTES[dtype]


def folder_info(folder: Path) -> ModelInfo:
    from yamlllm_export.export.reference import read_build_info

    info = read_build_info(folder)
    dtype = info.get("dtype", "float32")
    spec = load_spec(folder / "model.yaml")
    return ModelInfo(
        parameter_count=int(info["parameter_count"]),
        weight_bytes_per_token=decode_bytes_per_token(spec, dtype),
        kv_cache_bytes_per_token=int(info["kv_cache_bytes_per_token"]),
        build_seconds=info.get("build_seconds"),
        logits=info.get("logits"),
        cache="window" if info.get("cache", "kv") != "kv" else "kv",
    )


def _check(options: BenchOptions) -> None:
    w = options.workload
    for flag, value in (("--prompt-len", w.prompt_len), ("--gen-len", w.gen_len), ("--batch", w.batch), ("--rounds", options.rounds)):
        if value < 1:
            raise BuildError(f"{flag}: {value} is less than 1")
    for backend in options.backends:
        if backend not in BACKENDS:
            raise BuildError(f"--backend: unknown backend {backend!r} (choose from {', '.join(BACKENDS)})")
    if options.ep == "cuda":
        from yamlllm_export.runtime.session import availability

        usable = availability("cuda")
        if not usable.usable:
            raise BuildError(f"--ep cuda: not usable on this machine ({usable.reason})")
    elif options.ep != "cpu":
        raise BuildError(f"--ep: unknown execution provider {options.ep!r} (choose from cpu, cuda)")


def _materialise(path: Path, options: BenchOptions, tmp: Path, progress: Callable[[str], None] | None) -> Path:
    """A model folder for ``path``: itself, or the YAML file built into ``tmp``."""
    if path.is_dir():
        return path
    if not path.is_file():
        raise BuildError(f"{path}: no such model folder or YAML file")
    from yamlllm_export.export.writer import export_onnx

    spec = load_spec(path)
    if progress:
        progress(f"building {path.name}")
    dtype = "float16" if options.ep == "cuda" else "float32"
    return export_onnx(spec, tmp / path.stem, dtype=dtype, logits=options.logits)


def _check_context(folder: Path, w: Workload) -> None:
    spec = load_spec(folder / "model.yaml")
    max_pos = spec.embedding.max_position_embeddings
    if needs_full_window(spec):  # the window is cropped to the context, as ReaLLM-Forge's sampler does
        return
    if w.prompt_len + w.gen_len > max_pos:
        raise BuildError(f"{folder}: --prompt-len {w.prompt_len} + --gen-len {w.gen_len} does not fit max_position_embeddings {max_pos}")


def systems_for(folders: list[tuple[str, Path]], options: BenchOptions) -> list[System]:
    """One system per (folder, backend), plus the bandwidth probe last."""
    out = []
    for name, folder in folders:
        check_folder(folder, full=options.verify)
        _check_context(folder, options.workload)
        info = folder_info(folder)
        if info.cache == "window" and "compile" in options.backends:
            raise BuildError(f"{folder}: --backend compile runs a static KV cache; this full-window folder has none (use ort or eager)")
        for backend in options.backends:
            label = name if len(options.backends) == 1 else f"{name} {backend}"
            out.append(System(label=label, kind=backend, folder=str(folder), ep=options.ep, info=info))
    if options.bandwidth:
        out.append(System(label="read bandwidth", kind="bandwidth", ep=options.ep))
    assert all(s.kind in KINDS for s in out)
    return out


def run_bench(paths: list[Path], options: BenchOptions, progress: Callable[[str], None] | None = None) -> tuple[BenchReport, Path]:
    """Measure every path (folder or YAML); write bench.json / bench.md / plots; return (report, out_dir)."""
    if not paths:
        raise BuildError("bench: give at least one model folder or YAML file")
    _check(options)
    with tempfile.TemporaryDirectory(prefix="yamlllm-bench-") as tmp:
        folders = [(p.stem if p.is_file() else p.name, _materialise(p, options, Path(tmp), progress)) for p in paths]
        systems = systems_for(folders, options)
        measured = measure(systems, options.workload, rounds=options.rounds, warmup=options.warmup, fresh=options.fresh, progress=progress)
    report = build_report(measured, options.workload, options.rounds, options.warmup, options.fresh)
    default = paths[0] / "bench" if len(paths) == 1 and paths[0].is_dir() else Path("bench-results")
    out_dir = options.out_dir or default
    report.write(out_dir, plots=options.plots)
    return report, out_dir
