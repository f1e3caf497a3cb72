"""Config readings of the Phi, Phi-3, Qwen3, SmolLM3, Granite, Nemotron, Qwen3-MoE, Gemma 1-3 and OLMo-2 mappings that the parity cases do not reach: refusals,
and which Gemma key names the activation."""

from __future__ import annotations

import json

import pytest
import torch

from yamlllm_export.errors import BuildError
from yamlllm_export.hf import import_hf
from yamlllm_export.spec import load_spec

DIMS = {"vocab_size": 96, "hidden_size": 64, "num_hidden_layers": 2, "max_position_embeddings": 64, "intermediate_size": 96}


def imported(tmp_path, **config):
    (tmp_path / "config.json").write_text(json.dumps({**DIMS, "num_attention_heads": 4, **config}))
    return import_hf(tmp_path)[0]


def test_phi_refuses_an_odd_rotary_width(tmp_path):
    with pytest.raises(BuildError, match=r"config\.json: partial_rotary_factor=0\.2 .*odd number of dims \(3\)"):
        imported(tmp_path, model_type="phi", partial_rotary_factor=0.2)


def test_phi_reads_the_rotary_factor_from_rope_parameters(tmp_path):
    spec = imported(tmp_path, model_type="phi", rope_parameters={"rope_theta": 10000.0, "partial_rotary_factor": 0.25})
    assert spec["embedding"]["positional_encoding"]["rotary_dim"] == 4


def test_phi_refuses_an_activation_without_equivalent(tmp_path):
    with pytest.raises(BuildError, match=r"config\.json: hidden_act='quick_gelu' is not supported"):
        imported(tmp_path, model_type="phi", hidden_act="quick_gelu")


@pytest.mark.parametrize(
    ("config", "activation"),
    [
        ({"hidden_act": "gelu", "hidden_activation": "gelu_pytorch_tanh"}, "geglu_tanh"),  # hub configs of Gemma 1
        ({"hidden_act": "gelu"}, "geglu"),  # transformers 5 reads hidden_act
        ({}, "geglu_tanh"),
    ],
)
def test_gemma_activation_key(tmp_path, config, activation):
    assert imported(tmp_path, model_type="gemma", **config)["layer"]["ffn"]["activation"] == activation


def test_gemma_refuses_bidirectional_attention(tmp_path):
    with pytest.raises(BuildError, match="use_bidirectional_attention=True is not supported"):
        imported(tmp_path, model_type="gemma", use_bidirectional_attention=True)


def test_olmo2_refuses_a_non_silu_mlp(tmp_path):
    with pytest.raises(BuildError, match="hidden_act='gelu' is not supported"):
        imported(tmp_path, model_type="olmo2", hidden_act="gelu")


def test_gemma2_without_layer_types_slides_on_even_layers(tmp_path):
    """Configs written before ``layer_types`` existed: transformers 4.x slid on layers 0, 2, ..."""
    spec = imported(tmp_path, model_type="gemma2", num_hidden_layers=3, head_dim=16, query_pre_attn_scalar=16, sliding_window=5)
    assert spec["layer_overrides"] == [{"layers": [0, 2], "attention": {"window_size": 5}}]
    assert "window_size" not in spec["layer"]["attention"]


def test_gemma2_refuses_a_query_scalar_other_than_head_dim(tmp_path):
    with pytest.raises(BuildError, match="query_pre_attn_scalar=144 is not supported"):
        imported(tmp_path, model_type="gemma2", head_dim=16, query_pre_attn_scalar=144)


@pytest.mark.parametrize(
    ("config", "head_dim"), [({}, 128), ({"head_dim": 24}, 24), ({"head_dim": None}, 128)], ids=["absent", "set", "null"]
)
def test_qwen3_head_dim_defaults_to_128(tmp_path, config, head_dim):
    """Qwen3Config's own default: a config.json without head_dim means 128, not hidden_size / heads (16 here)."""
    att = imported(tmp_path, model_type="qwen3", **config)["layer"]["attention"]
    assert att["head_dim"] == head_dim and att["qk_norm"]["scope"] == "head"


def test_phi3_reads_longrope_written_as_rope_scaling(tmp_path):
    """Hub configs of the 128k Phi-3 models (transformers 4.x layout: ``rope_scaling`` with ``type``)."""
    short, long = [1.0 + i / 10 for i in range(8)], [2.0 + i for i in range(8)]
    spec = imported(
        tmp_path,
        model_type="phi3",
        original_max_position_embeddings=16,
        rope_scaling={"type": "longrope", "short_factor": short, "long_factor": long},
    )
    scaling = spec["embedding"]["positional_encoding"]["rope_scaling"]
    assert scaling["type"] == "longrope" and scaling["original_max_position_embeddings"] == 16
    assert list(scaling["short_factor"]) == short and list(scaling["long_factor"]) == long


