"""``import-hf internlm2``. transformers has no InternLM2 class (its checkpoints run InternLM's remote code),
so the reference is a tiny transformers LLaMA written out in InternLM2's layout: its names, and q/k/v fused
into ``wqkv`` per key/value group as the remote code reads it (``rearrange(qkv, "b q (h gs d) -> b q h gs d",
gs=2 + nh/nkv)``: each group's query heads, then its key head, then its value head). The import must give
the LLaMA's logits on ort and portable (left-padded prefill, 8 decode steps)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from tests import hf_fixtures
from tests.hf_fixtures import LLAMA, hf_parity, imported_cases
from yamlllm_export import export_onnx
from yamlllm_export.errors import BuildError
from yamlllm_export.hf import import_hf, render_yaml
from yamlllm_export.spec import load_spec

pytest.importorskip("transformers")
TOLERANCE = 1e-4  # test_hf_import's

# case → (LlamaConfig keyword arguments, InternLM2 config.json keys that say the same)
CASES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "gqa": (LLAMA, {"bias": False}),
    "mqa-bias-linear-rope": (
        {
            **LLAMA,
            "num_key_value_heads": 1,
            "attention_bias": True,
            "rope_theta": 50000.0,
            "rope_scaling": {"rope_type": "linear", "factor": 2.0},
        },
        {"bias": True, "rope_theta": 50000.0, "rope_scaling": {"type": "linear", "factor": 2.0}},
    ),
    # 12 prompt tokens + 8 decode steps cross max_position_embeddings 16: the NTK base grows
    "mha-dynamic-rope": (
        {**LLAMA, "num_key_value_heads": 4, "max_position_embeddings": 16, "rope_scaling": {"rope_type": "dynamic", "factor": 2.0}},
        {"bias": False, "rope_scaling": {"type": "dynamic", "factor": 2.0}},
    ),
}


def fused_wqkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, nkv: int) -> torch.Tensor:
    """[q; k; v] rows (or bias entries) → InternLM2's per-group [q heads of the group, k head, v head]."""
    rest = q.shape[1:]
    groups = [t.reshape(nkv, -1, *rest) for t in (q, k, v)]  # (nkv, rows of the group, *rest)
    return torch.cat(groups, dim=1).reshape(-1, *rest)


def internlm2_state(llama: torch.nn.Module, *, nkv: int) -> dict[str, torch.Tensor]:
    """The LLaMA's weights under InternLM2's names, q/k/v fused per group."""
    s = {k: v.detach().contiguous() for k, v in llama.state_dict().items()}
    out = {
        "model.tok_embeddings.weight": s["model.embed_tokens.weight"],
        "model.norm.weight": s["model.norm.weight"],
        "output.weight": s["lm_head.weight"],
    }
    for i in range(llama.config.num_hidden_layers):
        hf = ours = f"model.layers.{i}."
        for kind in ("weight", "bias"):
            if f"{hf}self_attn.q_proj.{kind}" in s:
                qkv = [s[f"{hf}self_attn.{p}_proj.{kind}"] for p in "qkv"]
                out[f"{ours}attention.wqkv.{kind}"] = fused_wqkv(*qkv, nkv)
                out[f"{ours}attention.wo.{kind}"] = s[f"{hf}self_attn.o_proj.{kind}"]
        for name, theirs in (("w1", "gate_proj"), ("w3", "up_proj"), ("w2", "down_proj")):
            out[f"{ours}feed_forward.{name}.weight"] = s[f"{hf}mlp.{theirs}.weight"]
        out[f"{ours}attention_norm.weight"] = s[f"{hf}input_layernorm.weight"]
        out[f"{ours}ffn_norm.weight"] = s[f"{hf}post_attention_layernorm.weight"]
    return out


