"""The parity checks of one execution provider, each a row of the report.

prefill      a left-padded batch of prompts of different lengths, logits vs PyTorch (valid positions)
right padding  the same prompts right-padded (pads after the tokens), one prefill, logits vs PyTorch
decode       ``steps`` single-token steps, each side feeding its own cache back; logits vs PyTorch
incremental  ONNX against itself: the logits of the cached decode steps vs one prefill of the whole sequence
             (n/a where they legitimately differ: bidirectional attention, dynamic NTK RoPE)
long context one prompt that ends at ``--long-context`` (default max_position_embeddings), then a few
             decode steps, vs PyTorch
tokens       greedy (top-1) tokens of both sides over the prefill and decode positions; a disagreement
             counts only where the reference's top-2 gap exceeds 1e-3 (a near-tie is no evidence)

Decode tokens are the reference's greedy choices (teacher forcing: both sides always see the same tokens).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from yamlllm_export.runtime.io_contract import IOContract
from yamlllm_export.runtime.session import ORT_ERRORS, one_line
from yamlllm_export.runtime.stepper import GraphStepper
from yamlllm_export.validate.parity import (
    TOP2_GAP,
    StepLogits,
    TokenAgreement,
    Tolerance,
    max_abs,
    padded_batch,
    token_agreement,
    trace,
)
from yamlllm_export.validate.report import FAIL, NOT_APPLICABLE, PASS, CheckResult

PREFILL, RIGHT, DECODE, INCREMENTAL, LONG, TOKENS = "prefill", "right padding", "decode", "incremental", "long context", "tokens"
CHECKS = (PREFILL, RIGHT, DECODE, INCREMENTAL, LONG, TOKENS)
MAX_LONG_STEPS = 4  # decode steps after the long prompt: enough to cross the last positions, cheap on a 7 B


@dataclass(frozen=True)
class Settings:
    steps: int
    batch: int
    prompt_len: int
    max_positions: int
    seed: int = 0
    long_context: int = 0  # positions the long-context check covers; 0: max_positions
    not_incremental: str = ""  # why cached decoding legitimately differs from a recompute (empty: it must not)

    @property
    def lengths(self) -> list[int]:
        """Prompt lengths of the batch: the longest first, then evenly shorter (left padding gets exercised)."""
        stride = max(1, self.prompt_len // self.batch)
        return [max(1, self.prompt_len - row * stride) for row in range(self.batch)]

    @property
    def long_steps(self) -> int:
        return min(self.steps, MAX_LONG_STEPS)

    @property
    def long_positions(self) -> int:
        return self.long_context or self.max_positions

    @property
    def long_prompt_len(self) -> int:
        return self.long_positions - self.long_steps

    def to_dict(self) -> dict[str, object]:
        return {
            "steps": self.steps,
            "batch": self.batch,
            "prompt_lengths": self.lengths,
            "long_context": f"{self.long_prompt_len} + {self.long_steps} steps = {self.long_positions}",
            "seed": self.seed,
            **({"incremental": f"not applicable: {self.not_incremental}"} if self.not_incremental else {}),
        }


def _measured(tol: Tolerance, value: float, abs_err: float) -> str:
    if not math.isfinite(value):
        return "NaN/inf in output"
    return f"{tol.label()} {value:.2e}" + (f" (max|Δ| {abs_err:.1e})" if tol.metric == "max_rel" else "")


def _logits_row(check: str, ep: str, steps: list[StepLogits], tol: Tolerance, what: str) -> CheckResult:
    for s in steps:
        if s.got.shape != s.ref.shape:
            return CheckResult(
                check, ep, FAIL, "wrong shape", tol.describe(s.keys), detail=f"{s.name}: logits {s.got.shape}, expected {s.ref.shape}"
            )
    values = [tol.measure(s.ref, s.got, s.valid) for s in steps]
    worst = int(np.argmax([v / tol.limit(s.keys) for v, s in zip(values, steps, strict=True)]))  # nearest to its own limit
    value, keys = values[worst], steps[worst].keys
    where = f"worst at {steps[worst].name}" if len(steps) > 1 else ""
    detail = ", ".join(x for x in (what, where) if x)
    status = PASS if tol.ok(value, keys) else FAIL
    abs_err = max_abs(steps[worst].ref, steps[worst].got, steps[worst].valid)
    return CheckResult(check, ep, status, _measured(tol, value, abs_err), tol.describe(keys), value, tol.limit(keys), detail)


def _incremental_row(ep: str, stepper: GraphStepper, steps: list[StepLogits], tol: Tolerance) -> CheckResult:
    """The decode steps' logits (cache) vs one ONNX prefill of the whole sequence (no cache)."""
    ids = np.concatenate([s.ids for s in steps], axis=1)
    mask = np.concatenate([steps[0].valid, np.ones((len(ids), len(steps) - 1), dtype=np.int64)], axis=1)
    full, _ = stepper.step(ids, mask, stepper.empty_past(len(ids)))
    start = steps[0].ids.shape[1]
    recomputed = [StepLogits(s.name, s.ids, full[:, start + k : start + k + 1], s.got, s.valid, s.keys) for k, s in enumerate(steps[1:])]
    return _logits_row(INCREMENTAL, ep, recomputed, tol, f"{len(recomputed)} cached steps vs one prefill of {ids.shape[1]}")


