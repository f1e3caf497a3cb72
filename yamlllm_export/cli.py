"""The ``yamlllm-export`` command: a thin click shell over the library.

One handler turns the project's errors into ``error: <one line>`` and exit code 2; an unexpected failure
prints one line too (exit 1) unless ``YAMLLLM_DEBUG=1`` asks for the traceback.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from yamlllm_export.errors import YamlllmError

if TYPE_CHECKING:
    from yamlllm_export.validate.runner import ValidateOptions

TARGET_CHOICE = click.Choice(["ort", "onnx", "portable"])
DTYPE_CHOICE = click.Choice(["float32", "float16", "bfloat16"])
EP_CHOICE = click.Choice(["cpu", "cuda"])
REVISION_HELP = "With a hub id: the branch, tag or commit to read [default: main]."


def example(line: str) -> str:
    """A command's help epilog: one example line, kept verbatim by click (``\\b``); tests/test_cli_help.py parses it."""
    return f"\b\nExample:\n  yamlllm-export {line}"


def _fail(message: str, code: int) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except YamlllmError as err:
            _fail(str(err).splitlines()[0] if str(err) else type(err).__name__, 2)
        except KeyboardInterrupt:
            _fail("interrupted; nothing was written", 130)
        except Exception as err:  # noqa: BLE001 - last-resort one-liner; YAMLLLM_DEBUG=1 shows the traceback
            if os.environ.get("YAMLLLM_DEBUG"):
                raise
            line = str(err).strip().splitlines()[0] if str(err).strip() else ""
            _fail(f"internal error ({type(err).__name__}: {line}); rerun with YAMLLLM_DEBUG=1 for the traceback", 1)

    return wrapper


@click.group(
    context_settings={"help_option_names": ["-h", "--help"]}, epilog=example("build models/tiny-llama.yaml -o out/tiny-llama --validate")
)
@click.version_option(package_name="yamlllm-export")
def main() -> None:
    """Compile YamlLLM transformer YAML into verified ONNX models."""


