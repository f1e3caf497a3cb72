"""Parity grid of the FFN / norm / layout / model-level features: each case is built from a spec through
the production path (``export_onnx``), exported once per session, and proved with ``validate_folder``
(left-padded prefill, 8 teacher-forced decode steps, incremental vs recompute, long context, greedy
tokens; fp32 max|Δ|/σ within validate's limit on ORT CPU). Ids name (feature, target)."""

from __future__ import annotations

import onnx
import pytest
import torch

from tests.conftest import TARGETS
from tests.feature_cases import case
from tests.validate_fixtures import assert_parity
from yamlllm_export import build_model, load_spec
from yamlllm_export.model.moe import MoE


def c(overrides: dict) -> dict:
    """``case`` from a {dotted key: value} dict; 64 positions keep the long-context check short."""
    return case(*[x for kv in {"embedding.max_position_embeddings": 64, **overrides}.items() for x in kv])


def mlp(activation: str) -> dict:
    gated = activation in ("swiglu", "geglu", "reglu")
    return {"layer.ffn.activation": activation, "layer.ffn.use_gated_activation": gated, "layer.ffn.bias": not gated}


def norm(kind: str, **extra: object) -> dict:
    return {"layer.layer_norm": {"type": kind, **extra}, "final_layer_norm": {"type": kind, **extra}}


MOE = {"num_experts": 4, "top_k": 2}
MOE_SHARED = {**MOE, "top_k": 1, "frequency": 2, "normalize_top_k": False, "shared_expert_intermediate_size": 48}
LEARNED = {"embedding.positional_encoding": {"type": "learned"}}
DROPOUT = {"embedding.dropout": 0.1, "layer.attention.dropout": 0.1, "layer.ffn.dropout": 0.1, "layer.residual_dropout": 0.1}

# Features are combined where they touch different code, so each (case, target) export proves several;
# swiglu (the base FFN) is covered by every case that keeps it.
CASES = {
    **{f"act-{a}": c(mlp(a)) for a in ("gelu", "relu", "silu", "squared_relu", "reglu")},
    "moe-top2-gqa-window": c({"layer.ffn.moe": MOE, "layer.attention.window_size": 4}),
    "moe-top1-shared-every2nd": c({"layer.ffn.moe": MOE_SHARED}),
    "moe-relu-bias": c({"layer.ffn.moe": MOE, **mlp("relu")}),
    "moe-geglu": c({"layer.ffn.moe": MOE, **mlp("geglu")}),
    "sandwich-unit-offset-rmsnorm": c({"layer.norm_placement": "sandwich", **norm("rmsnorm", unit_offset=True)}),
    "output-norm-unit-offset-layernorm": c({"layer.norm_placement": "output", **norm("layernorm", unit_offset=True)}),
    "post-geglu-learned": c({"layer.norm_placement": "post", **mlp("geglu"), **norm("layernorm"), **LEARNED}),
    "parallel-rope": c({"layer.parallel": True, **norm("layernorm")}),
    "gelu_tanh-scale-softcap": c({"embedding.scale": "sqrt_hidden", "final_logit_softcap": 2.0, **mlp("gelu_tanh")}),
    "factorized-tied": c({"embedding.embedding_dim": 32, "tie_word_embeddings": True}),
    "factorized-untied-wider-dropout": c({"embedding.embedding_dim": 96, **DROPOUT}),
}
GRID = [pytest.param(name, target, id=f"{name}-{target}") for name in CASES for target in TARGETS]


@pytest.mark.parametrize(("name", "target"), GRID)
def test_exported_graph_matches_pytorch(export_case, tmp_path, name, target):
    assert_parity(export_case(name, CASES[name], target), tmp_path, steps=8)


PARAMETER_CASES = [
    "moe-top2-gqa-window", "moe-top1-shared-every2nd", "moe-relu-bias", "sandwich-unit-offset-rmsnorm", "output-norm-unit-offset-layernorm",
    "parallel-rope", "factorized-tied", "factorized-untied-wider-dropout",
]  # fmt: skip


@pytest.mark.parametrize("name", PARAMETER_CASES)
def test_parameter_count_matches_the_model(name):
    spec = load_spec(CASES[name])
    assert sum(p.numel() for p in build_model(spec).parameters()) == spec.parameter_count()


def test_moe_frequency_places_moe_layers():
    model = build_model(CASES["moe-top1-shared-every2nd"])
    assert [isinstance(b.ffn, MoE) for b in model.blocks] == [False, True]


@pytest.mark.parametrize("target", TARGETS)
def test_gelu_tanh_is_not_exported_as_exact_gelu(export_case, target):
    """opset 18 has no Gelu: the tanh formula stays in plain ops; opset 23's Gelu must carry approximate=tanh."""
    name = "gelu_tanh-scale-softcap"
    graph = onnx.load(str(export_case(name, CASES[name], target) / "model.onnx")).graph
    gelus = [n for n in graph.node if n.op_type == "Gelu"]
    assert not any(n.op_type == "Erf" for n in graph.node)
    assert all(onnx.helper.get_node_attr_value(n, "approximate") == b"tanh" for n in gelus)
    assert gelus or any(n.op_type == "Tanh" for n in graph.node)


def test_dropout_is_in_the_training_model_and_absent_from_the_export(export_case):
    """Parity of the dropout case (above) is against the eval-mode model; here: training mode does drop,
    and the graph has no Dropout node (nor any random op)."""
    model = build_model(CASES["factorized-untied-wider-dropout"]).train()
    ids = torch.randint(1, 200, (2, 6))
    assert (model(ids)[0] - model(ids)[0]).abs().max() > 0
    name = "factorized-untied-wider-dropout"
    graph = onnx.load(str(export_case(name, CASES[name], "portable") / "model.onnx")).graph
    assert not {n.op_type for n in graph.node} & {"Dropout", "RandomUniformLike", "RandomNormalLike", "Bernoulli"}
