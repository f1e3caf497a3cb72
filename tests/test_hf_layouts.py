"""GPT-2, BLOOM, Falcon and GPT-NeoX checkpoints as older hub folders hold them (no ``transformer.``
prefix, ``embed_out``, causal-mask and inv_freq buffers), and multimodal Gemma 3 under transformers 5's
module names, load to the same weights as what transformers 5 saves; config options we cannot express are refused naming config.json and the key."""

from __future__ import annotations

import json
import re

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.hf_fixtures import make_hf_model
from yamlllm_export.errors import BuildError
from yamlllm_export.hf import import_hf
from yamlllm_export.hf.weights import load_hf_weights
from yamlllm_export.model.builders import build_model
from yamlllm_export.spec import load_spec

pytest.importorskip("transformers")


def _old_gpt2(state, layers):
    out = {re.sub(r"^transformer\.", "", k): v for k, v in state.items()}
    for i in range(layers):
        out[f"h.{i}.attn.bias"] = torch.tril(torch.ones(64, 64)).view(1, 1, 64, 64)
        out[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    return out


def _old_neox(state, layers):
    out = {re.sub(r"^lm_head\.", "embed_out.", k): v for k, v in state.items()}
    for i in range(layers):
        out[f"gpt_neox.layers.{i}.attention.bias"] = torch.tril(torch.ones(64, 64)).view(1, 1, 64, 64)
        out[f"gpt_neox.layers.{i}.attention.masked_bias"] = torch.tensor(-1e9)
        out[f"gpt_neox.layers.{i}.attention.rotary_emb.inv_freq"] = torch.ones(2)
    return out


def _unprefixed(state, layers):
    return {re.sub(r"^transformer\.", "", k): v for k, v in state.items()}


def _gemma3_module_names(state, layers):
    """Gemma3ForConditionalGeneration's own module names (its state_dict saved as is), the tied head written out."""
    out = {re.sub(r"^(language_model)\.model\.|^(vision_tower|multi_modal_projector)\.", r"model.\1\2.", k): v for k, v in state.items()}
    return {**out, "lm_head.weight": out["model.language_model.embed_tokens.weight"].clone()}


OLD = {
    "gpt2-untied-gelu": _old_gpt2,
    "bloom-6-heads": _unprefixed,
    "falcon-per-head-sequential-bias": _unprefixed,
    "gpt-neox-parallel": _old_neox,
    "gemma3-multimodal": _gemma3_module_names,
}


def _loaded(folder):
    model = build_model(load_spec(import_hf(folder)[0]), seed=1)
    load_hf_weights(model, folder)
    return model.state_dict()


@pytest.mark.parametrize("case", sorted(OLD))
def test_older_checkpoint_names_load_the_same_weights(case, tmp_path):
    make_hf_model(case, tmp_path)
    want = _loaded(tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    save_file({k: v.contiguous() for k, v in OLD[case](state, 2).items()}, tmp_path / "model.safetensors")
    got = _loaded(tmp_path)
    assert want.keys() == got.keys()
    assert all(torch.equal(want[k], got[k]) for k in want)


REFUSED = {
    "gpt2": ("scale_attn_by_inverse_layer_idx", True),
    "gpt2-untied-gelu": ("reorder_and_upcast_attn", True),
    "bloom-6-heads": ("apply_residual_connection_post_layernorm", True),
    "falcon-multi-query": ("alibi", True),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_options_we_cannot_express_are_refused(case, tmp_path):
    make_hf_model(case, tmp_path)
    key, value = REFUSED[case]
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, key: value}))
    with pytest.raises(BuildError, match=rf"config\.json: {key}={value!r} is not supported"):
        import_hf(tmp_path)