@pytest.mark.parametrize(
    ("config", "overrides"),
    [
        ({}, [{"layers": [3], "attention": {"nope": True}}]),  # SmolLM3Config's default: every 4th layer
        ({"use_sliding_window": True, "sliding_window": 8}, [  # its default layer_types: the window on the NoPE layers
            {"layers": [3], "attention": {"window_size": 8}}, {"layers": [3], "attention": {"nope": True}}]),
        ({"no_rope_layers": [1, 1, 1, 1]}, None),
    ],
    ids=["interval-4", "window-on-nope-layers", "all-rotate"],
)  # fmt: skip
def test_smollm3_rope_free_layers(tmp_path, config, overrides):
    spec = imported(tmp_path, model_type="smollm3", num_hidden_layers=4, **config)
    assert spec.get("layer_overrides") == overrides and spec["tie_word_embeddings"] is True


@pytest.mark.parametrize("key", ["embedding_multiplier", "attention_multiplier", "residual_multiplier", "logits_scaling"])
def test_granite_refuses_a_multiplier_not_above_zero(tmp_path, key):
    with pytest.raises(BuildError, match=rf"config\.json: {key}=0 is not supported"):
        imported(tmp_path, model_type="granite", **{key: 0})


def test_granite_default_multipliers_keep_only_the_attention_scale(tmp_path):
    """GraniteConfig's attention_multiplier defaults to 1.0, a softmax scale of 1 (not 1/sqrt(head_dim))."""
    spec = imported(tmp_path, model_type="granite")
    assert spec["layer"]["attention"]["softmax_scale"] == 1.0
    assert "scale" not in spec["embedding"] and "residual_scale" not in spec["layer"] and "final_logit_scale" not in spec


@pytest.mark.parametrize(
    ("config", "rotary_dim"),
    [({}, 8), ({"partial_rotary_factor": 0.25}, 4), ({"rope_parameters": {"rope_theta": 1e4, "partial_rotary_factor": 1.0}}, None)],
    ids=["default-half", "top-level", "rope-parameters"],
)
def test_nemotron_partial_rotary(tmp_path, config, rotary_dim):
    """NemotronConfig rotates half of each head (16 dims here) when the config names no factor."""
    spec = imported(tmp_path, model_type="nemotron", **config)
    assert spec["embedding"]["positional_encoding"].get("rotary_dim") == rotary_dim
    assert spec["layer"]["layer_norm"]["unit_offset"] and spec["layer"]["ffn"]["activation"] == "squared_relu"


@pytest.mark.parametrize("key", ["num_experts", "num_local_experts"])
def test_qwen3_moe_reads_either_expert_count(tmp_path, key):
    """The hub's configs say num_experts; transformers 5 saves the same value as num_local_experts."""
    moe = {key: 4, "moe_intermediate_size": 32, "num_experts_per_tok": 2, "mlp_only_layers": [0]}
    spec = imported(tmp_path, model_type="qwen3_moe", **moe)
    assert spec["layer"]["ffn"]["moe"] == {
        "num_experts": 4, "top_k": 2, "intermediate_size": 32, "normalize_top_k": False, "frequency": 1, "dense_layers": [0],
    }  # fmt: skip


@pytest.mark.parametrize(
    "config",
    [
        {"mlp_only_layers": [2, 0]},
        {"decoder_sparse_step": 2, "mlp_only_layers": [3]},  # both tests apply
        {"decoder_sparse_step": 2, "mlp_only_layers": [1, 3]},  # no sparse layer left: a dense Qwen3
        {"num_experts": 0},
    ],
    ids=["dense-anywhere", "sparse-step-and-list", "all-dense", "no-experts"],
)
def test_qwen3_moe_sparse_layers_are_transformers(tmp_path, config):
    """Which layers are MoE, against the model transformers builds from the same config (on the meta device)."""
    transformers = pytest.importorskip("transformers")
    moe = {"num_experts": 4, "moe_intermediate_size": 32, "num_experts_per_tok": 2, "num_hidden_layers": 4, **config}
    with torch.device("meta"):
        hf = transformers.AutoModelForCausalLM.from_config(transformers.Qwen3MoeConfig(**{**DIMS, "num_attention_heads": 4, **moe}))
    want = [i for i, layer in enumerate(hf.model.layers) if type(layer.mlp).__name__ == "Qwen3MoeSparseMoeBlock"]
    spec = load_spec(imported(tmp_path, model_type="qwen3_moe", **moe))
    assert [i for i, layer in enumerate(spec.layer_specs()) if layer.ffn.moe is not None] == want


def test_gemma3_reads_the_4x_rope_keys(tmp_path):
    """Hub configs written by transformers 4.x: rope_theta (global), rope_local_base_freq, rope_scaling."""
    config = {"head_dim": 16, "query_pre_attn_scalar": 16, "sliding_window": 8, "sliding_window_pattern": 2, "rope_theta": 1e6}
    config |= {"rope_local_base_freq": 1e4, "rope_scaling": {"rope_type": "linear", "factor": 8.0}}
    spec = imported(tmp_path, model_type="gemma3_text", num_hidden_layers=4, **config)
    assert spec["embedding"]["positional_encoding"] == {
        "type": "rope",
        "rope_theta": 1e6,
        "rope_scaling": {"type": "linear", "factor": 8.0},
    }
    assert spec["layer_overrides"] == [
        {"layers": [0, 2], "attention": {"window_size": 8}},
        {"layers": [0, 2], "attention": {"rope_theta": 1e4, "rope_unscaled": True}},
    ]
    assert spec["layer"]["attention"]["softmax_scale"] == 0.25
