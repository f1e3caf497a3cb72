"""The feature table in docs/dialect.md is the schema's, and a target that cannot express a feature refuses it."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.feature_cases import STEERING_NPY, case
from yamlllm_export import SpecError, load_spec
from yamlllm_export.cli import main
from yamlllm_export.spec import features as feats

DIALECT = Path(__file__).resolve().parents[1] / "docs" / "dialect.md"


def test_dialect_page_table_matches_the_schema():
    text = DIALECT.read_text()
    block = re.search(r"<!-- features:start[^\n]*-->\n(.*?)<!-- features:end -->", text, re.S)
    assert block, "docs/dialect.md has no generated feature table"
    assert block.group(1) == feats.feature_table(), "docs/dialect.md feature table is stale: paste `yamlllm-export features` into it"
    assert CliRunner().invoke(main, ["features"]).output == feats.feature_table()


def test_every_feature_names_a_real_schema_key():
    spec = load_spec(
        case(
            "embedding.positional_encoding.rope_scaling",
            {"type": "linear", "factor": 2},
            "layer.attention.qk_norm",
            {},
            "layer.ffn.moe",
            {"num_experts": 2, "top_k": 1},
            "layer_overrides",
            [{"layers": [0], "attention": {"window_size": 4}}],
            "layer.linear",
            {"type": "quantized", "apply_to": ["attention"]},
            "steering",
            {"vector": {"file": STEERING_NPY, "layer": 1}, "lsv": {"variant": "one_hot", "num_vectors": 2, "layer": 0}},
        )  # fmt: skip
    )
    for f in feats.features():
        key = f.key.split("=")[0].replace("[]", "")
        node = spec
        for part in key.split("."):
            assert hasattr(node, part), f"{f.name}: {f.key}"
            node = getattr(node, part)
            node = node[0] if isinstance(node, tuple) and node else node


def test_a_target_that_cannot_express_a_feature_refuses_it(monkeypatch):
    """With a feature marked as one target's only, the other targets refuse it naming path and targets."""
    schema = copy.deepcopy(feats.schema())
    schema["$defs"]["attention"]["properties"]["logit_softcap"]["x-targets"] = ["portable"]
    monkeypatch.setattr(feats, "schema", lambda: schema)
    spec = load_spec(case("layer.attention.logit_softcap", 30.0))
    feats.check_target(spec, "portable")
    with pytest.raises(
        SpecError,
        match=r"^layer\.attention\.logit_softcap: Attention logit soft-capping is not available on target 'ort' \(targets that support it: portable\)$",
    ):
        feats.check_target(spec, "ort")
    feats.check_target(load_spec(case()), "ort")  # unused features are never refused
