"""Attention sinks (GPT-OSS) through the production path with sinks that matter: random logits per head (a
seeded build starts them at 0), on a layer with a sliding window and a softcap, next to a layer without
sinks (layer_overrides), on every target. ``validate`` passes; with the sinks taken out of the softmax's
denominator in the graph (their logits set to -1e4) it fails on every logits check by a wide margin, so a
lowering that dropped the sink could not pass. (The eager op against its formula: tests/test_ops_attention.py.)"""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from safetensors.torch import save_file

from tests.conftest import TARGETS
from tests.feature_cases import ATT, case
from tests.validate_fixtures import copy_folder, edit_graph, failed, row, run
from yamlllm_export import build_model, export_onnx, load_spec

SPEC = case(
    f"{ATT}.sinks", True, f"{ATT}.logit_softcap", 1.0, "embedding.max_position_embeddings", 64,
    "layer_overrides", [{"layers": [0], "attention": {"window_size": 5}}, {"layers": [1], "attention": {"sinks": False}}],
    "initialization", {"type": "gpt2", "std": 0.2},
)  # fmt: skip
LOGITS = ("prefill", "right padding", "decode", "long context")
MARGIN = 5.0  # the mutation measures at least this many limits on each logits check
DROPPED = -1e4  # exp(-1e4 - max) is 0 in float32: the sink leaves the denominator


@pytest.fixture(scope="session")
def sink_build(tmp_path_factory):
    """target → folder, exported once per session from a checkpoint whose layer-0 sinks are N(0, 2²)."""
    root = tmp_path_factory.mktemp("sinks")
    model = build_model(load_spec(SPEC), seed=0)
    assert model.blocks[1].attn.sinks is None  # the override took them off layer 1
    with torch.no_grad():
        model.blocks[0].attn.sinks.copy_(torch.randn(4, generator=torch.Generator().manual_seed(0)) * 2)
    save_file(model.state_dict(), root / "weights.safetensors")
    sinks = model.blocks[0].attn.sinks.detach().numpy().copy()
    made: dict[str, object] = {}

    def get(target: str):
        if target not in made:
            made[target] = export_onnx(SPEC, root / target, target=target, weights=root / "weights.safetensors")
        return made[target], sinks

    return get


def drop_sinks(model: onnx.ModelProto, sinks: np.ndarray) -> int:
    """Every initializer holding the sink logits (in any shape) gets DROPPED instead; returns how many."""
    edits = 0
    for init in model.graph.initializer:
        value = numpy_helper.to_array(init)
        if value.size == sinks.size and value.dtype == np.float32 and np.array_equal(value.reshape(-1), sinks):
            init.CopyFrom(numpy_helper.from_array(np.full_like(value, DROPPED), init.name))
            edits += 1
    return edits


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.xdist_group(name="sinks")
def test_sinks_pass_validate(sink_build, tmp_path, target):
    folder, _ = sink_build(target)
    report = run(folder, tmp_path / "parity")
    assert report.exit_code == 0, [(r.check, r.status, r.detail) for r in report.results if r.status != "pass"]
    for check in LOGITS:
        r = row(report, check)
        assert math.isfinite(r.value) and r.value <= r.limit, r


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.xdist_group(name="sinks")
def test_a_graph_without_the_sinks_fails(sink_build, tmp_path, target):
    folder, sinks = sink_build(target)
    edits = []
    mutated = edit_graph(copy_folder(folder, tmp_path / "mutated"), lambda m: edits.append(drop_sinks(m, sinks)))
    assert edits[0] > 0, f"no sink logits in the {target} graph"
    report = run(mutated, tmp_path / "parity")
    assert set(LOGITS) <= failed(report), sorted(failed(report))
    for check in LOGITS:
        r = row(report, check)
        assert r.value is None or r.value >= MARGIN * r.limit, f"{check} only {r.value / r.limit:.1f}× its limit"
