"""The real file: SmolLM2-135M-Instruct's Q4_1 GGUF through import-gguf and build --keep-quantized (one
session-scoped build), against transformers' own GGUF loading of the same file (it dequantizes)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from yamlllm_export.cli import main
from yamlllm_export.runtime.io_contract import IOContract
from yamlllm_export.runtime.session import cpu_session
from yamlllm_export.runtime.stepper import GraphStepper
from yamlllm_export.spec import load_spec

TOL = 1e-4  # measured 8.5e-5: the kept blocks are gguf's weights exactly; only summation order differs
PROMPT_TOKENS = 48


@pytest.fixture(scope="session")
def smollm2_kept(smollm2_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("smollm2-gguf")
    runner = CliRunner()
    result = runner.invoke(main, ["import-gguf", str(smollm2_gguf), "-o", str(root / "spec.yaml")])
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        main, ["build", str(root / "spec.yaml"), "--weights", str(smollm2_gguf), "--keep-quantized", "-o", str(root / "out")]
    )
    assert result.exit_code == 0, result.output
    return root / "out"


def test_smollm2_gguf_kept_quantized_matches_transformers(smollm2_kept: Path, smollm2_hf: Path) -> None:
    from smollm2 import text
    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM

    info = json.loads((smollm2_kept / "build.json").read_text())
    assert info["op_counts"]["com.microsoft.MatMulNBits"] == 7 * 30, info["op_counts"]  # every projection of 30 layers
    ids = np.array([Tokenizer.from_file(str(smollm2_kept / "tokenizer.json")).encode(text()).ids[:PROMPT_TOKENS]], np.int64)
    hf = AutoModelForCausalLM.from_pretrained(smollm2_hf, dtype=torch.float32).eval()
    with torch.no_grad():
        ref = hf(torch.from_numpy(ids)).logits.numpy()
    stepper = GraphStepper.for_session(cpu_session(smollm2_kept), IOContract.for_spec(load_spec(smollm2_kept / "model.yaml")))
    got = stepper.step(ids, np.ones_like(ids), stepper.empty_past(1))[0]
    assert np.abs(got - ref).max() <= TOL, np.abs(got - ref).max()

    result = CliRunner().invoke(
        main, ["generate", str(smollm2_kept), "--prompt-ids", " ".join(map(str, ids[0, :16])), "--max-new-tokens", "12"]
    )
    assert result.exit_code == 0, result.output
    with torch.no_grad():
        greedy = hf.generate(torch.from_numpy(ids[:, :16]), max_new_tokens=12, do_sample=False)[0, 16:].tolist()
    assert [int(t) for t in result.output.split()] == greedy, (result.output, greedy)
    og = pytest.importorskip("onnxruntime_genai")
    model = og.Model(str(smollm2_kept))
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=16 + 12)
    generator = og.Generator(model, params)
    generator.append_tokens(ids[:, :16].astype(np.int32))
    while not generator.is_done():
        generator.generate_next_token()
    assert list(generator.get_sequence(0))[16:] == greedy


def test_smollm2_gguf_float_weights_match_transformers(smollm2_kept: Path, smollm2_gguf: Path, smollm2_hf: Path) -> None:
    """The dequantized path: our PyTorch model with the GGUF's weights (what a float build exports and what
    validate compares against) on the same tokens as transformers."""
    from transformers import AutoModelForCausalLM

    from yamlllm_export.gguf import load_gguf_weights
    from yamlllm_export.model.builders import build_model

    model = build_model(load_spec(smollm2_kept / "model.yaml")).eval()
    load_gguf_weights(model, smollm2_gguf)
    ids = torch.from_numpy(np.random.default_rng(0).integers(0, 49152, (1, PROMPT_TOKENS)))
    hf = AutoModelForCausalLM.from_pretrained(smollm2_hf, dtype=torch.float32).eval()
    with torch.no_grad():
        ref, got = hf(ids).logits, model(ids)
    got = got[0] if isinstance(got, tuple) else got
    assert (got - ref).abs().max().item() <= TOL
