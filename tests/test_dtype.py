"""Half-precision builds run on ONNX Runtime's CPU provider and track the fp32 PyTorch reference:
relative L2 ‖Δ‖/‖ref‖ ≤ 1e-2 on valid positions, prefill (left-padded) and 4 decode steps, no NaN."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import MODELS
from yamlllm_export import export_onnx, load_spec
from yamlllm_export.runtime.io_contract import IOContract
from yamlllm_export.runtime.session import cpu_session
from yamlllm_export.runtime.stepper import GraphStepper
from yamlllm_export.validate.parity import padded_batch, rel_l2, trace

CASES = [
    pytest.param(m, t, id=f"{m}-{t}", marks=pytest.mark.xdist_group(name=m))
    for m in ("tiny-llama", "tiny-alibi")
    for t in ("ort", "portable")
]


@pytest.mark.parametrize(("model", "target"), CASES)
def test_float16_build_tracks_fp32_reference(tmp_path, reference, model, target):
    folder = export_onnx(MODELS / f"{model}.yaml", tmp_path / "fp16", target=target, dtype="float16")
    contract = IOContract.for_spec(load_spec(folder / "model.yaml"))
    stepper = GraphStepper.for_session(cpu_session(folder), contract)
    assert stepper.session.get_outputs()[0].type == "tensor(float16)"
    ids, mask = padded_batch([6, 3], contract.vocab_size, "left", np.random.default_rng(0))
    for step in trace(reference(model), stepper, ids, mask, decode_steps=4):
        rel = rel_l2(step.ref, step.got, step.valid)  # inf when the output holds a NaN
        assert rel <= 1e-2, f"{model}/{target} {step.name}: relative L2 {rel:.2e}"
