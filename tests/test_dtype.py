"""Half-precision builds on ONNX Runtime's CPU provider against the fp32 PyTorch reference, per position:
max|Δ|/σ ≤ √L·(C·ε_h + ε·(C·√d + T)) (validate/parity.py derives it from the half type's epsilon ε_h), on a
left-padded prefill and 4 decode steps, no NaN. bfloat16 runs through tests/half_emulation.py (ORT's CPU has no
bfloat16 MatMul): the build's graph and weights, every intermediate rounded to bfloat16.

The mutations of tests/test_mutations.py still fail at half precision, on a model whose weights make them
matter (init std 0.08): a 2 % softmax-scale error, a swapped rotary half and a decode position off by one at
float16; at bfloat16 the latter two, while the softmax error (0.03–0.07 σ) is inside bfloat16's own rounding
(the good build measures 0.04 σ: ε_bf16 = 2⁻⁷ is 0.8 % per rounding)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from tests.conftest import MODELS
from tests.feature_cases import case
from tests.half_emulation import emulate_bfloat16
from tests.validate_fixtures import copy_folder, decode_position_off_by_one, edit_graph, scale_softmax, swap_rotary_halves
from yamlllm_export import build_model, export_onnx, load_spec
from yamlllm_export.runtime.io_contract import IOContract
from yamlllm_export.runtime.session import cpu_session
from yamlllm_export.runtime.stepper import GraphStepper
from yamlllm_export.validate.parity import Tolerance, max_rel, padded_batch, trace

CASES = [
    pytest.param(m, t, id=f"{m}-{t}", marks=pytest.mark.xdist_group(name=m))
    for m in ("tiny-llama", "tiny-alibi")
    for t in ("ort", "portable")
]
SPEC = case()  # the feature grids' base model: 2 layers of width 64, 4 heads of 16, init std 0.08
HEAD_DIM = 16
MUTATIONS = {  # name: (edit, the steps where it shows)
    "softmax-scale-2pc": (lambda m: scale_softmax(m, 1.02, HEAD_DIM), "all"),
    "rotary-half-swapped": (swap_rotary_halves, "all"),
    "decode-position-off-by-one": (decode_position_off_by_one, "decode"),
}
HALF_GRID = [
    pytest.param(dtype, name, id=f"{dtype}-{name}", marks=pytest.mark.xdist_group(name="half"))
    for dtype in ("float16", "bfloat16")
    for name in MUTATIONS
    if not (dtype == "bfloat16" and name == "softmax-scale-2pc")  # within bfloat16's rounding (module docstring)
]


def deviations(reference, folder: Path) -> list[tuple[str, float, int]]:
    """(step, max|Δ|/σ, keys) of a left-padded prefill and 4 decode steps on ORT's CPU."""
    contract = IOContract.for_spec(load_spec(folder / "model.yaml"))
    stepper = GraphStepper.for_session(cpu_session(folder), contract)
    ids, mask = padded_batch([24, 13, 6], contract.vocab_size, "left", np.random.default_rng(0))
    return [(s.name, max_rel(s.ref, s.got, s.valid), s.keys) for s in trace(reference, stepper, ids, mask, decode_steps=4)]


@pytest.fixture(scope="session")
def half_build(tmp_path_factory):
    """dtype → (reference, folder of SPEC's ort build in that dtype, runnable on ORT's CPU), once per session."""
    root = tmp_path_factory.mktemp("half")
    reference = build_model(load_spec(SPEC), seed=0)
    made: dict[str, Path] = {}

    def get(dtype: str) -> tuple[object, Path]:
        if dtype not in made:
            made[dtype] = export_onnx(SPEC, root / dtype, dtype=dtype, seed=0)
        return reference, made[dtype]

    return get


def runnable(folder: Path, dtype: str, where: Path) -> Path:
    return emulate_bfloat16(folder, where) if dtype == "bfloat16" else folder