def make_internlm2(case: str, folder: Path, **changes: Any) -> torch.nn.Module:
    """A seeded, perturbed LLaMA saved in ``folder`` as an InternLM2 checkpoint (config ``changes`` applied); returns the LLaMA."""
    import transformers

    llama_kwargs, internlm2_keys = CASES[case]
    config = transformers.LlamaConfig(**llama_kwargs, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    folder.mkdir(parents=True, exist_ok=True)
    keys = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads")
    raw = {
        "model_type": "internlm2",
        "architectures": ["InternLM2ForCausalLM"],
        "auto_map": {"AutoModelForCausalLM": "modeling_internlm2.InternLM2ForCausalLM"},
        **{k: getattr(config, k) for k in keys},
        "max_position_embeddings": config.max_position_embeddings,
        "hidden_act": "silu",
        "rms_norm_eps": config.rms_norm_eps,
        "rope_theta": 10000,
        "tie_word_embeddings": False,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 0,
        **internlm2_keys,
        **changes,
    }
    (folder / "config.json").write_text(json.dumps(raw))
    save_file(internlm2_state(model, nkv=config.num_key_value_heads), folder / "model.safetensors")
    return model


@pytest.fixture(scope="module")
def internlm2_case(tmp_path_factory):
    return imported_cases(tmp_path_factory, "internlm2", make_internlm2)


@pytest.mark.parametrize("target", ["ort", "portable"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_logits_match_the_llama_it_was_written_from(case, target, internlm2_case, tmp_path):
    model, hf_dir, yaml_path = internlm2_case(case)
    # one row for dynamic RoPE: HF grows the base from the batch's longest row, we per row (docs/design.md)
    lengths = (12,) if case == "mha-dynamic-rope" else hf_fixtures.PROMPT_LENGTHS
    parity = hf_parity(model, export_onnx(yaml_path, tmp_path / "out", target=target, weights=hf_dir), lengths=lengths)
    assert parity.prefill <= TOLERANCE and parity.decode <= TOLERANCE, f"{case}/{target}: {parity}"


def test_a_checkpoint_with_flat_qkv_rows_misses(internlm2_case, tmp_path):
    """The same weights with wqkv as plain [q; k; v] rows (Phi-3's qkv_proj layout) miss the LLaMA's logits:
    with 2 groups of 2 query heads the grouped layout the parity above confirms is another order."""
    model, hf_dir, _ = internlm2_case("gqa")
    state = internlm2_state(model, nkv=2)
    sd = model.state_dict()
    for i in range(model.config.num_hidden_layers):
        state[f"model.layers.{i}.attention.wqkv.weight"] = torch.cat([sd[f"model.layers.{i}.self_attn.{p}_proj.weight"] for p in "qkv"])
    flat = tmp_path / "flat"
    flat.mkdir()
    save_file(state, flat / "model.safetensors")
    (flat / "config.json").write_text((hf_dir / "config.json").read_text())
    spec, header = import_hf(flat, tmp_path / "model.yaml")
    (tmp_path / "model.yaml").write_text(render_yaml(spec, header))
    parity = hf_parity(model, export_onnx(tmp_path / "model.yaml", tmp_path / "out", target="portable", weights=flat))
    assert min(parity.prefill, parity.decode) > 100 * TOLERANCE, parity


REFUSED = {
    "yarn": ({"rope_scaling": {"type": "yarn", "factor": 2.0}}, "rope_scaling"),
    "gelu": ({"hidden_act": "gelu"}, "hidden_act"),
}


@pytest.mark.parametrize(("changes", "key"), list(REFUSED.values()), ids=list(REFUSED))
def test_unsupported_option_is_refused(changes, key, tmp_path):
    make_internlm2("gqa", tmp_path, **changes)
    with pytest.raises(BuildError, match=rf"^{tmp_path / 'config.json'}: {key}=.* is not supported \(.+\)$"):
        import_hf(tmp_path)


@pytest.mark.parametrize("case", sorted(CASES))
def test_parameter_count_matches_the_llama(case, internlm2_case):
    model, hf_dir, _ = internlm2_case(case)
    assert load_spec(import_hf(hf_dir)[0]).parameter_count() == sum(p.numel() for p in model.parameters())
