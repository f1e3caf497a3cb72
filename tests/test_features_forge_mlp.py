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


def _ops(folder) -> set[str]:
    import onnx

    return {n.op_type for n in onnx.load(str(folder / "model.onnx")).graph.node}


def test_forge_norms_are_plain_ops_and_escape_the_ort_rmsnorm_fusion(export_case):
    """DyT / identity / pRMSNorm / kRMSNorm / the hypersphere are plain ops: ORT's SkipSimplifiedLayerNormalization
    fusion, which matches yamlllm::rms_norm's SimplifiedLayerNormalization, must not fire on them; Forge's
    RMSNorm (eps 0) is yamlllm::rms_norm and keeps it."""
    import json

    for name in ("forge-peri-dyt-identity-dualpath", "forge-prmsnorm-krmsnorm-first-gelu-gate-offsets"):
        folder = export_case(name, CASES[name], "ort")
        assert json.loads((folder / "build.json").read_text())["fusions"]["skip_simplified_layer_normalization"] == 0
        assert not _ops(folder) & {"SimplifiedLayerNormalization", "SkipSimplifiedLayerNormalization"}
    folder = export_case("forge-rmsnorm-eps0-pfla", CASES["forge-rmsnorm-eps0-pfla"], "ort")
    assert json.loads((folder / "build.json").read_text())["fusions"]["skip_simplified_layer_normalization"] >= 2


@pytest.mark.parametrize("target", TARGETS)
def test_quantized_tables_and_weights_are_baked(export_case, target):
    """deq(quant(W)) of the embedding tables and of quantized_linear weights depends on stored weights only: the
    export folds it into initializers (no Round / ReduceMax left); BitLinear's per-token activations keep Round."""
    for name in ("forge-factorized-shared-proj-qwte-qwpe", "forge-quantized-linear-sym4"):
        assert not _ops(export_case(name, CASES[name], target)) & {"Round", "ReduceMax", "ReduceMin"}
    assert "Round" in _ops(export_case("forge-bitlinear-vector-lsv-one_hot", CASES["forge-bitlinear-vector-lsv-one_hot"], target))
