"""Write a model folder: ``model.onnx`` (+ ``model.onnx.data`` when large), ``model.yaml``, ``build.json``.

Everything is written into a temporary sibling folder and moved into place only when complete, so a
failed, interrupted or killed build leaves the previous folder as it was (export/out_dir.py: the lock, the
debris of dead builds, the atomic swap). An existing folder is replaced only with ``overwrite``.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import torch

from yamlllm_export import __version__
from yamlllm_export.errors import BuildError
from yamlllm_export.export.flat_io import FlatIO, dynamic_shapes, example_inputs
from yamlllm_export.export.out_dir import prepare_out_dir, staged
from yamlllm_export.export.provenance import file_source, seed_source, spec_sha256, tensors_sha256, weights_sha256
from yamlllm_export.export.resources import build_ram, check_resources, largest_weight
from yamlllm_export.export.streamed import attach_weights, fake_model, fold_lazy_transposes
from yamlllm_export.export.weights_source import load_weights_from
from yamlllm_export.gguf.reader import is_gguf
from yamlllm_export.lowerings import Target, get_target
from yamlllm_export.model.seeded import SeededWeights
from yamlllm_export.quant.config import QuantConfig
from yamlllm_export.quant.folder import quantize_folder
from yamlllm_export.runtime.folder_check import FILES, record_files
from yamlllm_export.runtime.genai_config import GENAI_CONFIG, genai_blocker, genai_config
from yamlllm_export.runtime.io_contract import IOContract
from yamlllm_export.runtime.tokenizer import copy_tokenizer, tokenizer_files
from yamlllm_export.spec import ModelSpec, load_spec
from yamlllm_export.spec.features import check_target, full_window_line, full_window_options, needs_full_window
from yamlllm_export.spec.load import dump_yaml
from yamlllm_export.spec.sizes import DTYPE_BYTES, kv_cache_bytes_per_token, state_bytes

LOGITS = ("all", "last")  # which positions' logits the graph returns
CACHES = ("auto", "kv", "none")  # auto: the spec decides (spec.features.needs_full_window); kv / none must agree with it
# Weights always go to model.onnx.data (external data). Measured on the 125 M reference model (2026-11-24): ORT
# peak RSS 547 MiB against 780 MiB with the same weights inline (the proto stays alive beside the initializers),
# the same speed; and the build needs ~1.25x the weights in RAM instead of ~4x (export/resources.py).
EXTERNAL_DATA = "model.onnx.data"


def _versions() -> dict[str, str]:
    import platform

    import onnx
    import onnxruntime
    import onnxscript

    return {
        "yamlllm_export": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxscript": onnxscript.__version__,
        "onnxruntime": onnxruntime.__version__,
    }


# What torch.onnx.export (torch 2.13) says on every export and means nothing for us; anything else it warns
# or prints reaches the user. (message regex, category) for warnings; log messages by their start.
KNOWN_WARNINGS = (
    (r"# The axis name: .* will not be used, since it shares the same shape constraints", UserWarning),  # our Dims
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning),  # inside torch.export
)
KNOWN_LOG_STARTS = ("torchvision is not installed",)  # the exporter's registry notes an optional package


class _KnownNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(KNOWN_LOG_STARTS)


def _export(model: torch.nn.Module, contract: IOContract, target: Target, dtype: torch.dtype, weights: SeededWeights | None = None) -> Any:
    """The optimized ONNX program. With ``weights`` the model is a fake one (``export/streamed.py``): its
    initializers get their lazy values before the optimizer folds anything."""
    noise = _KnownNoise()
    loggers = [logging.getLogger(n) for n in ("torch.onnx._internal.exporter._registration", "torch.onnx")]  # filters do not inherit
    for log in loggers:
        log.addFilter(noise)
    with torch.no_grad(), warnings.catch_warnings():
        for message, category in KNOWN_WARNINGS:
            warnings.filterwarnings("ignore", message=message, category=category)
        try:
            program = _torch_export(model, contract, target, dtype)
            if weights is not None:
                attach_weights(program.model.graph, weights)
                fold_lazy_transposes(program.model.graph)
            program.optimize()
            return program
        finally:
            for log in loggers:
                log.removeFilter(noise)


def _torch_export(model: torch.nn.Module, contract: IOContract, target: Target, dtype: torch.dtype) -> Any:
    return torch.onnx.export(
        FlatIO(model, contract).eval(),
        example_inputs(contract, dtype),
        dynamic_shapes=dynamic_shapes(contract),
        input_names=contract.input_names(),
        output_names=contract.output_names(),
        opset_version=target.opset,
        custom_translation_table=target.table,
        dynamo=True,
        optimize=False,  # _export optimizes, once the weights are attached
        verbose=False,
    )


def _check(path: Path) -> None:
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as err:
        first = str(err).strip().splitlines()[0]
        raise BuildError(f"{path.name}: exported graph fails onnx.checker: {first}") from err


def _tokenizer(given: str | Path | None, weights: str | Path | None, vocab_size: int) -> tuple[list[Path], list[str]]:
    """(tokenizer files to copy, notes). ``--tokenizer`` must be usable; an HF folder's own tokenizer.json
    comes along when it fits, and is left out with a note when it does not (the weights are still good)."""
    if given is not None:
        return tokenizer_files(given, vocab_size), []
    if weights is None or not (Path(weights) / "tokenizer.json").is_file():
        return [], []
    try:
        return tokenizer_files(weights, vocab_size), []
    except BuildError as err:
        return [], [f"{weights}/tokenizer.json not copied: {str(err).removeprefix('--tokenizer: ')}"]


def export_onnx(
    model_or_spec: Any,
    out_dir: str | Path,
    *,
    target: str = "ort",
    seed: int = 0,
    dtype: str = "float32",
    overwrite: bool = False,
    spec: ModelSpec | None = None,
    weights: str | Path | None = None,
    tokenizer: str | Path | None = None,
    logits: str = "all",
    keep_quantized: bool = False,
    quant: QuantConfig | None = None,
    cache: str = "auto",
) -> Path:
    """Export to ``out_dir``. ``model_or_spec``: a YAML path, dict, ``ModelSpec`` (built from ``seed``), or a
    ``DecoderLM`` together with ``spec=``. ``weights``: a checkpoint of the compiled model (safetensors or
    .pt) or a Hugging Face model folder, loaded instead of the seeded initialisation. ``tokenizer``: a
    tokenizer.json (or its folder), copied in for ``generate --prompt``. ``logits``: ``all`` positions (what
    ``validate`` compares) or the ``last`` only (faster prefill for generation). ``keep_quantized``: a GGUF
    file's exactly expressible blocks become MatMulNBits initializers (gguf/keep_quantized.py). ``quant``: a
    weight-only quantization recipe (``quant.config.quant_config``), applied to the exported graph. ``cache``:
    ``auto`` exports a KV cache, or a full-window graph without one when the spec has an option that looks at
    later tokens (``runtime/io_contract.py``); ``kv`` and ``none`` ask for one kind and are refused when the
    spec needs the other. Returns the folder. Raises ``SpecError``/``BuildError``."""
    from yamlllm_export.model.builders import DTYPES, build_model
    from yamlllm_export.model.decoder import DecoderLM

    started = time.perf_counter()
    given_model = isinstance(model_or_spec, DecoderLM)
    source = model_or_spec if not isinstance(model_or_spec, DecoderLM) else spec
    if source is None:
        raise BuildError("export_onnx: pass spec= together with a model")
    if given_model and weights is not None:
        raise BuildError("export_onnx: pass either a model or weights=, not both")
    spec = load_spec(source)
    if dtype not in DTYPES:
        raise BuildError(f"--dtype: unknown dtype {dtype!r} (choose from {', '.join(DTYPES)})")
    if logits not in LOGITS:
        raise BuildError(f"--logits: unknown choice {logits!r} (choose from {', '.join(LOGITS)})")
    tgt = get_target(target)
    check_target(spec, tgt.name)
    check_cache(spec, cache)
    if keep_quantized:
        _check_keep_quantized(weights, tgt.name, dtype)
        if quant is not None:
            raise BuildError("--keep-quantized and --quant: choose one (the first keeps the GGUF file's blocks, the second re-quantizes)")
    out_dir = Path(out_dir)
    prepare_out_dir(out_dir, overwrite)
    tokenizer_paths, skipped = _tokenizer(tokenizer, weights, spec.embedding.vocab_size)
    n_params = spec.parameter_count()
    weight_bytes = n_params * DTYPE_BYTES[dtype]
    streamed = not given_model and weights is None  # a seeded build (export/streamed.py)
    if not given_model:
        need_ram = build_ram(
            n_params, DTYPE_BYTES[dtype], largest_weight(spec), mode="streamed" if streamed else "in_memory", quant=quant is not None
        )
        check_resources(weight_bytes, out_dir, need_ram=need_ram)

    with staged(out_dir, overwrite) as tmp:  # locked; moved into place on success, removed on any error
        seeded = SeededWeights(spec, seed=seed, dtype=dtype) if streamed else None
        if seeded is not None:
            model = fake_model(spec, dtype)
            source = seed_source(seed, tensors_sha256(seeded.items()))
        else:
            model = model_or_spec if given_model else build_model(spec, seed=seed, dtype=dtype)
            if weights is not None:
                notes = load_weights_from(model, weights) + skipped
                source = {**file_source(weights, model), **({"notes": notes} if notes else {})}
            else:
                source = seed_source(seed, weights_sha256(model)) if not given_model else {"kind": "model", "sha256": weights_sha256(model)}
        contract = IOContract.for_spec(spec, last_logits=logits == "last")
        program = _export(model, contract, tgt, DTYPES[dtype], seeded)
        fusions = tgt.fuse(program.model) if tgt.fuse else {}
        onnx_path = tmp / "model.onnx"
        program.save(str(onnx_path), external_data=True)
        ops = op_counts(program.model.graph)
        if keep_quantized:
            source["quantized"], ops = _keep_quantized(onnx_path, weights)
        quantization = quantize_folder(tmp, quant, tgt.name, seeded or model, EXTERNAL_DATA) if quant is not None else None
        _check(onnx_path)
        if quant is not None:
            ops = op_counts(_graph(onnx_path))
        (tmp / "model.yaml").write_text(_spec_yaml(spec))
        copy_tokenizer(tokenizer_paths, tmp)
        if tokenizer is None and weights is not None and is_gguf(weights):
            from yamlllm_export.gguf.tokenizer import write_gguf_tokenizer

            if tok_notes := write_gguf_tokenizer(weights, spec.embedding.vocab_size, tmp):
                source.setdefault("notes", []).extend(tok_notes)
        genai_unsupported = genai_blocker(spec)
        if genai_unsupported is None:
            (tmp / GENAI_CONFIG).write_text(json.dumps(genai_config(spec), indent=2) + "\n")
        info = {
            "tool": "yamlllm-export",
            "versions": _versions(),
            "name": spec.name,
            "spec_sha256": spec_sha256(spec),
            "target": tgt.name,
            "opset": {"": tgt.opset, **tgt.extra_opsets},
            "dtype": dtype,
            "parameter_count": n_params,
            "kv_cache_bytes_per_token": kv_cache_bytes_per_token(spec, dtype),
            "state_bytes_per_sequence": state_bytes(spec, dtype),  # recurrent states: constant in the context length
            "layer_caches": list(spec.mixers()),  # each layer's cache kind: attention (KV), short_conv, linear_attention, identity (none)
            "weights": source,
            "io": {"inputs": contract.input_names(), "outputs": contract.output_names()},
            "cache": "none (full window)" if contract.full_window else "kv",
            **({"full_window": [f"{p}: {why}" for p, why in full_window_options(spec)]} if contract.full_window else {}),
            "logits": logits,
            "genai": {"config": GENAI_CONFIG} if genai_unsupported is None else {"unsupported": genai_unsupported},
            "fusions": fusions,
            "op_counts": dict(sorted(ops.items())),
            "external_data": EXTERNAL_DATA,
            **({"quantization": quantization} if quantization is not None else {}),
            "build_seconds": round(time.perf_counter() - started, 3),
            FILES: record_files(tmp),  # last: the final bytes, quantized or kept-quantized included
        }
        (tmp / "build.json").write_text(json.dumps(info, indent=2) + "\n")
    return out_dir


def check_cache(spec: ModelSpec, cache: str) -> None:
    """Refuse a ``--cache`` the spec cannot have: a KV cache where an option looks at later tokens, or a
    full-window graph for a causal spec (it exports with its cache)."""
    if cache not in CACHES:
        raise BuildError(f"--cache: unknown choice {cache!r} (choose from {', '.join(CACHES)})")
    if cache == "kv" and needs_full_window(spec):
        raise BuildError(f"--cache kv: no cache can reproduce {full_window_line(spec)}; build it without --cache (a full-window graph)")
    if cache == "none" and not needs_full_window(spec):
        raise BuildError(
            f"--cache none: {spec.name} is causal and exports with its KV cache; a full-window graph is for options that look at later tokens"
        )


def _check_keep_quantized(weights: str | Path | None, target: str, dtype: str) -> None:
    from yamlllm_export.gguf import is_gguf

    if weights is None or not is_gguf(weights):
        raise BuildError("--keep-quantized: needs --weights FILE.gguf (it keeps llama.cpp's quantized blocks)")
    if target != "ort":
        raise BuildError(f"--keep-quantized: needs --target ort (MatMulNBits is an ONNX Runtime contrib op), not {target}")
    if dtype != "float32":
        raise BuildError(f"--keep-quantized: needs --dtype float32 (llama.cpp's scales are exact in float32), not {dtype}")


def _keep_quantized(onnx_path: Path, weights: Any) -> tuple[dict[str, Any], Counter[str]]:
    """Rewrite the saved model with MatMulNBits (gguf/keep_quantized.py) and save it again; (summary, op counts)."""
    import onnx

    from yamlllm_export.gguf.keep_quantized import keep_quantized

    model = onnx.load(str(onnx_path))  # with its external data
    summary = keep_quantized(model, weights)
    (onnx_path.parent / EXTERNAL_DATA).unlink()
    onnx.save_model(model, str(onnx_path), save_as_external_data=True, all_tensors_to_one_file=True, location=EXTERNAL_DATA)
    return summary, op_counts(model.graph)


def _graph(onnx_path: Path) -> Any:
    import onnx

    return onnx.load(str(onnx_path), load_external_data=False).graph


def op_counts(graph: Any) -> Counter[str]:
    """ "domain.Op" → nodes, for an onnx_ir or a protobuf graph. An If counts itself and, per op, the larger of its
    two branches (what one run executes at most): a GroupQueryAttention in both branches of a layer counts once."""
    counts = Counter[str]()
    import onnx

    for node in graph.node if isinstance(graph, onnx.GraphProto) else graph:
        counts[f"{node.domain + '.' if node.domain else ''}{node.op_type}"] += 1
        branches = Counter[str]()
        for sub in _subgraphs(node):
            branches |= op_counts(sub)  # |: the larger count per op
        counts += branches
    return counts


def _subgraphs(node: Any) -> list[Any]:
    import onnx

    if isinstance(node, onnx.NodeProto):
        return [g for a in node.attribute for g in ([a.g] if a.HasField("g") else [])]
    import onnx_ir as ir

    return [a.value for a in node.attributes.values() if a.type == ir.AttributeType.GRAPH]


def _spec_yaml(spec: ModelSpec) -> str:
    header = "# Normalized spec written by yamlllm-export: every default filled in. Loads back to the same model.\n"
    return header + dump_yaml(spec.to_dict())
