"""A real trained model end to end: SmolLM2-135M-Instruct (30 layers, logits spread σ ≈ 8) imported from its
Hugging Face folder and built from its weights passes ``validate``, and the build's perplexity on a fixed
English text is transformers' own. One build per session (``smollm2_build``); the validation is bounded
(``--long-context 256``: the full 8192 positions take minutes, see docs/validation.md)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.smollm2 import text
from tests.validate_fixtures import run
from yamlllm_export.runtime.io_contract import IOContract
from yamlllm_export.runtime.session import cpu_session
from yamlllm_export.runtime.stepper import GraphStepper
from yamlllm_export.spec import load_spec
from yamlllm_export.validate.quality import mean_kl, perplexity, top1_agreement

pytestmark = pytest.mark.xdist_group(name="smollm2")


def test_smollm2_passes_validate(smollm2_build, tmp_path):
    report = run(smollm2_build, tmp_path / "parity", steps=4, batch=3, prompt_len=32, long_context=256)
    bad = [(r.check, r.status, r.measured, r.tolerance) for r in report.results if r.status != "pass"]
    assert report.exit_code == 0 and not bad, bad
    prefill = next(r for r in report.results if r.check == "prefill")
    assert 0 < prefill.value < prefill.limit  # fp32 is never bit-exact across kernels: the metric measured something


def test_smollm2_perplexity_is_transformers(smollm2_build, smollm2_hf):
    """Issue 14's acceptance: the fp32 build's perplexity on yamlllm_export/validate/english.txt within 0.1 % of
    transformers' (one forward over the whole text on each side)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokens = np.asarray(AutoTokenizer.from_pretrained(smollm2_hf)(text())["input_ids"], np.int64)[None]  # (1, S)
    assert tokens.shape[1] > 400
    hf = AutoModelForCausalLM.from_pretrained(smollm2_hf, dtype=torch.float32).eval()
    with torch.no_grad():
        ref = hf(torch.from_numpy(tokens)).logits.numpy()
    contract = IOContract.for_spec(load_spec(smollm2_build / "model.yaml"))
    stepper = GraphStepper.for_session(cpu_session(smollm2_build), contract)
    got, _ = stepper.step(tokens, np.ones_like(tokens), stepper.empty_past(1))
    ppl_ref, ppl_got = perplexity(ref, tokens), perplexity(got, tokens)
    assert 1.5 < ppl_ref < 100  # a trained model on English, not noise (the vocabulary is 49 152)
    assert abs(ppl_got / ppl_ref - 1) < 1e-3, (ppl_got, ppl_ref)
    assert mean_kl(ref, got) < 1e-6 and top1_agreement(ref, got) > 0.99
