"""GPT-OSS specifics the family parity cases (tests/test_hf_import.py) cannot show: the experts' clamp at 7,
which the tiny random models never reach, checked on transformers' own MoE block with inputs that cross it;
and GptOssConfig's defaults for what a config.json may leave out."""

from __future__ import annotations

import json

import pytest
import torch

from tests.hf_fixtures import HF_CASES, make_hf_model
from yamlllm_export import load_spec
from yamlllm_export.hf import import_hf
from yamlllm_export.hf.config import HFConfig
from yamlllm_export.hf.families import gpt_oss
from yamlllm_export.model.moe import Experts, MoE

transformers = pytest.importorskip("transformers")


@torch.no_grad()
def test_moe_block_equals_transformers_where_the_clamp_bites():
    config = transformers.GptOssConfig(**HF_CASES["gpt-oss"][1])
    torch.manual_seed(0)
    hf = transformers.models.gpt_oss.modeling_gpt_oss.GptOssMLP(config).eval()
    for p in hf.parameters():
        p.normal_(0.0, 0.5)
    d, h, E = config.hidden_size, config.intermediate_size, config.num_local_experts
    ours = MoE(
        d, experts=Experts(E, d, h, gated=True, bias=True), activation="swiglu", top_k=config.num_experts_per_tok, normalize_top_k=True,
        shared=None, dropout=0.0, router_bias=True, swiglu=(7.0, 1.702, 1.0),
    )  # fmt: skip
    state = gpt_oss.gpt_oss_weights(HFConfig(None, {}), {f"model.layers.0.mlp.{k}": v for k, v in hf.state_dict().items()})
    ours.load_state_dict({k.removeprefix("blocks.0.ffn."): v for k, v in state.items()})
    x = torch.randn(2, 9, d) * 2
    gate_up = x.reshape(-1, d) @ hf.experts.gate_up_proj[0] + hf.experts.gate_up_proj_bias[0]
    assert (gate_up.abs() > 7).float().mean() > 0.2  # the clamp bites on a good share of gate and up values
    expected, _ = hf(x)
    torch.testing.assert_close(ours(x), expected, rtol=1e-5, atol=1e-4)


def test_config_defaults_are_gpt_oss_configs(tmp_path):
    """A config.json without layer_types, head_dim, rope settings, attention_bias or sliding_window maps to what
    GptOssConfig fills in: even layers slide (window 128), head_dim 64, YaRN 32× over 4096 without truncation."""
    make_hf_model("gpt-oss", tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    for key in ("layer_types", "head_dim", "rope_parameters", "attention_bias", "sliding_window"):
        config.pop(key)
    (tmp_path / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 3, "max_position_embeddings": 256}))
    spec = load_spec(import_hf(tmp_path)[0])
    layers = spec.layer_specs()
    assert [layer.attention.window_size for layer in layers] == [128, None, 128]
    assert all(layer.attention.sinks and layer.attention.head_dim == 64 and layer.attention.qkv_bias for layer in layers)
    scaling = spec.embedding.positional_encoding.rope_scaling
    assert (scaling.type, scaling.factor, scaling.original_max_position_embeddings, scaling.truncate) == ("yarn", 32.0, 4096, False)
    assert spec.embedding.positional_encoding.rope_theta == 150000.0