@main.command(epilog=example("build models/tiny-llama.yaml -o out/tiny-llama --target ort --validate"))
@click.argument("spec_path", metavar="SPEC.yaml")
@click.option("-o", "--output", "out_dir", required=True, help="Output folder (must not exist unless --overwrite).")
@click.option("--target", type=TARGET_CHOICE, default="ort", show_default=True, help="Lowering target.")
@click.option("--seed", type=int, default=0, show_default=True, help="Weight initialisation seed.")
@click.option("--dtype", type=DTYPE_CHOICE, default="float32", show_default=True, help="Weight and activation dtype.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output folder.")
@click.option("--validate", "run_validate", is_flag=True, help="Validate the folder after building (as `validate FOLDER`).")
@click.option(
    "--weights",
    type=click.Path(),
    default=None,
    help="Trained weights instead of --seed: a checkpoint (.safetensors, .pt, .bin), an HF folder, a GGUF file or a hub id ORG/NAME.",
)
@click.option("--revision", default=None, help=REVISION_HELP)
@click.option("--gguf-file", default=None, metavar="NAME.gguf", help="With --weights ORG/NAME (or a folder): the GGUF file inside it.")
@click.option(
    "--logits",
    type=click.Choice(["all", "last"]),
    default="all",
    show_default=True,
    help="Logits of every position, or the last only (faster prefill; validate needs all).",
)
@click.option("--tokenizer", type=click.Path(), default=None, help="tokenizer.json (or its folder) to copy in, for `generate --prompt`.")
@click.option(
    "--keep-quantized", is_flag=True,
    help="With --weights FILE.gguf: Q4_0/Q4_1/Q8_0/Q4_K blocks become MatMulNBits exactly, without re-quantizing.",
)  # fmt: skip
@click.option("--quant", default=None, metavar="int4|int8", help="Weight-only quantization of every constant-weight MatMul.")
@click.option("--block-size", type=int, default=None, help="Quantization block along K: a power of two ≥ 16 [default: 32].")
@click.option("--accuracy-level", type=int, default=None, help="MatMulNBits compute precision 0-4 (4: int8 activations, CPU) [default: 4].")
@click.option("--quant-algo", default=None, metavar="rtn|hqq", help="ORT weight-only quantizer algorithm [default: rtn].")
@click.option("--lm-head", default=None, metavar="int4|int8|float", help="LM head precision in a quantized build [default: int8].")
@click.option("--ffn-down", default=None, metavar="int8|int4", help="FFN down projection precision in an int4 build [default: int8].")
@click.option(
    "--cache", type=click.Choice(["auto", "kv", "none"]), default="auto", show_default=True,
    help="auto: a KV cache, or a full-window graph (no cache) when an option looks at later tokens; kv / none insist on one.",
)  # fmt: skip
@handle_errors
def build(
    spec_path: str,
    out_dir: str,
    target: str,
    seed: int,
    dtype: str,
    overwrite: bool,
    run_validate: bool,
    weights: str | None,
    tokenizer: str | None,
    logits: str,
    keep_quantized: bool,
    quant: str | None,
    block_size: int | None,
    accuracy_level: int | None,
    quant_algo: str | None,
    lm_head: str | None,
    ffn_down: str | None,
    revision: str | None,
    gguf_file: str | None,
    cache: str,
) -> None:
    """Build SPEC.yaml into an ONNX model folder."""
    from yamlllm_export.quant.config import quant_config
    from yamlllm_export.spec import load_spec

    qcfg = quant_config(
        quant,
        block_size=block_size,
        accuracy_level=accuracy_level,
        algo=quant_algo,
        lm_head=lm_head,
        ffn_down=ffn_down,
        dtype=dtype,
        target=target,
    )
    spec = load_spec(spec_path)  # fail fast, before torch is imported
    weights = _weights_source(weights, revision, gguf_file)
    from yamlllm_export.export.writer import check_cache, export_onnx

    check_cache(spec, cache)

    folder = export_onnx(
        spec, out_dir, target=target, seed=seed, dtype=dtype, overwrite=overwrite, weights=weights, tokenizer=tokenizer, logits=logits,
        keep_quantized=keep_quantized, quant=qcfg, cache=cache,
    )  # fmt: skip
    info = json.loads((folder / "build.json").read_text())
    for note in info["weights"].get("notes", []) + info["weights"].get("quantized", {}).get("notes", []):
        click.echo(f"note: {note}", err=True)
    fused = {k: v for k, v in info["op_counts"].items() if k.startswith("com.microsoft.")}
    click.echo(
        f"built {folder} ({info['name']}: {info['parameter_count']:,} parameters, target {info['target']}, "
        f"{info['dtype']}, {info['build_seconds']:.1f} s)"
    )
    if "quantization" in info:
        q = info["quantization"]
        counts = ", ".join(f"{k} x{v}" for k, v in q["op_counts"].items())
        mb = q["bytes"]["quantized"] / 2**20
        recipe = f"{q['algo']}, block {q['block_size']}, FFN down {q['ffn_down']}, head {q['lm_head']}"
        click.echo(f"  quantized {q['scheme']} ({recipe}): {counts}; {mb:.1f} MiB on disk")
        for skipped in q["not_quantized"]:
            click.echo(f"note: {skipped['node']} not quantized: {skipped['reason']}", err=True)
    if "full_window" in info:
        click.echo(f"  full-window graph, no KV cache ({info['full_window'][0]}): generate recomputes the window each step")
    if fused:
        click.echo("  fused kernels: " + ", ".join(f"{k.split('.', 2)[-1]} x{v}" for k, v in fused.items()))
    if "unsupported" in info["genai"]:
        click.echo(f"note: no genai_config.json: onnxruntime-genai cannot run this model ({info['genai']['unsupported']})", err=True)
    if run_validate:
        from yamlllm_export.validate.runner import ValidateOptions

        _validate_and_exit(folder, ValidateOptions())


def _validate_and_exit(folder: Path, options: ValidateOptions) -> None:
    """Run the checks, print the table, exit 0 (all pass), 1 (a check failed) or 2 (nothing validated)."""
    from rich.console import Console

    from yamlllm_export.validate.cli_view import render_table
    from yamlllm_export.validate.report import summary
    from yamlllm_export.validate.runner import validate_folder

    report = validate_folder(folder, options)
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
    console.print(render_table(report))
    for ep in report.eps:
        if ep.status == "skipped":
            console.print(f"{ep.ep}: skipped ({ep.reason})", markup=False)
    console.print(f"{summary(report)}; report in {report.report_dir}", markup=False)
    if report.problem and report.exit_code == 2:
        click.echo(f"error: {report.problem}", err=True)
    elif report.problem:  # a check failed too: exit 1 says more than "not everything could run"
        console.print(f"note: {report.problem}", markup=False)
    if report.exit_code:
        sys.exit(report.exit_code)


