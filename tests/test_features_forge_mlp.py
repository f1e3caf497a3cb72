"""Parity grid of ReaLLM-Forge's per-token options (norm variants, activations, MLP variants): each case is
built from a spec through the production path (``export_onnx``), exported once per session and target, and
proved with ``validate_folder`` (left-padded prefill, 8 teacher-forced decode steps through the KV cache,
incremental vs recompute, long context, greedy tokens). Cases combine options that touch different code, so
each export proves several. Ids name (case, target). The formulas themselves: tests/test_forge_formulas.py."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from tests.conftest import TARGETS
from tests.feature_cases import FORGE_CASES
from tests.validate_fixtures import assert_parity
from yamlllm_export import build_model, load_spec
from yamlllm_export.model.activations import STATELESS
from yamlllm_export.model.ffn import Activation

CASES = FORGE_CASES
GRID = [pytest.param(name, target, id=f"{name}-{target}") for name in CASES for target in TARGETS]


@pytest.mark.parametrize(("name", "target"), GRID)
def test_exported_graph_matches_pytorch(export_case, tmp_path, name, target):
    assert_parity(export_case(name, CASES[name], target), tmp_path, steps=8)


@pytest.mark.parametrize("name", list(CASES))
def test_parameter_count_matches_the_model(name):
    spec = load_spec(CASES[name])
    assert sum(p.numel() for p in build_model(spec).parameters()) == spec.parameter_count()


class _AllStateless(torch.nn.Module):
    """Every stateless Forge activation on one input, stacked: one small export proves all their lowerings."""

    def __init__(self) -> None:
        super().__init__()
        self.acts = torch.nn.ModuleList(Activation(STATELESS[n]) for n in sorted(STATELESS))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([a(x) for a in self.acts])


@pytest.mark.parametrize("opset", [18, 23], ids=["opset18-ort-portable", "opset23-onnx"])
def test_every_stateless_activation_exports_exactly(tmp_path, opset):
    """The 12 stateless activations (softplus past its threshold 20 included), exported at our targets'
    opsets and run on ORT CPU, equal the eager ones."""
    x = torch.cat([torch.linspace(-30, 30, 241), torch.tensor([-1e-3, 0.0, 1e-3, 5.9, 6.0, 6.1, 19.9, 20.0, 20.1])])
    model = _AllStateless().eval()
    path = tmp_path / "acts.onnx"
    torch.onnx.export(model, (x,), str(path), dynamo=True, opset_version=opset, external_data=False)
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})[0]
    want = model(x).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