@pytest.mark.parametrize(("model", "target"), CASES)
def test_float16_build_tracks_fp32_reference(tmp_path, reference, model, target):
    folder = export_onnx(MODELS / f"{model}.yaml", tmp_path / "fp16", target=target, dtype="float16")
    assert cpu_session(folder).get_outputs()[0].type == "tensor(float16)"
    tol = Tolerance.for_spec("float16", load_spec(folder / "model.yaml"))
    for step, value, keys in deviations(reference(model), folder):  # inf when the output holds a NaN
        assert tol.ok(value, keys), f"{model}/{target} {step}: max|Δ|/σ {value:.2e} > {tol.describe(keys)}"


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.xdist_group(name="half")
def test_half_build_within_its_derived_limit(half_build, tmp_path, dtype):
    """Measured: 0.004 σ at float16 and 0.04 σ at bfloat16, both ≈ 2–4·ε_h·√L; the limit is 16·ε_h·√L."""
    reference, folder = half_build(dtype)
    tol = Tolerance.for_spec(dtype, load_spec(SPEC))
    for step, value, keys in deviations(reference, runnable(folder, dtype, tmp_path / "run")):
        assert value * 2 <= tol.limit(keys), f"{dtype} {step}: max|Δ|/σ {value:.2e}, limit {tol.describe(keys)}"


@pytest.mark.parametrize(("dtype", "name"), HALF_GRID)
def test_mutations_fail_at_half_precision(half_build, tmp_path, dtype, name):
    reference, folder = half_build(dtype)
    mutate, where = MUTATIONS[name]
    edits = []
    mutated = edit_graph(copy_folder(folder, tmp_path / "mutated"), lambda m: edits.append(mutate(m)))
    assert edits[0] > 0, f"{name}: nothing in the {dtype} graph to mutate"
    tol = Tolerance.for_spec(dtype, load_spec(SPEC))
    rows = [r for r in deviations(reference, runnable(mutated, dtype, tmp_path / "run")) if where == "all" or r[0] != "prefill"]
    worst = max(value / tol.limit(keys) for _, value, keys in rows)
    assert worst > 1.0, f"{dtype} {name}: at most {worst:.2f}× the limit, validate would pass it"


def _if_branches(folder: Path) -> list[tuple[onnx.NodeProto, onnx.NodeProto]]:
    """(then GQA, else GQA) of every If in the graph (a half-precision ort build's run-time choice)."""
    model = onnx.load(str(folder / "model.onnx"), load_external_data=False)
    pairs = []
    for node in model.graph.node:
        if node.op_type == "If":
            branches = {a.name: a.g for a in node.attribute}
            gqa = [next(n for n in branches[b].node if n.op_type == "GroupQueryAttention") for b in ("then_branch", "else_branch")]
            pairs.append((gqa[0], gqa[1]))
    return pairs


@pytest.mark.xdist_group(name="half")
def test_unpadded_rows_take_the_bias_free_branch_exactly(half_build, tmp_path):
    """Without padding the bias is all zeros and GroupQueryAttention runs without it (what lets CUDA pick its fused
    kernels): exact on unpadded rows; making that branch bidirectional then fails them, so it is the one that ran."""
    reference, folder = half_build("float16")
    pairs = _if_branches(folder)
    assert len(pairs) == 2  # one per layer
    for fused, exact in pairs:
        assert len(fused.input) <= 10 or not fused.input[10]  # no attention_bias
        assert exact.input[10]  # the padded path keeps it
    tol = Tolerance.for_spec("float16", load_spec(SPEC))
    contract = IOContract.for_spec(load_spec(SPEC))

    def unpadded(f: Path) -> float:
        stepper = GraphStepper.for_session(cpu_session(f), contract)
        ids, mask = padded_batch([12, 12], contract.vocab_size, "left", np.random.default_rng(1))
        assert mask.all()
        return max(max_rel(s.ref, s.got, s.valid) / tol.limit(s.keys) for s in trace(reference, stepper, ids, mask, decode_steps=2))

    assert unpadded(folder) <= 0.5

    def bidirectional(model: onnx.ModelProto) -> None:
        for node in model.graph.node:
            if node.op_type == "If":
                then = next(a.g for a in node.attribute if a.name == "then_branch")
                gqa = next(n for n in then.node if n.op_type == "GroupQueryAttention")
                gqa.attribute.append(onnx.helper.make_attribute("causal", 0))

    assert unpadded(edit_graph(copy_folder(folder, tmp_path / "mutated"), bidirectional)) > 1.0
