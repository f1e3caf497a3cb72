"""Gemma 3's config readings checked against transformers' own: the hub's sparse and 4.x-style configs
(absent keys take Gemma3TextConfig's defaults; rope_scaling, rope_local_base_freq, sliding_window_pattern)
import to the same spec as transformers' full reading of them, the soft-caps we refuse are ones
transformers does not apply, and the multimodal import says what it leaves out. The logits themselves: the gemma3 cases of tests/test_hf_import.py."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from tests.hf_fixtures import make_hf_model
from yamlllm_export.cli import main
from yamlllm_export.errors import BuildError
from yamlllm_export.hf import import_hf, load_hf_weights
from yamlllm_export.model.builders import build_model
from yamlllm_export.spec import load_spec

transformers = pytest.importorskip("transformers")

SPARSE = {  # text_config as the hub's configs give it
    "gemma-3-4b-it": {
        "hidden_size": 2560, "intermediate_size": 10240, "num_hidden_layers": 34, "sliding_window": 1024,
        "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
    },
    "4.x-keys-27b-like": {
        "hidden_size": 512, "num_hidden_layers": 7, "num_attention_heads": 32, "num_key_value_heads": 16, "head_dim": 128,
        "query_pre_attn_scalar": 168, "sliding_window_pattern": 3, "rope_theta": 5e5, "rope_local_base_freq": 1e3,
        "rope_scaling": {"factor": 4.0, "rope_type": "linear"},
    },
}  # fmt: skip


def _written(folder, config):
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    spec = import_hf(folder)[0]
    return {k: v for k, v in spec.items() if k not in ("name", "tokens")}


@pytest.mark.parametrize("model_type", ["gemma3", "gemma3_text"])
@pytest.mark.parametrize("case", sorted(SPARSE))
def test_sparse_config_imports_as_transformers_reads_it(case, model_type, tmp_path):
    """The config as shipped, and as transformers completes it (to_dict: every default, 5.x rope_parameters
    and layer_types), import to the same spec."""
    text = {**SPARSE[case], "model_type": "gemma3_text"}
    if model_type == "gemma3":
        sparse = {"model_type": "gemma3", "text_config": text}
        full = transformers.Gemma3Config(text_config=dict(text)).to_dict()
    else:
        sparse, full = text, transformers.Gemma3TextConfig(**text).to_dict()
    assert _written(tmp_path / "sparse", sparse) == _written(tmp_path / "full", full)


def _logits(config) -> torch.Tensor:
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        return model(torch.tensor([[5, 17, 42, 8, 60, 33]])).logits


TEXT = {"vocab_size": 96, "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4, "head_dim": 16}
VISION = {"hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 1, "num_attention_heads": 2, "patch_size": 14, "image_size": 28}
IGNORED = {  # what transformers leaves out, and the error naming it
    "attention-softcap": ("attn_logit_softcapping", lambda extra: transformers.Gemma3TextConfig(**TEXT, **extra), ""),
    "multimodal-final-softcap": (
        "final_logit_softcapping",
        lambda extra: transformers.Gemma3Config(text_config={**TEXT, **extra}, vision_config=VISION, mm_tokens_per_image=4),
        "text_config.",
    ),
}


@pytest.mark.parametrize(("key", "make", "path"), list(IGNORED.values()), ids=list(IGNORED))
def test_refused_softcap_is_one_transformers_ignores(key, make, path, tmp_path):
    """Refused rather than mapped: transformers runs the model as if the key were unset (the logits are
    equal), while the value says otherwise; the error names config.json and the key's path."""
    capped = make({key: 0.5})
    assert torch.equal(_logits(capped), _logits(make({})))
    (tmp_path / "config.json").write_text(json.dumps(capped.to_dict()))
    with pytest.raises(BuildError, match=rf"^{tmp_path / 'config.json'}: {path}{key}=0.5 is not supported \(.+\)$"):
        import_hf(tmp_path)


def test_multimodal_import_says_what_it_leaves_out(tmp_path):
    """import-hf (on the terminal and in the YAML's header) and the weight loading behind build say in a
    note that only the text decoder is mapped; the vision tensors are dropped, not reported unknown."""
    make_hf_model("gemma3-multimodal", tmp_path / "hf")
    result = CliRunner().invoke(main, ["import-hf", str(tmp_path / "hf"), "-o", str(tmp_path / "m.yaml")])
    assert result.exit_code == 0, result.output
    note = "note: text decoder only: the vision tower and the multi-modal projector are left out"
    assert note in result.stderr and f"# {note}" in (tmp_path / "m.yaml").read_text()
    notes = load_hf_weights(build_model(load_spec(tmp_path / "m.yaml")), tmp_path / "hf")
    assert any(n.endswith(note.removeprefix("note: ")) for n in notes)
