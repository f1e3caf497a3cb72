"""MoE expert tensors in both layouts a Hugging Face folder may hold: one tensor per expert (what the hub
has and ``save_pretrained`` writes) and transformers 5's fused ``experts.gate_up_proj`` / ``down_proj``
(what its modules hold in memory), mapped to the same stacked weights."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from tests.hf_fixtures import make_hf_model
from yamlllm_export.errors import BuildError
from yamlllm_export.hf.config import read_config
from yamlllm_export.hf.families import family_for
from yamlllm_export.hf.weights import read_hf_state

pytest.importorskip("transformers")
MOE_CASES = ["mixtral", "deepseek_v2", "qwen3-moe", "phimoe"]


@pytest.mark.parametrize("case", MOE_CASES)
def test_fused_experts_map_like_per_expert_tensors(case, tmp_path):
    model = make_hf_model(case, tmp_path)
    cfg = read_config(tmp_path)
    family = family_for(cfg)
    saved = read_hf_state(tmp_path)
    assert any(".experts.0." in k for k in saved)  # save_pretrained wrote one tensor per expert
    in_memory = {k: v.contiguous() for k, v in model.state_dict().items()}
    assert any(k.endswith("experts.gate_up_proj") for k in in_memory)  # the fused layout
    ours, fused = family.convert(cfg, saved), family.convert(cfg, in_memory)
    assert sorted(ours) == sorted(fused)
    for name in ours:
        torch.testing.assert_close(fused[name], ours[name], rtol=0, atol=0, msg=name)


def test_a_missing_expert_is_named(tmp_path):
    make_hf_model("mixtral", tmp_path)
    state = read_hf_state(tmp_path)
    del state["model.layers.1.block_sparse_moe.experts.2.w3.weight"]
    save_file(state, tmp_path / "model.safetensors")
    cfg = read_config(tmp_path)
    with pytest.raises(BuildError, match=r"layer 1's up experts are not numbered 0..2: \[0, 1, 3\]"):
        family_for(cfg).convert(cfg, read_hf_state(tmp_path))