def _cuda_placement_and_exit(folder: Path) -> None:
    """One line: where ORT's CUDA provider would run this folder's nodes (validate/placement.py); exit 0 or 1."""
    from yamlllm_export.errors import BuildError
    from yamlllm_export.runtime.folder_check import check_folder
    from yamlllm_export.validate.placement import ShimUnavailable, check_cuda_placement

    if not (folder / "model.onnx").is_file():
        raise BuildError(f"{folder}: no model.onnx (not a model folder)")
    check_folder(folder, full=False)
    try:
        verdict = check_cuda_placement(folder)
    except ShimUnavailable as err:
        raise BuildError(f"--cuda-placement: {err}") from None
    click.echo(verdict.line)
    sys.exit(0 if verdict.ok else 1)


@main.command(epilog=example("check models/tiny-llama.yaml --target portable"))
@click.argument("spec_path", metavar="SPEC.yaml")
@click.option("--target", type=TARGET_CHOICE, default=None, help="Also check that this target can express the spec.")
@handle_errors
def check(spec_path: str, target: str | None) -> None:
    """Validate SPEC.yaml (schema and rules) without building anything."""
    from yamlllm_export.spec import load_spec

    spec = load_spec(spec_path)
    if target is not None:
        from yamlllm_export.spec.features import check_target

        check_target(spec, target)
    suffix = f", target {target}" if target else ""
    click.echo(f"ok: {spec_path} ({spec.name}: {spec.parameter_count():,} parameters{suffix})")


@main.command(epilog=example("validate out/tiny-llama --ep cpu --steps 8"))
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--ep", "eps", type=EP_CHOICE, multiple=True, help="Execution provider (repeatable). Default: CPU, and CUDA when usable.")
@click.option(
    "--steps", type=click.IntRange(min=1), default=None, help="Decode steps after the prompt [default: 8, capped by the context]."
)
@click.option("--batch", type=click.IntRange(min=1), default=3, show_default=True, help="Prompts per batch, of different lengths.")
@click.option("--prompt-len", type=click.IntRange(min=1), default=None, help="Longest prompt [default: 32, capped by the context].")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random prompts.")
@click.option("--report", "report_dir", type=click.Path(path_type=Path), default=None, help="Report folder [default: FOLDER/parity].")
@click.option(
    "--long-context",
    type=click.IntRange(min=1),
    default=None,
    help="Positions the long-context check covers [default: max_position_embeddings; less is faster, proves less].",
)
@click.option(
    "--cuda-placement",
    is_flag=True,
    help="Only ask ONNX Runtime's CUDA provider where it would run each node (no GPU needed: a C shim is built with cc).",
)
@handle_errors
def validate(
    folder: Path,
    eps: tuple[str, ...],
    steps: int | None,
    batch: int,
    prompt_len: int | None,
    seed: int,
    report_dir: Path | None,
    long_context: int | None,
    cuda_placement: bool,
) -> None:
    """Check a model folder: graph structure, then parity with the PyTorch model on ONNX Runtime.

    Exit code 0 when every check passes, 1 when one fails, 2 on bad input (or when nothing could run).
    With --cuda-placement: 0 when every compute node would run on CUDA, 1 when some would not.
    """
    from yamlllm_export.validate.runner import ValidateOptions

    if cuda_placement:
        _cuda_placement_and_exit(folder)

    options = ValidateOptions(
        eps=eps, steps=steps, batch=batch, prompt_len=prompt_len, seed=seed, report_dir=report_dir, long_context=long_context
    )
    _validate_and_exit(folder, options)


@main.command(epilog=example('generate out/tiny-llama --prompt-ids "1 2 3" --max-new-tokens 16 --stats'))
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--prompt", "texts", multiple=True, help="Prompt text, encoded with the folder's tokenizer.json (repeatable: a batch).")
@click.option("--prompt-ids", "id_lists", multiple=True, help='Prompt token ids, e.g. "1 15043 3186" (repeatable: a batch).')
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--temperature", type=float, default=None, help="Sample at this temperature (any sampling option turns sampling on).")
@click.option("--top-k", type=click.IntRange(min=0), default=None, help="Sample from the k most likely tokens.")
@click.option("--top-p", type=float, default=None, help="Sample from the smallest set of tokens with this much probability.")
@click.option("--repetition-penalty", type=float, default=1.0, show_default=True, help="> 1 discourages tokens already seen.")
@click.option("--seed", type=int, default=None, help="Sampling seed (same seed, same tokens).")
@click.option("--stop", "stops", type=int, multiple=True, help="Stop token id (repeatable) [default: the spec's tokens.eos_token_id].")
@click.option("--ep", type=EP_CHOICE, default="cpu", show_default=True, help="Execution provider (cuda keeps the KV cache on the GPU).")
@click.option("--stats", is_flag=True, help="Print prefill time and decode tokens/s to stderr.")
@click.option("--verify", is_flag=True, help="Hash every file build.json records [default: sizes and mtimes, hashing what moved].")
@handle_errors
def generate(folder: Path, texts: tuple[str, ...], id_lists: tuple[str, ...], **options: Any) -> None:
    """Generate a continuation of each prompt with a built FOLDER on ONNX Runtime (one prompt streams)."""
    from yamlllm_export.cli_generate import run_generate

    run_generate(folder, texts, id_lists, **options)


