"""Teacher-forced parity: the exported graph on ONNX Runtime vs the PyTorch model, prefill + KV-cache decode.

Both sides get the same tokens at every step (teacher forcing), each keeps its own cache, and the logits of
every valid position are compared. NaN or inf anywhere in the ONNX output is a failure, reported as ``inf``.
Tolerances depend on the build dtype; the reference always runs in float32.

Float32 tolerance (``max|Δ|/σ``): at each valid position, the largest logit difference divided by the
standard deviation σ of the reference's logits at that position, at most ε·√L·(C·√d + T) with ε = 2⁻²³
(float32's machine epsilon), L layers, d the hidden width, T the keys in the step's cache and
C = ``FP32_HEADROOM``. Why this shape:

- Scale. Rounding is relative: the same export with weights ×10 has logit errors ×10. An error in units
  of the logits' spread at that position says how much the prediction moved, whatever the weights' scale
  (a fixed 1e-4 failed SmolLM2, whose logits spread σ ≈ 2–8, and passed a 2 % softmax-scale error in
  decode on the tiny test models, whose logits spread σ ≈ 0.15).
- Width. ORT's kernels and PyTorch's sum in different orders. A sum of n float32 terms carries a rounding
  error of about ε·√n of its size when the errors are unbiased (a random walk): each projection sums d
  products, hence C·√d, with C the headroom over what SmolLM2 measures at short context (≈ 2).
- Context. Attention sums T exponentials and T weighted values per query; here the limit takes the
  worst-case bound of a sum, T·ε (coefficient 1), not the random walk: the long-context check compares
  thousands of positions, and its maximum lands on outliers (SmolLM2 at 8188 keys: 99th percentile
  3.3e-5, maximum 1.4e-3 at one position, 3.9× under the limit).
- Depth. Each layer adds its own independent error to the residual stream: variances add, √L.

Half precision (float16, bfloat16): the same per-position metric, at most √L·(C·ε_h + ε·(C·√d + T)), ε_h the
half type's machine epsilon (2⁻¹⁰ float16, 2⁻⁷ bfloat16). Every weight and every tensor between two kernels is
stored in the half type, each rounding a relative ε_h/2, independently: about k ≈ 16 roundings per layer on the
residual path (norms, q/k/v, scores, probabilities, attention output, projections, gate/up/down, residual
adds) add to ε_h/2·√k ≈ 2·ε_h per layer in units of σ, and again √L over layers; C = ``FP32_HEADROOM`` is
the headroom over that (measured on a 2-layer model with init std 0.08: 2.2·ε_h·√L at float16). The kernels
accumulate in float32 (ORT's CPU casts half MatMuls to float32; CUDA's half GEMMs and attention accumulate in
float32), which is the float32 term, unchanged. The width does not enter the half term: a sum of d products
with independently rounded weights has a rounding error of ε_h/2 of its own size, not of √d times it.
(docs/cuda.md has the measurements and what the mutations measure at float16.)

docs/validation.md has SmolLM2's measured margins; a 2 % softmax-scale error, a swapped rotary half or an
off-by-one decode position measure ≥ 16× the limit on tiny-llama and ≥ 460× on SmolLM2
(tests/test_mutations.py).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from yamlllm_export.export.reference import WindowRecompute
from yamlllm_export.runtime.io_contract import IOContract
from yamlllm_export.runtime.stepper import GraphStepper
from yamlllm_export.spec import ModelSpec

TOP2_GAP = 1e-3  # a greedy-token disagreement counts only where the reference's top-2 gap exceeds this
EPS32 = float(np.finfo(np.float32).eps)  # 2⁻²³ ≈ 1.19e-7
FP32_HEADROOM = 16.0  # C of the float32 limit ε·√L·(C·√d + T) (module docstring)
# The KAN FFN normalises each feature by its min/max over the window, dividing rounding errors by a range that
# a short window makes small: one float32 rounding (relative noise ε) in every weight of the feature grid's
# KAN case moves its logits by 1.0e-4 σ, against 2.9e-6 σ for the same model with its MLP (34×, measured
# 2026-12-07); ORT vs PyTorch measured 3.3e-5 σ there, 1.4× the plain limit. The limit is multiplied by this
# for a spec with a KAN FFN; the mutations of tests/test_full_window.py move the logits by > 1e-3.
KAN_CONDITION = 8.0
EPS_HALF = {"float16": 2.0**-10, "bfloat16": 2.0**-7}  # ε_h of the half-precision limit (module docstring)
HALF_REL_L2 = 1e-2  # ‖Δ‖/‖ref‖ of a quantized half build's compute (validate/quantized.py)


@dataclass(frozen=True)
class StepDiff:
    step: str  # "prefill" or "decode 1" ...
    max_abs: float  # over valid positions; inf when the ONNX output holds a NaN anywhere
    max_rel: float  # max|Δ|/σ over valid positions (``max_rel``); inf likewise
    keys: int  # keys in this step's cache (past + new), the T of the float32 limit
    worst_row: int


@dataclass(frozen=True)
class StepLogits:
    """One forward on both sides: the tokens fed, float32 logits (B, S, V), and which positions are real."""

    name: str
    ids: np.ndarray
    ref: np.ndarray
    got: np.ndarray
    valid: np.ndarray  # (B, S) 1 for a token, 0 for a pad
    keys: int  # keys in this step's cache (past + new): the T of the float32 limit


@dataclass(frozen=True)
class Tolerance:
    """How close is close enough for a build dtype, for a model of ``layers`` layers of width ``width``."""

    metric: str  # "max_rel" (max|Δ|/σ per position) or "rel_l2" (‖Δ‖/‖ref‖, quantized builds)
    base: float  # max_rel: ε, the limit per √L·(C·√d + T); rel_l2: the limit itself
    min_agreement: float  # share of decided greedy tokens that must agree
    layers: int = 1
    width: int = 0  # d, the hidden width
    condition: float = 1.0  # how much more the model amplifies float32 rounding than a plain transformer
    storage_eps: float = 0.0  # ε_h of a half-precision build (0 for float32): adds √L·C·ε_h to the limit

    @classmethod
    def for_dtype(cls, dtype: str, layers: int = 1, width: int = 0) -> Tolerance:
        if dtype == "float32":
            return cls("max_rel", EPS32, 1.0, layers, width)
        return cls("max_rel", EPS32, 0.99, layers, width, storage_eps=EPS_HALF[dtype])

    @classmethod
    def for_spec(cls, dtype: str, spec: ModelSpec) -> Tolerance:
        """The tolerance for a ``ModelSpec``'s build in ``dtype``."""
        tol = cls.for_dtype(dtype, spec.num_layers, spec.layer.hidden_dim)
        kan = any(layer.ffn.kan is not None for layer in spec.layer_specs())
        return dataclasses.replace(tol, condition=KAN_CONDITION) if kan and tol.metric == "max_rel" else tol

    def limit(self, keys: int) -> float:
        """The limit for a step whose cache holds ``keys`` keys."""
        if self.metric != "max_rel":
            return self.base
        compute = self.condition * self.base * (FP32_HEADROOM * math.sqrt(self.width) + keys)
        return math.sqrt(self.layers) * (FP32_HEADROOM * self.storage_eps + compute)

    def measure(self, ref: np.ndarray, got: np.ndarray, valid: np.ndarray) -> float:
        return max_rel(ref, got, valid) if self.metric == "max_rel" else rel_l2(ref, got, valid)

    def ok(self, value: float, keys: int) -> bool:
        return math.isfinite(value) and value <= self.limit(keys)

    def label(self) -> str:
        return "max|Δ|/σ" if self.metric == "max_rel" else "‖Δ‖/‖ref‖"

    def describe(self, keys: int) -> str:
        if self.metric == "max_rel" and self.storage_eps:
            h = {v: k for k, v in EPS_HALF.items()}.get(self.storage_eps, "h")
            return f"{self.label()} ≤ {self.limit(keys):.1e} (√{self.layers}·({FP32_HEADROOM:g}·ε_{h} + ε·({FP32_HEADROOM:g}·√{self.width} + {keys})))"
        if self.metric == "max_rel":
            factor = f"{self.condition:g}·" if self.condition != 1.0 else ""
            return f"{self.label()} ≤ {self.limit(keys):.1e} ({factor}ε·√{self.layers}·({FP32_HEADROOM:g}·√{self.width} + {keys}))"
        return f"{self.label()} ≤ {self.limit(keys):.0e}"

    def tie_gap(self, ref: np.ndarray) -> np.ndarray:
        """Per position (ref's leading dims), the top-2 gap under which a greedy flip is within tolerance: fp32
        graphs, TOP2_GAP; a relative-L2 bound (half precision, quantized activations) allows each logit an error
        of about base·rms(row), so two of them can close a gap of 2·base·rms(row)."""
        if self.metric == "max_rel" and self.storage_eps:  # each logit may move by the storage term's σ units
            sigma = ref.astype(np.float64).std(-1)
            return np.maximum(TOP2_GAP, 2 * math.sqrt(self.layers) * FP32_HEADROOM * self.storage_eps * sigma)
        if self.metric == "max_rel":
            return np.full(ref.shape[:-1], TOP2_GAP)
        rms = np.sqrt(np.mean(np.square(ref.astype(np.float64)), axis=-1))
        return np.maximum(TOP2_GAP, 2 * self.base * rms)

    def describe_tokens(self) -> str:
        return "identical" if self.min_agreement >= 1.0 else f"≥ {self.min_agreement:.0%} agree"


