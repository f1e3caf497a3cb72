"""Parity grid of the FFN / norm / layout / model-level features: each case is built from a spec through
the production path (``export_onnx``), exported once per session, and proved with ``validate_folder``
(left-padded prefill, 8 teacher-forced decode steps, incremental vs recompute, long context, greedy
tokens; fp32 max |Δ logits| ≤ 1e-4 on ORT CPU). Ids name (feature, target)."""

from __future__ import annotations

import onnx
import pytest
import torch

from tests.feature_cases import case
from tests.validate_fixtures import assert_parity
from yamlllm_export import build_model, load_spec
from yamlllm_export.model.moe import MoE

FFN_TARGETS = ("ort", "portable")


def c(overrides: dict) -> dict:
    """``case`` from a {dotted key: value} dict."""
    return case(*[x for kv in overrides.items() for x in kv])


def mlp(activation: str) -> dict:
    gated = activation in ("swiglu", "geglu", "reglu")
    return {"layer.ffn.activation": activation, "layer.ffn.use_gated_activation": gated, "layer.ffn.bias": not gated}


LAYERNORM = {"layer.layer_norm": {"type": "layernorm", "eps": 1e-5}, "final_layer_norm": {"type": "layernorm", "eps": 1e-5}}
MOE = {"num_experts": 4, "top_k": 2}
DROPOUT = {"embedding.dropout": 0.1, "layer.attention.dropout": 0.1, "layer.ffn.dropout": 0.1, "layer.residual_dropout": 0.1}

OFFSET_RMS = {"layer.layer_norm.unit_offset": True, "final_layer_norm": {"type": "rmsnorm", "unit_offset": True}}
OFFSET_LN = {"layer.layer_norm": {"type": "layernorm", "unit_offset": True}, "final_layer_norm": {"type": "layernorm", "unit_offset": True}}
MOE_SHARED = {**MOE, "top_k": 1, "frequency": 2, "normalize_top_k": False, "shared_expert_intermediate_size": 48}
LEARNED = {"embedding.positional_encoding": {"type": "learned"}}
GEMMA_LIKE = {"embedding.scale": "sqrt_hidden", "final_logit_softcap": 2.0, "layer.layer_norm.unit_offset": True, **mlp("gelu_tanh")}

ACTIVATIONS = ("gelu", "gelu_tanh", "relu", "silu", "squared_relu", "swiglu", "geglu", "reglu")
CASES = {
    **{f"act-{a}": c(mlp(a)) for a in ACTIVATIONS},
    "moe-top2-gqa": c({"layer.ffn.moe": MOE}),
    "moe-top1-shared-every2nd": c({"num_layers": 4, "layer.ffn.moe": MOE_SHARED}),
    "unit-offset-rmsnorm": c(OFFSET_RMS),
    "unit-offset-layernorm": c(OFFSET_LN),
    "post-geglu-learned": c({"layer.norm_placement": "post", **mlp("geglu"), **LAYERNORM, **LEARNED}),
    "sandwich": c({"layer.norm_placement": "sandwich"}),
    "output-norm": c({"layer.norm_placement": "output"}),
    "parallel-rope": c({"layer.parallel": True, **LAYERNORM}),
    "scale-softcap-offset": c(GEMMA_LIKE),
    "factorized-tied": c({"embedding.embedding_dim": 32, "tie_word_embeddings": True}),
    "factorized-untied-wider": c({"embedding.embedding_dim": 96}),
    "dropout-absent-from-export": c(DROPOUT),
}
GRID = [pytest.param(name, target, id=f"{name}-{target}") for name in CASES for target in FFN_TARGETS]


@pytest.mark.parametrize(("name", "target"), GRID)
def test_exported_graph_matches_pytorch(export_case, tmp_path, name, target):
    assert_parity(export_case(name, CASES[name], target), tmp_path, steps=8)


@pytest.mark.parametrize(
    "name",
    [
        "moe-top2-gqa",
        "moe-top1-shared-every2nd",
        "unit-offset-layernorm",
        "sandwich",
        "parallel-rope",
        "factorized-tied",
        "factorized-untied-wider",
    ],
)
def test_parameter_count_matches_the_model(name):
    spec = load_spec(CASES[name])
    assert sum(p.numel() for p in build_model(spec).parameters()) == spec.parameter_count()


def test_moe_frequency_places_moe_layers():
    model = build_model(CASES["moe-top1-shared-every2nd"])
    assert [isinstance(b.ffn, MoE) for b in model.blocks] == [False, True, False, True]


def test_gelu_tanh_is_not_exported_as_exact_gelu(export_case):
    graph = onnx.load(str(export_case("act-gelu_tanh", CASES["act-gelu_tanh"], "ort") / "model.onnx")).graph
    ops = {n.op_type for n in graph.node}
    assert "Tanh" in ops and "Erf" not in ops


def test_dropout_is_in_the_training_model_and_absent_from_the_export(export_case):
    """Parity of the dropout case (above) is against the eval-mode model; here: training mode does drop,
    and the graph has no Dropout node (nor any random op)."""
    model = build_model(CASES["dropout-absent-from-export"]).train()
    ids = torch.randint(1, 200, (2, 6))
    assert (model(ids)[0] - model(ids)[0]).abs().max() > 0
    graph = onnx.load(str(export_case("dropout-absent-from-export", CASES["dropout-absent-from-export"], "portable") / "model.onnx")).graph
    assert not {n.op_type for n in graph.node} & {"Dropout", "RandomUniformLike", "RandomNormalLike", "Bernoulli"}
