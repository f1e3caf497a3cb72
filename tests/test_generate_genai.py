"""onnxruntime-genai loads our folders unchanged (``genai_config.json`` from ``build``) and its ``og.Generator``
produces the PyTorch model's greedy continuation; MLA folders get no config and say why."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from tests.conftest import MODELS
from tests.generate_cases import MIN_GAP, NEW_TOKENS, ORT_MODELS, PROMPT, generation_spec, torch_greedy
from yamlllm_export.cli import main
from yamlllm_export.runtime.genai_config import GENAI_CONFIG, genai_blocker
from yamlllm_export.spec import load_spec

og = pytest.importorskip("onnxruntime_genai")

GENAI_MODELS = [m for m in ORT_MODELS if genai_blocker(load_spec(MODELS / f"{m}.yaml")) is None]
# beyond the examples: no positions (no position_ids input) and the other targets' graphs
EXTRA = {
    "tiny-llama-nope": ("tiny-llama", {"embedding__positional_encoding": {"type": "none"}}, "ort"),
    "tiny-llama-sinusoidal": ("tiny-llama", {"embedding__positional_encoding": {"type": "sinusoidal"}}, "ort"),
    "tiny-gpt2-onnx": ("tiny-gpt2", {}, "onnx"),
    "tiny-alibi-portable": ("tiny-alibi", {}, "portable"),
}
CASES = {m: (m, {}, "ort") for m in GENAI_MODELS} | EXTRA


def genai_greedy(folder, prompt, n):
    model = og.Model(str(folder))
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(prompt) + n)
    generator = og.Generator(model, params)
    generator.append_tokens(np.array([prompt], dtype=np.int32))
    while not generator.is_done():
        generator.generate_next_token()
    return tuple(int(t) for t in generator.get_sequence(0))[len(prompt) :]


@pytest.mark.parametrize(
    "case", [pytest.param(c, marks=pytest.mark.xdist_group(name=f"gen-{model}")) for c, (model, _, _) in CASES.items()]
)
def test_genai_greedy_equals_pytorch(export_case, case):
    model, changes, target = CASES[case]
    spec = generation_spec(model, **changes)
    expected, gap = torch_greedy(spec)
    assert gap > MIN_GAP, f"unsound reference: a top-2 logit gap of {gap:.1e} on the greedy path"
    folder = export_case(f"gen-{case}" if changes else f"gen-{model}", spec, target)
    assert genai_greedy(folder, PROMPT, NEW_TOKENS) == expected


@pytest.mark.xdist_group(name="gen-tiny-llama")
def test_genai_config_holds_the_spec(export_case):
    folder = export_case("gen-tiny-llama", generation_spec("tiny-llama"), "ort")
    config = json.loads((folder / GENAI_CONFIG).read_text())
    decoder = config["model"]["decoder"]
    assert config["model"]["type"] == "decoder" and config["model"]["eos_token_id"] == 255
    assert (decoder["head_size"], decoder["num_key_value_heads"], decoder["num_hidden_layers"]) == (16, 2, 2)
    assert config["search"] == {"max_length": 128, "past_present_share_buffer": False, "do_sample": False, "num_beams": 1}
    assert json.loads((folder / "build.json").read_text())["genai"] == {"config": GENAI_CONFIG}


@pytest.mark.parametrize("model", [pytest.param(m, marks=pytest.mark.xdist_group(name=m)) for m in ORT_MODELS if m not in GENAI_MODELS])
def test_mla_folders_have_no_genai_config_and_say_why(built, model):
    folder = built(model, "ort")
    assert not (folder / GENAI_CONFIG).exists()
    assert "latent" in json.loads((folder / "build.json").read_text())["genai"]["unsupported"]


def test_build_notes_that_genai_cannot_run_mla(tmp_path):
    result = CliRunner().invoke(main, ["build", str(MODELS / "tiny-mla.yaml"), "-o", str(tmp_path / "mla")])
    assert result.exit_code == 0, result.output
    assert "note: no genai_config.json: onnxruntime-genai cannot run this model (multi-latent attention" in result.stderr
