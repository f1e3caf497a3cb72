"""``Generator`` on the CUDA execution provider (marker ``cuda``): skipped unless ORT ships the CUDA EP and an
NVIDIA GPU is present. The KV cache must stay on the device between steps (I/O binding)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.generate_cases import MIN_GAP, NEW_TOKENS, PROMPT, generation_spec, torch_greedy
from yamlllm_export.runtime import Generator
from yamlllm_export.runtime.session import availability

CUDA = availability("cuda")
pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not CUDA.usable, reason=f"CUDA EP not usable: {CUDA.reason}")]


@pytest.mark.xdist_group(name="gen-tiny-llama")
def test_cuda_greedy_equals_pytorch_with_the_cache_on_the_device(export_case):
    spec = generation_spec("tiny-llama")
    expected, gap = torch_greedy(spec)
    assert gap > MIN_GAP
    gen = Generator(export_case("gen-tiny-llama", spec, "portable"), ep="cuda")  # fp32: GQA has no fp32 CUDA kernel
    assert gen.generate([PROMPT], max_new_tokens=NEW_TOKENS).tokens[0] == expected
    ids = np.array([PROMPT], dtype=np.int64)
    _, past = gen.stepper.step(ids, np.ones_like(ids), gen.stepper.empty_past(1))
    assert {v.device_name().lower() for v in past} == {"cuda"}


def test_fp16_gqa_build_generates_on_cuda(tmp_path):
    from yamlllm_export import export_onnx

    folder = export_onnx(generation_spec("tiny-llama"), tmp_path / "fp16", dtype="float16")
    first = Generator(folder, ep="cuda").generate([PROMPT, PROMPT[:3]], max_new_tokens=16)
    assert [len(t) for t in first.tokens] == [16, 16] or "stop" in first.finish_reasons
    assert Generator(folder, ep="cuda").generate([PROMPT], max_new_tokens=16).tokens[0] == first.tokens[0]
