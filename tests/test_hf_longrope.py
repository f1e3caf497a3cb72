"""LongRoPE against transformers (Phi-3 128k and Phi-4-mini style cases of tests/hf_fixtures.py: context 128
from an original 32) on ``ort`` and ``portable``: transformers switches from short to long factors when
max(position_ids) + 1 > 32, once per forward over the whole batch, and keeps cached keys as they were rotated.
Prompts below the switch, crossing it, ending exactly at it (the first decode step crosses) and a decode that
crosses it all match; the mutations an exact switch rules out (short and long factors swapped, switching at
>= instead of >) fail the same check. Plus the config.json mapping and its refusals."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from tests.hf_fixtures import hf_parity, make_hf_model
from yamlllm_export import export_onnx
from yamlllm_export.errors import BuildError
from yamlllm_export.hf import import_hf, render_yaml
from yamlllm_export.hf.config import HFConfig
from yamlllm_export.hf.families.phi3 import phi3_spec

pytest.importorskip("transformers")
TOLERANCE = 1e-4
ORIGINAL = 32
# left-padded prompt lengths, then 8 decode steps (hf_fixtures.DECODE_STEPS)
LENGTHS = {
    "below": (12, 7, 3),  # every step short: positions up to 19
    "prompt-crosses": (40, 20, 5),  # every step long
    "at-switch": (32, 10, 4),  # prefill ends at position 31: short; the first decode step is long
    "decode-crosses": (28, 20, 9),  # short until decode step 5, long after; cached keys keep the short rotation
}
CASES = ["phi3-longrope", "phi4-mini-longrope-partial-tied"]


def _swap_factors(scaling: dict) -> None:
    scaling["short_factor"], scaling["long_factor"] = scaling["long_factor"], scaling["short_factor"]


def _switch_at_or_above(scaling: dict) -> None:
    """max + 1 > 31 is max + 1 >= 32; the attention factor pinned to the unmutated one, so only the switch moves."""
    scaling["attention_factor"] = math.sqrt(1 + math.log(scaling["factor"]) / math.log(ORIGINAL))
    scaling["original_max_position_embeddings"] = ORIGINAL - 1


MUTATIONS = {"short-long-swapped": _swap_factors, "switch-at->=": _switch_at_or_above}


@pytest.fixture(scope="session")
def longrope_build(tmp_path_factory):
    """(case, target, mutation or None) → (the transformers model, the exported folder), each made once."""
    models: dict[str, tuple] = {}
    built: dict[tuple, tuple] = {}

    def get(case: str, target: str, mutation: str | None = None) -> tuple:
        if case not in models:
            root = tmp_path_factory.mktemp(f"longrope-{case}")
            models[case] = (make_hf_model(case, root / "hf"), root)
        model, root = models[case]
        if (case, target, mutation) not in built:
            spec, header = import_hf(root / "hf")
            if mutation is not None:
                MUTATIONS[mutation](spec["embedding"]["positional_encoding"]["rope_scaling"])
            out = root / f"{target}-{mutation}"
            out.mkdir()
            (out / "model.yaml").write_text(render_yaml(spec, header))
            built[case, target, mutation] = (model, export_onnx(out / "model.yaml", out / "onnx", target=target, weights=root / "hf"))
        return built[case, target, mutation]

    return get


GRID = [  # one xdist worker per case builds its model and exports
    pytest.param(case, target, lengths, id=f"{case}-{target}-{lengths}", marks=pytest.mark.xdist_group(name=f"longrope-{case}"))
    for case in CASES
    for target in ("ort", "portable")
    for lengths in LENGTHS
]


@pytest.mark.parametrize(("case", "target", "lengths"), GRID)
def test_logits_match_transformers_across_the_switch(case, target, lengths, longrope_build):
    model, folder = longrope_build(case, target)
    parity = hf_parity(model, folder, lengths=LENGTHS[lengths])
    assert parity.prefill <= TOLERANCE and parity.decode <= TOLERANCE, f"{case}/{target}/{lengths}: {parity}"


# mutation → the length sets whose (prefill, decode) must fail, and those that must still pass
MUTATION_GRID = {
    "short-long-swapped": ({"below": "prefill", "prompt-crosses": "prefill", "at-switch": "prefill"}, ()),
    "switch-at->=": ({"at-switch": "prefill", "decode-crosses": "decode"}, ("below", "prompt-crosses")),
}


@pytest.mark.parametrize("mutation", list(MUTATION_GRID))
@pytest.mark.xdist_group(name="longrope-phi3-longrope")
def test_parity_fails_a_wrong_switch(mutation, longrope_build):
    model, folder = longrope_build("phi3-longrope", "portable", mutation)
    must_fail, must_pass = MUTATION_GRID[mutation]
    for lengths, phase in must_fail.items():
        parity = hf_parity(model, folder, lengths=LENGTHS[lengths])
        assert getattr(parity, phase) > 100 * TOLERANCE, f"{mutation}/{lengths}: {parity}"
    for lengths in must_pass:
        parity = hf_parity(model, folder, lengths=LENGTHS[lengths])
        assert parity.prefill <= TOLERANCE and parity.decode <= TOLERANCE, f"{mutation}/{lengths}: {parity}"


# genai prompt lengths: below the switch, and past it from the prompt on (every cached key long). A decode that
# crosses it differs from transformers' recompute-per-token reference by design (cached keys stay short).
GENAI_PROMPTS = {"short": 6, "long": 36}


@pytest.mark.parametrize("prompt", list(GENAI_PROMPTS))
@pytest.mark.xdist_group(name="longrope-phi3-longrope")
def test_genai_greedy_equals_transformers(prompt, longrope_build):
    og = pytest.importorskip("onnxruntime_genai")
    model, folder = longrope_build("phi3-longrope", "ort")
    ids = [int(t) for t in np.random.default_rng(1).integers(1, 96, GENAI_PROMPTS[prompt])]
    n, steps = len(ids), 8
    with torch.no_grad():
        for _ in range(steps):
            ids.append(int(model(torch.tensor([ids])).logits[0, -1].argmax()))
    params = og.GeneratorParams(og_model := og.Model(str(folder)))
    params.set_search_options(max_length=n + steps)
    generator = og.Generator(og_model, params)
    generator.append_tokens(np.array([ids[:n]], dtype=np.int32))
    while not generator.is_done():
        generator.generate_next_token()
    got = [int(t) for t in generator.get_sequence(0)][n:]
    assert got and got == ids[n:][: len(got)], f"{prompt}: genai {got}, transformers {ids[n:]}"


# config.json (transformers 4.x layout) → our rope_scaling, without weights
PHI3_128K = {
    "model_type": "phi3",
    "vocab_size": 96,
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 96,
    "max_position_embeddings": 131072,
    "original_max_position_embeddings": 4096,
    "rope_theta": 10000.0,
    "rope_scaling": {"type": "longrope", "short_factor": [1.0] * 8, "long_factor": [1.5, 2.0, 3.0, 5.0, 9.0, 17.0, 33.0, 65.0]},
}
WANT = {
    "type": "longrope",
    "factor": 32.0,
    "original_max_position_embeddings": 4096,
    "short_factor": [1.0] * 8,
    "long_factor": [1.5, 2.0, 3.0, 5.0, 9.0, 17.0, 33.0, 65.0],
}


def _scaling(raw: dict) -> dict:
    return phi3_spec(HFConfig(Path("/hf"), raw))["embedding"]["positional_encoding"]["rope_scaling"]


@pytest.mark.parametrize("kind", ["longrope", "su", "yarn"])
def test_phi3_scaling_names_transformers_maps_to_longrope(kind):
    assert _scaling({**PHI3_128K, "rope_scaling": {**PHI3_128K["rope_scaling"], "type": kind}}) == WANT


@pytest.mark.parametrize(
    ("changes", "want"),
    [
        ({"original_max_position_embeddings": None}, {}),  # Phi3Config's class default is 4096
        ({"rope_scaling": {**PHI3_128K["rope_scaling"], "original_max_position_embeddings": 2048}}, {}),  # top level wins
        ({"rope_scaling": {**PHI3_128K["rope_scaling"], "factor": 8.0, "attention_factor": 1.2}}, {"factor": 8.0, "attention_factor": 1.2}),
    ],
    ids=["original-default-4096", "top-level-original-wins", "explicit-factors"],
)
def test_phi3_longrope_reads_as_transformers(changes, want):
    assert _scaling({**PHI3_128K, **changes}) == {**WANT, **want}


@pytest.mark.parametrize(
    ("scaling", "message"),
    [
        ({"short_factor": [1.0] * 7}, "rope_scaling.short_factor must be a list of 8 numbers (rotary dim 16), got 7 numbers"),
        ({"long_factor": None}, "rope_scaling.long_factor must be a list of 8 numbers (rotary dim 16), got None"),
        ({"short_mscale": 1.1}, "rope_scaling.short_mscale is not supported with longrope scaling"),
    ],
    ids=["short-length", "long-missing", "unknown-key"],
)
def test_phi3_longrope_refusals_name_config_json_and_key(scaling, message):
    raw = {**PHI3_128K, "rope_scaling": {**PHI3_128K["rope_scaling"], **scaling}}
    with pytest.raises(BuildError, match="^" + re.escape(f"/hf/config.json: {message}")):
        _scaling(raw)


def test_phi4_mini_partial_rotary_takes_factors_per_rotated_pair():
    raw = {**PHI3_128K, "partial_rotary_factor": 0.75, "tie_word_embeddings": True}
    with pytest.raises(BuildError, match=re.escape("short_factor must be a list of 6 numbers (rotary dim 12)")):
        _scaling(raw)
    spec = phi3_spec(HFConfig(Path("/hf"), {**raw, "rope_scaling": {**WANT, "short_factor": [1.0] * 6, "long_factor": [2.0] * 6}}))
    assert spec["embedding"]["positional_encoding"]["rotary_dim"] == 12 and spec["tie_word_embeddings"]
    assert yaml.safe_load(render_yaml(spec, ""))["embedding"]["positional_encoding"]["rope_scaling"]["long_factor"] == [2.0] * 6


@pytest.mark.parametrize("case", CASES)
def test_gguf_longrope_reads_as_the_hf_folder(case, tmp_path):
    """llama.cpp's rope_factors_{short,long} tensors and metadata give import-hf's rope_scaling, with llama.cpp's
    attention factor written out (tests/test_gguf_import.py checks the logits)."""
    pytest.importorskip("gguf")
    from tests.gguf_fixtures import write_gguf
    from yamlllm_export.gguf import import_gguf

    model = make_hf_model(case, tmp_path / "hf")
    from_gguf = import_gguf(write_gguf(model, "phi3", tmp_path / "model.gguf"))[0]["embedding"]["positional_encoding"]
    from_hf = import_hf(tmp_path / "hf")[0]["embedding"]["positional_encoding"]
    f32 = {k: [float(np.float32(x)) for x in v] if isinstance(v, list) else v for k, v in from_hf["rope_scaling"].items()}
    attention = float(str(np.float32(math.sqrt(1 + math.log(4) / math.log(ORIGINAL)))))  # GGUF metadata is float32
    assert from_gguf["rope_scaling"] == {**f32, "attention_factor": attention}
    assert from_gguf.get("rotary_dim") == from_hf.get("rotary_dim")


def test_other_families_read_longrope_with_their_own_original_context():
    """base.longrope_scaling serves every RoPE family (transformers' rotary classes all switch the same way):
    LLaMA has no class default, so the parameters' original context holds (checked against transformers by
    hand on ORT across the switch, as the Phi-3 cases here)."""
    from yamlllm_export.hf.families.llama import llama_spec

    params = {"rope_type": "longrope", "rope_theta": 1e4, **{k: WANT[k] for k in ("short_factor", "long_factor")}}
    raw = {**PHI3_128K, "model_type": "llama", "original_max_position_embeddings": None, "rope_scaling": None}
    spec = llama_spec(HFConfig(Path("/hf"), {**raw, "rope_parameters": {**params, "original_max_position_embeddings": 8192}}))
    assert spec["embedding"]["positional_encoding"]["rope_scaling"] == {**WANT, "factor": 16.0, "original_max_position_embeddings": 8192}