@main.command(epilog=example("bench out/tiny-llama --prompt-len 128 --gen-len 64 --backend ort --backend eager"))
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path), metavar="FOLDER|SPEC.yaml...")
@click.option("--prompt-len", type=int, default=128, show_default=True, help="Prompt tokens (one prefill forward).")
@click.option("--gen-len", type=int, default=64, show_default=True, help="New tokens, one decode step each.")
@click.option("--batch", type=int, default=1, show_default=True, help="Sequences per forward.")
@click.option("--ep", type=EP_CHOICE, default="cpu", show_default=True, help="Execution provider (and PyTorch device).")
@click.option(
    "--backend", "backends", multiple=True, type=click.Choice(["ort", "eager", "compile"]), help="Repeatable [default: ort, eager]."
)
@click.option("--rounds", type=int, default=5, show_default=True, help="Measured rounds, alternated between systems.")
@click.option("--warmup", type=click.IntRange(min=0), default=1, show_default=True, help="Rounds dropped first.")
@click.option(
    "--logits", type=click.Choice(["all", "last"]), default="last", show_default=True, help="For YAML inputs: the build's logits."
)
@click.option(
    "--out", "out_dir", type=click.Path(path_type=Path), default=None, help="Report folder [default: FOLDER/bench, or ./bench-results]."
)
@click.option("--no-bandwidth", is_flag=True, help="Skip the read-bandwidth probe.")
@click.option("--verify", is_flag=True, help="Hash every file build.json records [default: sizes and mtimes, hashing what moved].")
@click.option(
    "--fresh-sessions", is_flag=True,
    help="Load every system anew for each round (warm-up runs inside each): one session's memory placement cannot bias the run.",
)  # fmt: skip
@handle_errors
def bench(
    paths: tuple[Path, ...], prompt_len: int, gen_len: int, batch: int, ep: str, backends: tuple[str, ...], rounds: int, warmup: int,
    logits: str, out_dir: Path | None, no_bandwidth: bool, fresh_sessions: bool, verify: bool,
) -> None:  # fmt: skip
    """Measure prefill latency, decode tok/s and memory of model folders or YAML specs (built on the fly), ORT vs PyTorch."""
    from yamlllm_export.bench.cli_view import run_and_show
    from yamlllm_export.bench.runner import BenchOptions
    from yamlllm_export.bench.types import Workload

    options = BenchOptions(
        workload=Workload(prompt_len=prompt_len, gen_len=gen_len, batch=batch), ep=ep, backends=backends or ("ort", "eager"),
        rounds=rounds, warmup=warmup, bandwidth=not no_bandwidth, out_dir=out_dir, logits=logits, fresh=fresh_sessions,
        verify=verify,
    )  # fmt: skip
    run_and_show(list(paths), options)


@main.command(epilog=example("schema > yamlllm.schema.json"))
def schema() -> None:
    """Print the JSON Schema of the YamlLLM dialect."""
    from yamlllm_export.spec.schema import schema as load_schema

    click.echo(json.dumps(load_schema(), indent=2))


@main.command(epilog=example("features"))
def features() -> None:
    """Print which lowering targets support which spec features (a Markdown table, from the schema)."""
    from yamlllm_export.spec.features import feature_table

    click.echo(feature_table(), nl=False)


def _write_spec(out_path: Path, overwrite: bool, make: Callable[[], tuple[dict[str, Any], str]]) -> None:
    """Write the YAML ``make`` returns to ``out_path``, all or nothing (``import-hf``, ``import-gguf``, ``import-forge``)."""
    from yamlllm_export.errors import BuildError
    from yamlllm_export.hf import render_yaml
    from yamlllm_export.spec import load_spec

    if out_path.exists() and (out_path.is_dir() or not overwrite):
        raise BuildError(f"{out_path}: exists; pass --overwrite to replace it" if out_path.is_file() else f"{out_path}: is a directory")
    spec, header = make()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    partial = out_path.with_name(f".{out_path.name}.partial")
    partial.write_text(render_yaml(spec, header))
    partial.replace(out_path)  # all or nothing
    click.echo(f"wrote {out_path}: {spec['name']}, {load_spec(spec).parameter_count():,} parameters")


