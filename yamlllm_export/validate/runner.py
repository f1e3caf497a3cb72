"""``validate``: prove a model folder against the PyTorch model it was exported from, on every usable EP.

Order matters: everything that can be refused cheaply (folder, settings, execution providers, RAM and
disk) is refused before the reference or a session is loaded. The reference is rebuilt from ``model.yaml``
and build.json's weight source and must hash to the exported weights; it runs in float32 whatever the
build dtype. Bad input raises ``BuildError`` (exit 2); check outcomes are rows of the ``Report``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from yamlllm_export.errors import BuildError
from yamlllm_export.export.provenance import spec_sha256
from yamlllm_export.export.reference import load_reference, read_build_info
from yamlllm_export.runtime.folder_check import check_folder
from yamlllm_export.runtime.io_contract import IOContract
from yamlllm_export.runtime.session import (
    EP_PROVIDERS,
    ORT_ERRORS,
    EpUnsupported,
    availability,
    check_placement,
    one_line,
    open_session,
    profile_dir,
)
from yamlllm_export.runtime.stepper import ELEM_TYPES, GraphStepper
from yamlllm_export.spec import ModelSpec, load_spec
from yamlllm_export.spec.features import needs_full_window
from yamlllm_export.validate.checks import MAX_LONG_STEPS, Settings, parity_checks
from yamlllm_export.validate.parity import Tolerance
from yamlllm_export.validate.quantized import dequantized_reference, export_tolerance, quality_rows, weights_row
from yamlllm_export.validate.report import FAIL, PASS, UNSUPPORTED, CheckResult, EpRun, Report
from yamlllm_export.validate.resources import check_resources
from yamlllm_export.validate.structure import structure_checks

DEFAULT_PROMPT_LEN = 32
DEFAULT_STEPS = 8
SESSION = "session"


@dataclass(frozen=True)
class ValidateOptions:
    eps: tuple[str, ...] = ()  # empty: CPU, and CUDA when usable
    steps: int | None = None  # None: DEFAULT_STEPS, capped so a one-token prompt and the steps fit the context
    batch: int = 3
    prompt_len: int | None = None  # None: DEFAULT_PROMPT_LEN, capped so prompt + steps fit the context
    seed: int = 0
    report_dir: Path | None = None  # None: <folder>/parity
    long_context: int | None = None  # positions of the long-context check; None: max_position_embeddings


def settings_for(spec: ModelSpec, options: ValidateOptions) -> Settings:
    max_pos = spec.embedding.max_position_embeddings
    for flag, value in (
        ("--steps", 1 if options.steps is None else options.steps),
        ("--batch", options.batch),
        ("--prompt-len", options.prompt_len or 1),
    ):
        if value < 1:
            raise BuildError(f"{flag}: {value} is less than 1")
    if max_pos < 2:
        raise BuildError(f"{spec.name}: max_position_embeddings {max_pos} leaves no position for a decode step; validate needs 2")
    steps = options.steps if options.steps is not None else min(DEFAULT_STEPS, max_pos - 1)
    prompt_len = options.prompt_len if options.prompt_len is not None else min(DEFAULT_PROMPT_LEN, max_pos - steps)
    if options.prompt_len is None and prompt_len < 1:
        raise BuildError(f"--steps {steps} leaves no position for a prompt in max_position_embeddings {max_pos} of {spec.name}")
    if prompt_len + steps > max_pos:
        raise BuildError(
            f"--prompt-len {prompt_len} + --steps {steps} = {prompt_len + steps} does not fit "
            f"max_position_embeddings {max_pos} of {spec.name}"
        )
    long_context = options.long_context if options.long_context is not None else max_pos
    long_steps = min(steps, MAX_LONG_STEPS)
    if not long_steps < long_context <= max_pos:
        raise BuildError(
            f"--long-context {long_context}: must be more than its {long_steps} decode steps and at most "
            f"max_position_embeddings {max_pos} of {spec.name}"
        )
    return Settings(
        steps=steps, batch=options.batch, prompt_len=prompt_len, max_positions=max_pos, seed=options.seed,
        long_context=long_context, not_incremental=not_incremental(spec),
    )  # fmt: skip


def not_incremental(spec: ModelSpec) -> str:
    """Why decoding with the cache legitimately differs from recomputing the whole sequence ("" if it must not)."""
    if needs_full_window(spec):
        return "full-window graph: every step recomputes the whole window, there is no cache to compare"
    if any(not layer.attention.causal for layer in spec.layer_specs()):
        return "bidirectional attention: a cached token never saw the tokens after it, a recompute lets it"
    scaling = spec.embedding.positional_encoding.rope_scaling
    if scaling is not None and scaling.type == "dynamic":
        return "dynamic NTK RoPE: cached keys keep the base of the step that wrote them, a recompute uses the current one"
    if scaling is not None and scaling.type == "longrope":
        return "LongRoPE: keys cached before the switch to long factors keep the short ones, a recompute uses the long ones"
    return ""


def plan_eps(requested: tuple[str, ...]) -> tuple[list[str], list[EpRun]]:
    """(EPs to run, EPs skipped with why). An explicitly requested EP that cannot run here is bad input."""
    for ep in requested:
        if ep not in EP_PROVIDERS:
            raise BuildError(f"--ep: unknown execution provider {ep!r} (choose from {', '.join(EP_PROVIDERS)})")
        usable = availability(ep)
        if not usable.usable:
            raise BuildError(f"--ep {ep}: not usable on this machine ({usable.reason})")
    if requested:
        return list(dict.fromkeys(requested)), []
    cuda = availability("cuda")
    return (["cpu", "cuda"], []) if cuda.usable else (["cpu"], [EpRun("cuda", "skipped", cuda.reason)])


def load_checked_reference(folder: Path, info: dict, spec: ModelSpec) -> torch.nn.Module:
    """The exported model in PyTorch, float32; ``BuildError`` when it cannot be rebuilt exactly."""
    recorded = info.get("spec_sha256")
    if recorded and spec_sha256(spec) != recorded:
        # rotary tables and ALiBi slopes are not weights: an edited model.yaml can keep the weight hash
        raise BuildError(f"{folder / 'model.yaml'}: differs from the spec the folder was built from (spec_sha256 in build.json)")
    return load_reference(folder).float()


def _expected_opsets(info: dict) -> dict[str, int]:
    if isinstance(info.get("opset"), dict):  # what this folder's build recorded (an older tool may differ)
        return {("" if d == "ai.onnx" else d): int(v) for d, v in info["opset"].items()}
    from yamlllm_export.lowerings import get_target

    try:
        target = get_target(str(info.get("target")))
    except BuildError:
        raise BuildError(f"build.json: unknown target {info.get('target')!r}") from None
    return {"": target.opset, **target.extra_opsets}


def run_ep(
    folder: Path, ep: str, model: torch.nn.Module, contract: IOContract, settings: Settings, tol: Tolerance
) -> tuple[EpRun, list[CheckResult]]:
    """The session row and the parity rows of one EP."""
    with profile_dir() as tmp:
        try:
            session = open_session(folder, ep, profile_dir=None if ep == "cpu" else tmp)
            stepper = GraphStepper.for_session(session, contract, device=ep)
            if ep != "cpu":  # a profiled probe says whether every float op really ran on this EP
                probe = np.ones((1, 2), dtype=np.int64)
                stepper.step(probe, probe, stepper.empty_past(1))
                check_placement(session, ep)
        except EpUnsupported as err:
            return EpRun(ep, UNSUPPORTED, str(err)), [CheckResult(SESSION, ep, UNSUPPORTED, "cannot run this build", "-", detail=str(err))]
        except ORT_ERRORS as err:
            row = CheckResult(SESSION, ep, FAIL, "not created", "loads and runs", detail=one_line(err))
            return EpRun(ep, "failed", one_line(err)), [row]
    rows = [CheckResult(SESSION, ep, PASS, "ok", "loads and runs", detail=" + ".join(session.get_providers()))]
    return EpRun(ep, "ran"), rows + parity_checks(ep, stepper, model, contract, settings, tol)


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime

    from yamlllm_export import __version__

    return {"yamlllm_export": __version__, "torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}


def validate_folder(folder: str | Path, options: ValidateOptions | None = None) -> Report:
    """Run every check on ``folder``, write ``parity.json`` and ``parity.md``, return the report."""
    options = options or ValidateOptions()
    folder = Path(folder)
    info = read_build_info(folder)
    check_folder(folder, full=True)  # a changed file is named here, not found later as a parity failure
    if info.get("logits", "all") != "all":  # parity compares every position; the last-only graph differs only by a slice
        raise BuildError(f"{folder}: built with --logits {info['logits']}; validate a build of the same spec with --logits all")
    spec = load_spec(folder / "model.yaml")
    dtype = info.get("dtype", "float32")
    if dtype not in ELEM_TYPES:
        raise BuildError(f"{folder / 'build.json'}: unknown dtype {dtype!r}")
    settings = settings_for(spec, options)
    to_run, skipped = plan_eps(tuple(options.eps))
    report_dir = Path(options.report_dir) if options.report_dir is not None else folder / "parity"
    check_resources(spec, dtype, settings, report_dir)

    float_model = load_checked_reference(folder, info, spec)
    contract = IOContract.for_spec(spec)
    quant = info.get("quantization")
    # a quantized graph must equal the model with its dequantized weights (export error); quality is separate
    model = dequantized_reference(quant, float_model, info["target"], dtype) if quant else float_model
    tol = export_tolerance(quant, dtype) if quant else Tolerance.for_spec(dtype, spec)
    results = structure_checks(folder, contract, dtype, _expected_opsets(info))
    eps = []
    for ep in to_run:
        run, rows = run_ep(folder, ep, model, contract, settings, tol)
        eps.append(run)
        results += rows
    if quant and any(e.ep == "cpu" and e.status == "ran" for e in eps):
        results.append(weights_row(folder, model, contract, settings.lengths, settings.seed, dtype))
        stepper = GraphStepper.for_session(open_session(folder, "cpu"), contract)
        results += quality_rows(folder, quant, float_model, stepper, contract, spec.embedding.max_position_embeddings)
    keys = ("name", "target", "dtype", "parameter_count", "weights", "versions")
    report = Report(
        folder=str(folder),
        model={k: info[k] for k in keys if k in info}
        | ({"quantization": {k: v for k, v in quant.items() if k != "weights"}} if quant else {}),
        settings=settings.to_dict(),
        eps=tuple(eps + skipped),
        results=tuple(results),
        report_dir=str(report_dir),
        requested_eps=tuple(options.eps),
        versions=_versions(),
    )
    report.write(report_dir)
    return report
