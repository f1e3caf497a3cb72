"""Specs and PyTorch references for the generation tests.

Every tiny model is rebuilt with init std 0.3 (``STD``): with the examples' own small inits several of them
repeat one token, or have top-2 logit gaps near 1e-4 on the greedy path, which a correct ONNX graph could
flip. ``torch_greedy`` returns the gaps so each test checks its own soundness (``MIN_GAP``).
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Iterator
from typing import Any

from tests.conftest import MODELS, TINY_MODELS
from yamlllm_export.spec import load_spec
from yamlllm_export.spec.features import unsupported
from yamlllm_export.spec.load import _read_yaml

STD = 0.3
NEW_TOKENS = 64
MIN_GAP = 1e-3  # fp32 graphs match PyTorch to ~1e-5; a greedy choice this clear cannot flip
PROMPT = (3, 17, 42, 99, 7, 150, 23, 64)
ORT_MODELS = [m for m in TINY_MODELS if not unsupported(load_spec(MODELS / f"{m}.yaml").to_dict(), "ort")]


def generation_spec(model: str, **changes: Any) -> dict[str, Any]:
    """``models/<model>.yaml`` with init std ``STD``, room for prompt + 64 tokens, and eos = the last id
    (onnxruntime-genai stops at its default eos 0 when none is given; an explicit one tests stopping)."""
    d = _read_yaml(MODELS / f"{model}.yaml")
    d["initialization"] = {"type": "gpt2", "std": STD}
    d["embedding"]["max_position_embeddings"] = max(d["embedding"]["max_position_embeddings"], 96)
    d["tokens"] = {"eos_token_id": d["embedding"]["vocab_size"] - 1}
    for path, value in changes.items():
        *parents, last = path.split("__")
        node = d
        for p in parents:
            node = node[p]
        node[last] = value
    return d


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """One-token steps are tiny: on a shared 2-core machine more threads only contend (measured 10x slower)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@functools.cache
def _torch_greedy(spec_key: str, prompt: tuple[int, ...], n: int) -> tuple[tuple[int, ...], float]:
    import torch

    from yamlllm_export import build_model

    spec = load_spec(json.loads(spec_key))
    model = build_model(spec, seed=0)
    ids, mask, past = torch.tensor([prompt]), torch.ones(1, len(prompt), dtype=torch.long), None
    out, gaps = [], []
    with torch.no_grad(), one_torch_thread():
        for _ in range(n):
            logits, past = model(ids, mask, None, past)
            top = logits[0, -1].topk(2).values
            gaps.append(float(top[0] - top[1]))
            token = int(logits[0, -1].argmax())
            if token in spec.tokens.eos_token_id:
                break
            out.append(token)
            ids, mask = torch.tensor([[token]]), torch.ones(1, mask.shape[1] + 1, dtype=torch.long)
    return tuple(out), min(gaps)


def torch_greedy(spec: dict[str, Any], prompt: tuple[int, ...] = PROMPT, n: int = NEW_TOKENS) -> tuple[tuple[int, ...], float]:
    """(greedy continuation of the seed-0 PyTorch model, ending before an eos, smallest top-2 logit gap)."""
    return _torch_greedy(json.dumps(spec, sort_keys=True), tuple(prompt), n)
