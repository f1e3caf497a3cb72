"""``import-hf`` + ``build --weights HF_DIR`` for every supported family: tiny random ``transformers`` models
(configs built in code, saved with ``save_pretrained``) are imported, exported to ``ort`` and ``portable``,
and their ORT CPU logits compared with transformers' own (fp32 max |Δ| ≤ 1e-4, prefill and decode); the
``ort`` builds of the newer families also run under onnxruntime-genai."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from tests.hf_fixtures import HF_CASES, hf_parity, imported_cases, make_hf_model, text_parameter_count
from yamlllm_export import export_onnx
from yamlllm_export.hf import import_hf
from yamlllm_export.spec import load_spec

pytest.importorskip("transformers")
TOLERANCE = 1e-4


def grouped(cases: list[str]) -> list:
    """The cases, each in an xdist group of its own: one worker builds its HF model and its exports once."""
    return [pytest.param(case, id=case, marks=pytest.mark.xdist_group(name=f"hf-{case}")) for case in cases]


@pytest.fixture(scope="session")
def hf_case(tmp_path_factory):
    """case → (the HF model in fp32, its saved folder, the imported YAML path), made once per session."""
    return imported_cases(tmp_path_factory, "hf", make_hf_model)


@pytest.fixture(scope="session")
def hf_export(hf_case, tmp_path_factory):
    """(case, target) → the built folder, made once per session (the parity and genai tests share it)."""
    built: dict[tuple[str, str], object] = {}

    def get(case: str, target: str):
        if (case, target) not in built:
            _, hf_dir, yaml_path = hf_case(case)
            built[case, target] = export_onnx(
                yaml_path, tmp_path_factory.mktemp(f"out-{case}-{target}") / "out", target=target, weights=hf_dir
            )
        return built[case, target]

    return get


@pytest.mark.parametrize("target", ["ort", "portable"])
@pytest.mark.parametrize("case", grouped(sorted(HF_CASES)))
def test_logits_match_transformers(case, target, hf_case, hf_export):
    model, _, _ = hf_case(case)
    parity = hf_parity(model, hf_export(case, target))
    assert parity.prefill <= TOLERANCE and parity.decode <= TOLERANCE, f"{case}/{target}: {parity}"


@pytest.mark.parametrize("case", grouped(sorted(HF_CASES)))
def test_written_yaml_reads_back_to_the_same_spec(case, hf_case):
    _, hf_dir, yaml_path = hf_case(case)
    text = yaml_path.read_text()
    assert text.startswith("# Imported from the Hugging Face model in") and str(hf_dir.resolve()) in text
    assert load_spec(yaml_path) == load_spec(import_hf(hf_dir)[0])
    assert "initialization" not in yaml.safe_load(text)  # no dumps of defaults
    assert "&id" not in text  # no YAML anchors / aliases: every key reads on its own


@pytest.mark.parametrize("case", grouped(sorted(HF_CASES)))
def test_parameter_count_matches_transformers(case, hf_case):
    model, hf_dir, _ = hf_case(case)
    assert load_spec(import_hf(hf_dir)[0]).parameter_count() == text_parameter_count(model)


# one case per issue-18 family: per-layer RoPE (base, scaling, none), the multipliers, MoE (SparseMixer, clamped
# experts), attention sinks, clipped q/k/v,
# layernorm1p and partial rotary, all run by genai's generic decoder from our graph alone
GENAI_CASES = [
    "gemma3-text",
    "gemma3-multimodal",
    "gpt-oss",
    "granite",
    "lfm2-untied-kernel-4-multiplier",  # genai's lfm2 type: conv states past.%d.conv beside the KV caches
    "nemotron",
    "olmo-clip-qkv",
    "phi3",
    "phimoe",
    "qwen3-head-dim",
    "qwen3-moe",
    "smollm3-window-bias-untied",
]


@pytest.mark.parametrize("case", grouped(GENAI_CASES))
def test_genai_greedy_equals_transformers(case, hf_case, hf_export):
    og = pytest.importorskip("onnxruntime_genai")
    model, _, _ = hf_case(case)
    folder = hf_export(case, "ort")
    prompt, steps = [5, 17, 42, 8, 60, 33], 8
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(steps):
            ids.append(int(model(torch.tensor([ids])).logits[0, -1].argmax()))
    params = og.GeneratorParams(og_model := og.Model(str(folder)))
    params.set_search_options(max_length=len(prompt) + steps)
    generator = og.Generator(og_model, params)
    generator.append_tokens(np.array([prompt], dtype=np.int32))
    while not generator.is_done():
        generator.generate_next_token()
    got = [int(t) for t in generator.get_sequence(0)][len(prompt) :]
    assert got and got == ids[len(prompt) :][: len(got)], f"{case}: genai {got}, transformers {ids[len(prompt) :]}"
