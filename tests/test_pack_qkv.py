"""The ``ort`` rewrite that hands GroupQueryAttention the packed q/k/v projection with its own rotary
(``lowerings/pack_qkv.py``): where it applies and where it must not. Its numbers are checked by the feature
matrix's parity tests (left-padded prefill, cached decode, chunked prefill, long context), which run every
case below on ``ort`` after the rewrite."""

from __future__ import annotations

import json

import onnx
import pytest

from tests.feature_cases import CASES_BY_ID

# case id -> GroupQueryAttention nodes that take the packed form (the tiny cases have 2 layers, head size 16)
EXPECTED = {
    "rope": 2,  # plain RoPE, GQA
    "mha": 2,
    "mqa": 2,
    "rope-dynamic": 0,  # cos/sin recomputed from the length: shifted positions would no longer be neutral
    "rope-yarn": 2,
    "window": 2,  # local_window_size stays beside do_rotary
    "attn-softcap": 2,
    "partial-rotary-factor": 0,  # GQA's rotary turns the whole head
    "rotary-dim": 0,
    "qk-norm-head": 0,  # a norm sits between the Split and RotaryEmbedding
    "qkv-bias-only": 0,  # so does the bias Add
    "alibi-6-heads-gqa": 0,  # no rotary at all
    "mla": 0,  # its own lowering
}


def _graph(folder) -> onnx.GraphProto:
    return onnx.load(str(folder / "model.onnx"), load_external_data=False).graph


@pytest.mark.parametrize(
    ("cid", "expected"), [pytest.param(c, n, id=c, marks=pytest.mark.xdist_group(name=c)) for c, n in EXPECTED.items()]
)
def test_packed_rotary_qkv_applies_exactly_where_it_is_the_same_function(export_case, cid, expected):
    folder = export_case(cid, CASES_BY_ID[cid], "ort")
    info = json.loads((folder / "build.json").read_text())
    assert info["fusions"]["packed_rotary_qkv"] == expected
    gqas = [n for n in _graph(folder).node if n.op_type == "GroupQueryAttention"]
    packed = [n for n in gqas if any(a.name == "do_rotary" and a.i == 1 for a in n.attribute)]
    assert len(packed) == expected
    for node in packed:  # the packed form: key and value absent; cos/sin caches and the mask's positions given
        assert node.input[1] == node.input[2] == "" and node.input[7] and node.input[8] and node.input[9]
    if expected == len(gqas) and expected:  # every layer packed: nothing of the old form is left
        assert "RotaryEmbedding" not in {n.op_type for n in _graph(folder).node}
