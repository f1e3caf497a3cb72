"""The exported graph on ONNX Runtime (CPU) matches the PyTorch model: every tiny model × target ×
padding side, prefill of two sequences of different lengths then 8 teacher-forced decode steps, within
``validate``'s float32 limit (max|Δ|/σ ≤ C·ε·√(L·T), validate/parity.py): relative to the logits' spread,
so the tiny models' small init (std 0.02, logits σ ≈ 0.1) hides no error (tests/test_mutations.py)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import TARGETS, TINY_MODELS
from yamlllm_export.runtime.io_contract import IOContract
from yamlllm_export.runtime.session import GraphRunError, cpu_session
from yamlllm_export.runtime.stepper import GraphStepper
from yamlllm_export.spec import load_spec
from yamlllm_export.validate.parity import Tolerance, teacher_forced

TOL = 1e-4  # absolute, for the chunked-prefill check against one reference forward
GRID = [
    pytest.param(m, t, side, id=f"{m}-{t}-{side}", marks=pytest.mark.xdist_group(name=m))
    for m in TINY_MODELS
    for t in TARGETS
    for side in ("left", "right")
]


@pytest.mark.parametrize(("model", "target", "side"), GRID)
def test_logits_match_pytorch(built, reference, model, target, side):
    folder = built(model, target)
    contract = IOContract.for_spec(load_spec(folder / "model.yaml"))
    diffs = teacher_forced(reference(model), cpu_session(folder), contract, lengths=[7, 3], side=side, decode_steps=8)
    assert len(diffs) == 9
    tol = Tolerance.for_spec("float32", load_spec(folder / "model.yaml"))
    bad = [d for d in diffs if not tol.ok(d.max_rel, d.keys)]
    assert not bad, f"{model}/{target}/{side}: " + ", ".join(
        f"{d.step}: max|Δ|/σ {d.max_rel:.2e} > {tol.limit(d.keys):.1e} (row {d.worst_row})" for d in bad
    )


@pytest.mark.parametrize("model", TINY_MODELS, ids=TINY_MODELS)
def test_parity_check_catches_a_wrong_model(built, model):
    """The harness itself can fail: a reference with other weights (seed 1) is far off."""
    from tests.conftest import MODELS
    from yamlllm_export import build_model

    folder = built(model, "portable")
    contract = IOContract.for_spec(load_spec(folder / "model.yaml"))
    other = build_model(MODELS / f"{model}.yaml", seed=1)
    diffs = teacher_forced(other, cpu_session(folder), contract, lengths=[5, 2], side="left", decode_steps=1)
    assert all(d.max_abs > 1e-2 for d in diffs)


@pytest.mark.xdist_group(name="tiny-llama")
def test_ort_refuses_chunked_prefill_with_past_for_batches(built):
    """ORT's CPU GroupQueryAttention refuses batch > 1 with several new tokens and a past: the export must
    fail loudly there, never return wrong numbers."""
    folder = built("tiny-llama", "ort")
    contract = IOContract.for_spec(load_spec(folder / "model.yaml"))
    stepper = GraphStepper.for_session(cpu_session(folder), contract)
    ids = np.ones((2, 3), dtype=np.int64)
    _, presents = stepper.step(ids, np.ones((2, 3), dtype=np.int64), stepper.empty_past(2))
    with pytest.raises(GraphRunError, match="batch_size must be 1"):
        stepper.step(ids, np.ones((2, 6), dtype=np.int64), presents)


@pytest.mark.xdist_group(name="tiny-llama")
def test_ort_chunked_prefill_with_past_batch_one_matches(built, reference):
    """Batch 1 may append several tokens to a past (chunked prefill) and stays exact."""
    import torch

    folder = built("tiny-llama", "ort")
    contract = IOContract.for_spec(load_spec(folder / "model.yaml"))
    stepper = GraphStepper.for_session(cpu_session(folder), contract)
    ids = np.arange(1, 10, dtype=np.int64)[None]
    _, presents = stepper.step(ids[:, :5], np.ones((1, 5), dtype=np.int64), stepper.empty_past(1))
    got, _ = stepper.step(ids[:, 5:], np.ones((1, 9), dtype=np.int64), presents)
    with torch.no_grad():
        ref, _ = reference("tiny-llama")(torch.from_numpy(ids))
    assert np.abs(ref[:, 5:].numpy() - got).max() <= TOL