@dataclass(frozen=True)
class TokenAgreement:
    compared: int  # positions where the reference's top-2 gap exceeds TOP2_GAP
    disagreements: int
    near_ties: int  # positions skipped: the reference itself barely prefers its top token

    def __add__(self, other: TokenAgreement) -> TokenAgreement:
        return TokenAgreement(self.compared + other.compared, self.disagreements + other.disagreements, self.near_ties + other.near_ties)

    @property
    def agreement(self) -> float:
        return 1.0 if self.compared == 0 else 1.0 - self.disagreements / self.compared


def _bad(got: np.ndarray) -> bool:
    return not np.isfinite(got).all()


CHUNK = 256  # positions converted to float64 at a time: 8 k positions × 49 k logits would take 3 GB per copy


def _valid_rows(ref: np.ndarray, got: np.ndarray, valid: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(ref, got) of the valid positions as float64 (n, V) blocks of at most ``CHUNK`` positions."""
    index = np.argwhere(valid.astype(bool))  # (n, 2): (row, position)
    for k in range(0, len(index), CHUNK):
        b, s = index[k : k + CHUNK].T
        yield ref[b, s].astype(np.float64), got[b, s].astype(np.float64)


def max_abs(ref: np.ndarray, got: np.ndarray, valid: np.ndarray) -> float:
    """max |got - ref| over valid positions; inf when ``got`` holds a NaN or inf anywhere (pads included:
    a NaN in a pad row reaches valid rows through the next layer)."""
    if _bad(got):
        return math.inf
    return max((float(np.abs(g - r).max()) for r, g in _valid_rows(ref, got, valid)), default=0.0)


def max_rel(ref: np.ndarray, got: np.ndarray, valid: np.ndarray) -> float:
    """max over valid positions of max|got - ref| / σ(ref), σ the standard deviation of the reference's logits
    at that position (floored at float32's smallest normal, so identical constant rows give 0); inf when
    ``got`` holds a NaN or inf anywhere."""
    if _bad(got):
        return math.inf
    tiny = np.finfo(np.float32).tiny
    return max((float((np.abs(g - r).max(-1) / np.maximum(r.std(-1), tiny)).max()) for r, g in _valid_rows(ref, got, valid)), default=0.0)


def rel_l2(ref: np.ndarray, got: np.ndarray, valid: np.ndarray) -> float:
    """‖got - ref‖ / ‖ref‖ over valid positions; inf when ``got`` holds a NaN or inf anywhere."""
    if _bad(got):
        return math.inf
    sums = [(float(np.square(g - r).sum()), float(np.square(r).sum())) for r, g in _valid_rows(ref, got, valid)]
    diff, norm = math.sqrt(sum(d for d, _ in sums)), math.sqrt(sum(n for _, n in sums))
    return diff / norm if norm else diff


def token_agreement(ref: np.ndarray, got: np.ndarray, valid: np.ndarray, min_gap: float | np.ndarray = TOP2_GAP) -> TokenAgreement:
    """Greedy (top-1) tokens of both sides at every valid position; ``min_gap``: a float, or one per position
    (ref's leading dims), under which the reference's top-2 gap is a near tie and not compared."""
    sel = valid.astype(bool)
    r, g = ref[sel], got[sel]  # (n, V)
    if not len(r):
        return TokenAgreement(0, 0, 0)
    gap = np.broadcast_to(min_gap, ref.shape[:-1])[sel]
    top2 = np.partition(r, -2, axis=-1)[:, -2:]  # (n, 2): second best, best
    decided = (top2[:, 1] - top2[:, 0]) > gap
    differ = (r.argmax(-1) != g.argmax(-1)) & decided
    return TokenAgreement(int(decided.sum()), int(differ.sum()), int((~decided).sum()))


def padded_batch(lengths: list[int], vocab: int, side: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random prompts of the given lengths padded to the longest on ``side`` ('left' or 'right'); pad id 0."""
    width = max(lengths)
    ids = np.zeros((len(lengths), width), dtype=np.int64)
    mask = np.zeros_like(ids)
    for row, n in enumerate(lengths):
        cols = slice(width - n, width) if side == "left" else slice(0, n)
        ids[row, cols] = rng.integers(1, vocab, n)
        mask[row, cols] = 1
    return ids, mask


def greedy(last_logits: np.ndarray) -> np.ndarray:
    """The reference's greedy next token per row, from the logits at the last position (B, V)."""
    return last_logits.argmax(-1).astype(np.int64)


@torch.no_grad()
def trace(
    model: torch.nn.Module,
    stepper: GraphStepper,
    ids: np.ndarray,
    mask: np.ndarray,
    decode_steps: int,
    next_tokens: Callable[[np.ndarray], np.ndarray] = greedy,
) -> list[StepLogits]:
    """Prefill (ids, mask) on both sides, then ``decode_steps`` single-token steps; each side feeds its own
    presents back. ``next_tokens`` picks the fed tokens from the reference's last logits, so both sides
    always see the same sequence. Never several new tokens with a past: ORT's CPU GroupQueryAttention
    refuses that for batch > 1."""
    past_t, past = None, stepper.empty_past(len(ids))
    if stepper.contract.full_window:  # both sides recompute the window at every step
        model = WindowRecompute(model, stepper.contract.window)
    steps = []
    for step in range(decode_steps + 1):
        ref_t, past_t = model(torch.from_numpy(ids), torch.from_numpy(mask), None, past_t)
        got, past = stepper.step(ids, mask, past)
        ref = ref_t.float().numpy()
        name = "prefill" if step == 0 else f"decode {step}"
        steps.append(StepLogits(name, ids, ref, got, mask[:, -ids.shape[1] :], mask.shape[1]))
        ids = next_tokens(ref[:, -1])[:, None]
        mask = np.concatenate([mask, np.ones_like(ids)], axis=1)
    return steps


def teacher_forced(
    model: torch.nn.Module,
    session: object,
    contract: IOContract,
    *,
    lengths: list[int],
    side: str,
    decode_steps: int,
    seed: int = 0,
) -> list[StepDiff]:
    """Prefill a padded batch, then ``decode_steps`` single-token steps of random tokens."""
    rng = np.random.default_rng(seed)
    ids, mask = padded_batch(lengths, contract.vocab_size, side, rng)
    stepper = GraphStepper.for_session(session, contract)
    steps = trace(model, stepper, ids, mask, decode_steps, lambda last: rng.integers(1, contract.vocab_size, len(last)))
    diffs = []
    for s in steps:
        err = np.abs(s.ref - s.got).max(-1) * s.valid  # (B, S)
        worst_row = (
            int(np.unravel_index(err.argmax(), err.shape)[0]) if np.isfinite(s.got).all() else int(np.argwhere(~np.isfinite(s.got))[0][0])
        )
        diffs.append(StepDiff(s.name, max_abs(s.ref, s.got, s.valid), max_rel(s.ref, s.got, s.valid), s.keys, worst_row))
    return diffs