@main.command("import-hf", epilog=example("import-hf HuggingFaceTB/SmolLM2-135M-Instruct -o smollm2.yaml"))
@click.argument("hf_dir", metavar="HF_DIR|ORG/NAME")
@click.option("-o", "--output", "out_path", required=True, type=click.Path(path_type=Path), help="The YAML file to write.")
@click.option("--overwrite", is_flag=True, help="Replace an existing YAML file.")
@click.option("--revision", default=None, help=REVISION_HELP)
@handle_errors
def import_hf(hf_dir: str, out_path: Path, overwrite: bool, revision: str | None) -> None:
    """Write the YAML spec of a Hugging Face model: a local folder (config.json), or a hub id read through
    huggingface_hub (downloaded when online, from its cache when offline or with HF_HUB_OFFLINE=1)."""
    from yamlllm_export.hf import import_hf as to_spec
    from yamlllm_export.hf import read_config
    from yamlllm_export.hf.families import family_for
    from yamlllm_export.hf.hub import is_hub_id, resolve_model_dir

    folder = resolve_model_dir(hf_dir, revision=revision)
    hub_id = hf_dir if folder != Path(hf_dir) and is_hub_id(hf_dir) else None
    _write_spec(out_path, overwrite, lambda: to_spec(folder, out_path, source=hub_id))
    if note := family_for(read_config(folder)).note:
        click.echo(f"note: {note}", err=True)


@main.command("import-gguf", epilog=example("import-gguf SmolLM2-135M-Instruct.Q4_1.gguf -o smollm2.yaml"))
@click.argument("gguf_path", metavar="FILE.gguf|ORG/NAME")
@click.option("-o", "--output", "out_path", required=True, type=click.Path(path_type=Path), help="The YAML file to write.")
@click.option("--overwrite", is_flag=True, help="Replace an existing YAML file.")
@click.option("--gguf-file", default=None, metavar="NAME.gguf", help="The GGUF file inside a folder or hub repository ORG/NAME.")
@click.option("--revision", default=None, help=REVISION_HELP)
@handle_errors
def import_gguf(gguf_path: str, out_path: Path, overwrite: bool, gguf_file: str | None, revision: str | None) -> None:
    """Write the YAML spec of a GGUF file (llama.cpp's metadata; build it with --weights FILE.gguf)."""
    from yamlllm_export.gguf import import_gguf as to_spec
    from yamlllm_export.hf.hub import resolve_gguf_file

    path = resolve_gguf_file(gguf_path, gguf_file, revision=revision)
    _write_spec(out_path, overwrite, lambda: to_spec(path, out_path))


def _weights_source(weights: str | None, revision: str | None, gguf_file: str | None) -> str | None:
    """``--weights`` as a local path: a hub id becomes its snapshot folder (or the ``--gguf-file`` in it)."""
    from yamlllm_export.errors import BuildError
    from yamlllm_export.hf.hub import resolve_gguf_file, resolve_model_dir

    if weights is None:
        if revision is not None or gguf_file is not None:
            raise BuildError("--revision and --gguf-file need --weights (a hub id ORG/NAME or a folder)")
        return None
    if gguf_file is not None:
        return str(resolve_gguf_file(weights, gguf_file, revision=revision))
    return str(resolve_model_dir(weights, revision=revision, weights=True))


@main.command("import-forge", epilog=example("import-forge out-shakespeare/ckpt.pt -o forge.yaml"))
@click.argument("ckpt_path", metavar="CKPT.pt", type=click.Path(path_type=Path))
@click.option("-o", "--output", "out_path", required=True, type=click.Path(path_type=Path), help="The YAML file to write.")
@click.option("--overwrite", is_flag=True, help="Replace an existing YAML file.")
@handle_errors
def import_forge(ckpt_path: Path, out_path: Path, overwrite: bool) -> None:
    """Write the YAML spec of a ReaLLM-Forge checkpoint (train.py's ckpt.pt; build it with --weights CKPT.pt)."""
    from yamlllm_export.forge import import_forge as to_spec

    notes: list[str] = []

    def make() -> tuple[dict[str, Any], str]:
        spec, header, found = to_spec(ckpt_path, out_path)
        notes.extend(found)
        return spec, header

    _write_spec(out_path, overwrite, make)
    for note in notes:
        click.echo(f"note: {note}", err=True)