def _tokens_row(ep: str, steps: list[StepLogits], tol: Tolerance) -> CheckResult:
    agree = sum((token_agreement(s.ref, s.got, s.valid, tol.tie_gap(s.ref)) for s in steps), TokenAgreement(0, 0, 0))
    if tol.min_agreement >= 1.0:
        measured, ok = f"{agree.disagreements} of {agree.compared} differ", agree.disagreements == 0
    else:
        measured, ok = (
            f"{agree.agreement:.1%} agree ({agree.compared - agree.disagreements}/{agree.compared})",
            agree.agreement >= tol.min_agreement,
        )
    ties = agree.near_ties
    bound = f"{TOP2_GAP:.0e}" if tol.metric == "max_rel" else f"max({TOP2_GAP:.0e}, 2·{tol.base:g}·rms(logits))"
    detail = f"{ties} near-tie{'s' if ties != 1 else ''} skipped (top-2 gap ≤ {bound})" if ties else ""
    return CheckResult(TOKENS, ep, PASS if ok else FAIL, measured, tol.describe_tokens(), agree.agreement, tol.min_agreement, detail)


def _error_row(check: str, ep: str, tol: Tolerance, err: BaseException) -> CheckResult:
    tolerance = tol.describe_tokens() if check == TOKENS else f"{tol.label()} within limit"
    return CheckResult(check, ep, FAIL, "ORT error", tolerance, detail=one_line(err))


def parity_checks(
    ep: str, stepper: GraphStepper, model: torch.nn.Module, contract: IOContract, settings: Settings, tol: Tolerance
) -> list[CheckResult]:
    """Every parity check on one EP, in the order of ``CHECKS``; an ORT error in a run fails the checks that
    needed it."""
    rng = np.random.default_rng(settings.seed)
    rows: dict[str, CheckResult] = {}
    lengths = "/".join(map(str, settings.lengths))
    try:
        ids, mask = padded_batch(settings.lengths, contract.vocab_size, "left", rng)
        steps = trace(model, stepper, ids, mask, settings.steps)
    except ORT_ERRORS as err:
        rows.update({c: _error_row(c, ep, tol, err) for c in (PREFILL, DECODE, INCREMENTAL, TOKENS)})
    else:
        rows[PREFILL] = _logits_row(PREFILL, ep, steps[:1], tol, f"batch {settings.batch}, lengths {lengths}, left-padded")
        rows[DECODE] = _logits_row(DECODE, ep, steps[1:], tol, "")
        rows[TOKENS] = _tokens_row(ep, steps, tol)
        try:
            rows[INCREMENTAL] = (
                CheckResult(INCREMENTAL, ep, NOT_APPLICABLE, "not applicable", "-", detail=settings.not_incremental)
                if settings.not_incremental
                else _incremental_row(ep, stepper, steps, tol)
            )
        except ORT_ERRORS as err:
            rows[INCREMENTAL] = _error_row(INCREMENTAL, ep, tol, err)
    try:  # the pad slots follow the tokens: a kernel that assumes left padding (or none) reads them as tokens
        ids, mask = padded_batch(settings.lengths, contract.vocab_size, "right", np.random.default_rng(settings.seed))  # same prompts
        steps = trace(model, stepper, ids, mask, 0)
        rows[RIGHT] = _logits_row(RIGHT, ep, steps, tol, f"batch {settings.batch}, lengths {lengths}, right-padded")
    except ORT_ERRORS as err:
        rows[RIGHT] = _error_row(RIGHT, ep, tol, err)
    try:
        ids, mask = padded_batch([settings.long_prompt_len], contract.vocab_size, "left", rng)
        steps = trace(model, stepper, ids, mask, settings.long_steps)
        rows[LONG] = _logits_row(LONG, ep, steps, tol, f"prompt {settings.long_prompt_len}, positions up to {settings.long_positions - 1}")
    except ORT_ERRORS as err:
        rows[LONG] = _error_row(LONG, ep, tol, err)
    return [rows[c] for c in CHECKS]
