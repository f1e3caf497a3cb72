"""Each attention rule is written once per language: the visibility mask, padding and positions from the
mask (``ops/masking.py`` ↔ ``lowerings/masking.py``) and the RoPE rotation (``ops/rotary.py`` ↔
``lowerings/rotary.py``). The onnxscript definitions run eagerly (onnxscript's ORT evaluator) against the
torch ones on the same inputs; a source scan fails when a copy of a rule reappears elsewhere."""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

import numpy as np
import pytest
import torch
from onnxscript import opset18 as op

import yamlllm_export
from yamlllm_export.lowerings import masking as onnx_masking
from yamlllm_export.lowerings import rotary as onnx_rotary
from yamlllm_export.ops import masking
from yamlllm_export.ops.rotary import apply_rotary, rope_caches

ROOT = Path(yamlllm_export.__file__).parent


def _run(value: object) -> np.ndarray:
    return np.asarray(value.value)  # an onnxscript eager Tensor


@pytest.mark.parametrize("causal, window", [(True, 0), (True, 2), (False, 0)], ids=["causal", "window2", "bidirectional"])
@pytest.mark.parametrize("S, P", [(1, 0), (4, 0), (1, 5), (3, 4)], ids=["first-token", "prefill", "decode", "chunk"])
def test_visibility_mask_same_in_both_languages(S: int, P: int, causal: bool, window: int) -> None:
    expected = masking.visibility_mask(S, P, causal=causal, window_size=window, dtype=torch.float32, device=torch.device("cpu"))
    like = np.zeros(1, np.float32)
    got = onnx_masking.visibility_mask(op, np.array([S]), np.array([P]), causal=causal, window_size=window, like=like)
    if got is None:  # the lowering emits nothing when every key is visible
        assert not expected.any(), "the onnxscript mask says all visible, the torch one masks some keys"
        return
    np.testing.assert_array_equal(_run(got), expected.numpy())


MASKS = {
    "no-pad": [[1, 1, 1, 1, 1]],
    "left-pad": [[0, 0, 1, 1, 1]],
    "right-pad": [[1, 1, 1, 0, 0]],
    "hole": [[1, 0, 1, 0, 1]],
    "two-rows": [[0, 1, 1, 1, 1], [1, 1, 1, 1, 0]],
}


@pytest.mark.parametrize("mask", MASKS.values(), ids=MASKS.keys())
def test_positions_and_padding_same_in_both_languages(mask: list[list[int]]) -> None:
    m = np.array(mask, np.int64)
    np.testing.assert_array_equal(_run(onnx_masking.positions_from_mask(op, m)), masking.positions_from_mask(torch.from_numpy(m)).numpy())
    np.testing.assert_array_equal(_run(onnx_masking.padding_bias(op, m)), masking.padding_bias(torch.from_numpy(m)).numpy())


@pytest.mark.parametrize("interleaved", [False, True], ids=["half", "interleaved"])
@pytest.mark.parametrize("rd", [8, 4], ids=["full", "partial"])
def test_rotary_same_in_both_languages(rd: int, interleaved: bool) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 2, 8, generator=g)  # (B, S, n, hs)
    positions = torch.tensor([[0, 0, 1], [4, 5, 9]])  # a repeat (pad) and a jump, as masks with holes give
    cos, sin = rope_caches(16, rd, 10000.0)
    expected = apply_rotary(x, positions, cos, sin, interleaved=interleaved)
    got = onnx_rotary.apply_rotary(op, x.numpy(), positions.numpy(), cos.numpy(), sin.numpy(), interleaved)
    np.testing.assert_allclose(_run(got), expected.numpy(), rtol=0, atol=1e-6)


# A line that spells out a rule, and the only files allowed to: one torch, one onnxscript definition (and
# the numpy copy of positions in runtime/, which imports no torch so ``generate`` runs without it).
RULES = {
    "positions from the mask": (
        r"mask\.cumsum|cumsum\((attention_)?mask|CumSum\((attention_)?mask",
        {"ops/masking.py", "lowerings/masking.py", "runtime/session.py"},
    ),
    "visibility by cache index": (r"j <= i|LessOrEqual\(j, i\)|j > i - window|Greater\(j, ", {"ops/masking.py", "lowerings/masking.py"}),
    "padding": (r"mask\[.*\] == 0|Equal\((attention_)?mask", {"ops/masking.py", "lowerings/masking.py"}),
    "RoPE rotation": (r"x2 \* cos \+ x1 \* sin|Mul\(x2, cos\)", {"ops/rotary.py", "lowerings/rotary.py"}),
}


def _code_lines(path: Path) -> dict[int, str]:
    """Line number → the line with its strings (docstrings) and comments blanked: they may name a rule."""
    lines = path.read_text().splitlines()
    for tok in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
        if tok.type in (tokenize.STRING, tokenize.COMMENT):
            (r0, c0), (r1, c1) = tok.start, tok.end
            for r in range(r0, r1 + 1):
                start, end = (c0 if r == r0 else 0), (c1 if r == r1 else len(lines[r - 1]))
                lines[r - 1] = lines[r - 1][:start] + " " * (end - start) + lines[r - 1][end:]
    return dict(enumerate(lines, 1))


@pytest.mark.parametrize("rule", RULES, ids=RULES.keys())
def test_rule_written_once(rule: str) -> None:
    pattern, allowed = RULES[rule]
    found = {
        str(path.relative_to(ROOT)): n for path in ROOT.rglob("*.py") for n, line in _code_lines(path).items() if re.search(pattern, line)
    }
    assert set(found) <= allowed, f"{rule}: copies outside {sorted(allowed)}: {found}"
    assert {f for f in allowed if not f.startswith("runtime/")} <= set(found), f"{rule}: a definition moved without updating this test"
