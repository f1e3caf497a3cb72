"""Half-precision builds run on ONNX Runtime's CPU provider and track the fp32 PyTorch reference:
relative L2 ‖Δ‖/‖ref‖ ≤ 1e-2 on valid positions, prefill (left-padded) and 4 decode steps, no NaN."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import MODELS
from yamlllm_export import export_onnx, load_spec
from yamlllm_export.export.io_contract import IOContract
from yamlllm_export.validate.parity import padded_batch
from yamlllm_export.validate.session import cpu_session, run_step

CASES = [
    pytest.param(m, t, id=f"{m}-{t}", marks=pytest.mark.xdist_group(name=m))
    for m in ("tiny-llama", "tiny-alibi")
    for t in ("ort", "portable")
]


@pytest.mark.parametrize(("model", "target"), CASES)
def test_float16_build_tracks_fp32_reference(tmp_path, reference, model, target):
    folder = export_onnx(MODELS / f"{model}.yaml", tmp_path / "fp16", target=target, dtype="float16")
    contract = IOContract.for_spec(load_spec(folder / "model.yaml"))
    session = cpu_session(folder)
    rng = np.random.default_rng(0)
    ids, mask = padded_batch([6, 3], contract.vocab_size, "left", rng)
    past = [np.zeros((2, contract.num_kv_heads, 0, contract.head_dim), dtype=np.float16) for _ in contract.past_names()]
    ref_past = None
    for step in range(5):
        with torch.no_grad():
            ref, ref_past = reference(model)(torch.from_numpy(ids), torch.from_numpy(mask), None, ref_past)
        got, past = run_step(session, contract, ids, mask, past)
        assert got.dtype == np.float16 and not np.isnan(got).any(), f"step {step}"
        valid = mask[:, -ids.shape[1] :].astype(bool)
        ref_v, got_v = ref.numpy()[valid], got.astype(np.float32)[valid]
        rel = np.linalg.norm(ref_v - got_v) / np.linalg.norm(ref_v)
        assert rel <= 1e-2, f"{model}/{target} step {step}: relative L2 {rel:.2e}"
        ids = rng.integers(1, contract.vocab_size, (2, 1))
        mask = np.concatenate([mask, np.ones_like(ids)], axis=1)
