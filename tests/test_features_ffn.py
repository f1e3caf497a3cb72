"""Parity grid of the FFN / norm / layout / model-level features: each case is built from a spec through
the production path (``export_onnx``), exported once per session, and proved with ``validate_folder``
(left-padded prefill, 8 teacher-forced decode steps, incremental vs recompute, long context, greedy
tokens; fp32 max |Δ logits| ≤ 1e-4 on ORT CPU). Ids name (feature, target)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from tests.validate_fixtures import run
from yamlllm_export import build_model, export_onnx, load_spec
from yamlllm_export.model.moe import MoE

FFN_TARGETS = ("ort", "portable")
BASE = {
    "name": "ffn-case",
    "embedding": {"vocab_size": 256, "max_position_embeddings": 64, "embedding_dim": 64, "positional_encoding": {"type": "rope"}},
    "num_layers": 2,
    "layer": {
        "hidden_dim": 64,
        "attention": {"num_heads": 4, "num_kv_heads": 2, "bias": False},
        "ffn": {"intermediate_size": 96, "activation": "swiglu", "use_gated_activation": True, "bias": False},
        "layer_norm": {"type": "rmsnorm", "eps": 1e-6},
    },
    "tie_word_embeddings": False,
}


def case(**overrides: object) -> dict:
    """BASE with dotted-path overrides: case(**{"layer.ffn.activation": "gelu"})."""
    spec = copy.deepcopy(BASE)
    for path, value in overrides.items():
        *parents, leaf = path.split(".")
        node = spec
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return spec


def mlp(activation: str) -> dict:
    gated = activation in ("swiglu", "geglu", "reglu")
    return {"layer.ffn.activation": activation, "layer.ffn.use_gated_activation": gated, "layer.ffn.bias": not gated}


LAYERNORM = {"layer.layer_norm": {"type": "layernorm", "eps": 1e-5}, "final_layer_norm": {"type": "layernorm", "eps": 1e-5}}
MOE = {"num_experts": 4, "top_k": 2}
DROPOUT = {"embedding.dropout": 0.1, "layer.attention.dropout": 0.1, "layer.ffn.dropout": 0.1, "layer.residual_dropout": 0.1}

CASES = {
    **{f"act-{a}": case(**mlp(a)) for a in ("gelu", "gelu_tanh", "relu", "silu", "squared_relu", "swiglu", "geglu", "reglu")},
    "moe-top2-gqa": case(**{"layer.ffn.moe": MOE}),
    "moe-top1-shared-every2nd": case(
        **{
            "num_layers": 4,
            "layer.ffn.moe": {**MOE, "top_k": 1, "frequency": 2, "normalize_top_k": False, "shared_expert_intermediate_size": 48},
        }
    ),
    "unit-offset-rmsnorm": case(**{"layer.layer_norm.unit_offset": True, "final_layer_norm": {"type": "rmsnorm", "unit_offset": True}}),
    "unit-offset-layernorm": case(
        **{
            "layer.layer_norm": {"type": "layernorm", "unit_offset": True},
            "final_layer_norm": {"type": "layernorm", "unit_offset": True},
        }
    ),  # fmt: skip
    "post-geglu-learned": case(
        **{
            "layer.norm_placement": "post",
            **mlp("geglu"),
            **LAYERNORM,
            "embedding.positional_encoding": {"type": "learned"},
        }
    ),  # fmt: skip
    "sandwich": case(**{"layer.norm_placement": "sandwich"}),
    "output-norm": case(**{"layer.norm_placement": "output"}),
    "parallel-rope": case(**{"layer.parallel": True, **LAYERNORM}),
    "scale-softcap-offset": case(
        **{
            "embedding.scale": "sqrt_hidden",
            "final_logit_softcap": 2.0,
            "layer.layer_norm.unit_offset": True,
            **mlp("gelu_tanh"),
        }
    ),  # fmt: skip
    "factorized-tied": case(**{"embedding.embedding_dim": 32, "tie_word_embeddings": True}),
    "factorized-untied-wider": case(**{"embedding.embedding_dim": 96}),
    "dropout-absent-from-export": case(**DROPOUT),
}
GRID = [pytest.param(name, target, id=f"{name}-{target}") for name in CASES for target in FFN_TARGETS]


@pytest.fixture(scope="session")
def ffn_export(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, str], Path]:
    cache: dict[tuple[str, str], Path] = {}

    def get(name: str, target: str) -> Path:
        if (name, target) not in cache:
            out = tmp_path_factory.mktemp("ffn") / f"{name}-{target}"
            cache[name, target] = export_onnx({**CASES[name], "name": name}, out, target=target, seed=0)
        return cache[name, target]

    return get


@pytest.mark.parametrize(("name", "target"), GRID)
def test_exported_graph_matches_pytorch(ffn_export, tmp_path, name, target):
    report = run(ffn_export(name, target), tmp_path, steps=8)
    bad = [f"{r.check}: {r.measured} {r.detail}" for r in report.results if r.status != "pass"]
    assert not bad, f"{name}/{target}: " + "; ".join(bad)


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


def test_gelu_tanh_is_not_exported_as_exact_gelu(ffn_export):
    import onnx

    graph = onnx.load(str(ffn_export("act-gelu_tanh", "ort") / "model.onnx")).graph
    ops = {n.op_type for n in graph.node}
    assert "Tanh" in ops and "Erf" not in ops


def test_dropout_is_in_the_training_model_and_absent_from_the_export(ffn_export):
    """Parity of the dropout case (above) is against the eval-mode model; here: training mode does drop,
    and the graph has no Dropout node (nor any random op)."""
    import onnx

    model = build_model(CASES["dropout-absent-from-export"]).train()
    ids = torch.randint(1, 200, (2, 6))
    assert (model(ids)[0] - model(ids)[0]).abs().max() > 0
    graph = onnx.load(str(ffn_export("dropout-absent-from-export", "portable") / "model.onnx")).graph
    assert not {n.op_type for n in graph.node} & {"Dropout", "RandomUniformLike", "RandomNormalLike", "Bernoulli"}
