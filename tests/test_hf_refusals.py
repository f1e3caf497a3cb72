"""Options of an HF config.json that our mapping cannot express are refused with one line naming the file
and the key, never mapped to something else."""

from __future__ import annotations

import json

import pytest

from tests.hf_fixtures import make_hf_model
from yamlllm_export.errors import BuildError
from yamlllm_export.hf import import_hf

pytest.importorskip("transformers")

REFUSED = {
    "deepseek-v3-routing": ("deepseek_v2_lite", {"topk_method": "noaux_tc", "n_group": 2, "topk_group": 1}, "topk_method"),
    "deepseek-sigmoid-router": ("deepseek_v2_lite", {"scoring_func": "sigmoid"}, "scoring_func"),
    "deepseek-renormalised-top-k": ("deepseek_v2_lite", {"norm_topk_prob": True}, "norm_topk_prob"),
    "deepseek-moe-every-2nd": ("deepseek_v2_lite", {"moe_layer_freq": 2}, "moe_layer_freq"),
    "deepseek-gqa": ("deepseek_v2_lite", {"num_key_value_heads": 2}, "num_key_value_heads"),
    "deepseek-biased-full-rank-query": ("deepseek_v2_lite", {"attention_bias": True}, "attention_bias"),
    "deepseek-latent-eps": ("deepseek_v2_lite", {"rms_norm_eps": 1e-5}, "rms_norm_eps"),
    "mixtral-gelu-experts": ("mixtral", {"hidden_act": "gelu"}, "hidden_act"),
    "smollm3-rope-flags-per-layer": ("smollm3-nope-every-2nd", {"no_rope_layers": [1, 0]}, "no_rope_layers"),
    "smollm3-gelu-mlp": ("smollm3-nope-every-2nd", {"hidden_act": "gelu"}, "hidden_act"),
    "olmo-gelu-mlp": ("olmo-clip-qkv", {"hidden_act": "gelu"}, "hidden_act"),
    "nemotron-quick-gelu": ("nemotron", {"hidden_act": "quick_gelu"}, "hidden_act"),
    "qwen3-moe-gelu-experts": ("qwen3-moe", {"hidden_act": "gelu"}, "hidden_act"),
    "gemma3-softcapped-attention": ("gemma3-text", {"attn_logit_softcapping": 50.0}, "attn_logit_softcapping"),
    "gemma3-scaled-local-rope": (
        "gemma3-text",
        {"rope_parameters": {"sliding_attention": {"rope_type": "linear", "factor": 2.0}, "full_attention": {"rope_type": "default"}}},
        "rope_parameters",
    ),
    "qwen3-gelu-mlp": ("qwen3-head-dim", {"hidden_act": "gelu"}, "hidden_act"),
    "phimoe-longrope-unequal-mscales": (
        "phimoe",
        {
            "rope_parameters": {
                "rope_type": "longrope",
                "rope_theta": 1e4,
                "short_factor": [1.0] * 8,
                "long_factor": [2.0] * 8,
                "short_mscale": 1.2,
                "long_mscale": 1.1,
                "original_max_position_embeddings": 16,
            }
        },
        "rope_parameters",
    ),  # fmt: skip
    "phimoe-top-3": ("phimoe", {"num_experts_per_tok": 3}, "num_experts_per_tok"),
    "phimoe-partial-rotary": ("phimoe", {"partial_rotary_factor": 0.5}, "partial_rotary_factor"),
    "phimoe-gelu-experts": ("phimoe", {"hidden_act": "gelu"}, "hidden_act"),
    "phi3-linear-rope": ("phi3", {"rope_parameters": {"rope_type": "linear", "rope_theta": 1e4, "factor": 2.0}}, "rope_parameters"),
    "gpt-oss-mxfp4": ("gpt-oss", {"quantization_config": {"quant_method": "mxfp4"}}, "quantization_config"),
    "gpt-oss-other-swiglu-limit": ("gpt-oss", {"swiglu_limit": 5.0}, "swiglu_limit"),
    "gpt-oss-chunked-attention-layer": ("gpt-oss", {"layer_types": ["chunked_attention", "full_attention"]}, "layer_types"),
    "lfm2-sliding-layer": ("lfm2", {"layer_types": ["conv", "sliding_attention", "conv"]}, "layer_types"),
    "lfm2-layer-types-of-another-length": ("lfm2", {"layer_types": ["conv", "full_attention"]}, "layer_types"),
}


@pytest.mark.parametrize(("case", "changes", "key"), list(REFUSED.values()), ids=list(REFUSED))
def test_unsupported_option_is_refused(case, changes, key, tmp_path):
    make_hf_model(case, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, **changes}))
    with pytest.raises(BuildError, match=rf"^{tmp_path / 'config.json'}: {key}=.* is not supported \(.+\)$"):
        import_hf(tmp_path)


def test_yarn_without_truncation_is_mapped(tmp_path):
    """transformers' ``truncate: false`` (GPT-OSS) becomes ours; tests/test_features_positions.py checks the table."""
    make_hf_model("deepseek_v2", tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["rope_parameters"]["truncate"] = False
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert import_hf(tmp_path)[0]["embedding"]["positional_encoding"]["rope_scaling"]["truncate"] is False
