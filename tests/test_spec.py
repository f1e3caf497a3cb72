"""Spec loading: defaults come from the schema, derived values are filled once, the normalized spec
round-trips, and the dialect's accepted spellings load."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from tests.conftest import MODELS
from tests.feature_cases import CASES_BY_ID, case
from yamlllm_export.errors import SpecError
from yamlllm_export.spec import load_spec
from yamlllm_export.spec.schema import schema

MINIMAL = {
    "name": "m",
    "embedding": {"vocab_size": 10, "max_position_embeddings": 8, "embedding_dim": 8},
    "num_layers": 1,
    "layer": {"hidden_dim": 8, "attention": {"num_heads": 2}, "ffn": {"intermediate_size": 16}},
}


def test_dialect_defaults_are_filled():
    spec = load_spec(MINIMAL)
    assert spec.embedding.positional_encoding.type == "learned"
    assert spec.layer.attention.mechanism == "standard"
    assert (spec.layer.attention.num_kv_heads, spec.layer.attention.head_dim) == (2, 4)
    assert spec.layer.attention.bias is True and spec.layer.ffn.bias is True
    assert spec.layer.layer_norm.type == "layernorm" and spec.layer.ffn.activation == "gelu"
    assert spec.layer.norm_placement == "pre"
    assert spec.tie_word_embeddings is False
    assert spec.final_layer_norm == spec.layer.layer_norm  # pre-norm: final norm like the layer norm
    assert spec.initialization.type == "default"


@pytest.mark.parametrize(("eos", "normalized"), [(None, ()), (2, (2,)), ([2, 7], (2, 7)), ([], ())], ids=["none", "one", "list", "empty"])
def test_token_ids_normalize_and_round_trip(eos, normalized):
    spec = load_spec({**MINIMAL, "tokens": {"eos_token_id": eos, "bos_token_id": 1}})
    assert (spec.tokens.eos_token_id, spec.tokens.bos_token_id, spec.tokens.pad_token_id) == (normalized, 1, None)
    assert load_spec(yaml.safe_load(yaml.safe_dump(spec.to_dict()))) == spec
    assert load_spec(MINIMAL).tokens.eos_token_id == ()


def test_post_norm_gets_no_final_norm_unless_given():
    d = {**MINIMAL, "layer": {**MINIMAL["layer"], "norm_placement": "post"}}
    assert load_spec(d).final_layer_norm is None
    assert load_spec({**d, "final_layer_norm": {"type": "rmsnorm"}}).final_layer_norm.type == "rmsnorm"
    assert load_spec({**MINIMAL, "final_layer_norm": None}).final_layer_norm is None


def test_user_values_are_never_overwritten():
    d = {**MINIMAL, "layer": {**MINIMAL["layer"], "attention": {"num_heads": 2, "num_kv_heads": 1, "head_dim": 6}}}
    att = load_spec(d).layer.attention
    assert (att.num_kv_heads, att.head_dim) == (1, 6)


def test_every_schema_property_has_a_default_or_is_required():
    def walk(node, path):
        node = schema()["$defs"][node["$ref"].rsplit("/", 1)[-1]] if "$ref" in node else node
        for key, sub in node.get("properties", {}).items():
            sub_r = schema()["$defs"][sub["$ref"].rsplit("/", 1)[-1]] if "$ref" in sub else sub
            optional = key not in node.get("required", [])
            documented = "default" in sub or "default" in sub_r or "description" in sub_r or sub_r.get("type") == "object"
            assert not optional or documented, f"{path}{key} has neither default nor description"
            if sub_r.get("type") == "object":
                walk(sub_r, f"{path}{key}.")

    walk(schema(), "")


@pytest.mark.parametrize("path", sorted(MODELS.glob("*.yaml")), ids=lambda p: p.stem)
def test_normalized_spec_round_trips(path):
    spec = load_spec(path)
    again = load_spec(yaml.safe_load(yaml.safe_dump(spec.to_dict())))
    assert again == spec
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.num_layers = 3  # type: ignore[misc]


def test_positional_max_positions_accepted_when_equal():
    pe = {"type": "rope", "max_position_embeddings": 8}
    d = {**MINIMAL, "embedding": {**MINIMAL["embedding"], "positional_encoding": pe}}
    assert load_spec(d).embedding.max_position_embeddings == 8
    with pytest.raises(SpecError, match="disagrees"):
        load_spec({**d, "embedding": {**d["embedding"], "positional_encoding": {**pe, "max_position_embeddings": 9}}})


SINKS_ON_LAYER_1 = case("layer_overrides", [{"layers": [1], "attention": {"sinks": True}}])


@pytest.mark.parametrize(
    "spec", [CASES_BY_ID["sinks"], SINKS_ON_LAYER_1, CASES_BY_ID["moe-router-bias"]], ids=["sinks", "layer-1", "router"]
)
def test_parameter_count_counts_sinks_per_layer_and_router_bias(spec):
    from yamlllm_export import build_model

    spec = load_spec(spec)
    assert sum(p.numel() for p in build_model(spec).parameters()) == spec.parameter_count()


def test_parameter_count_matches_built_model():
    from yamlllm_export import build_model

    for name in ("tiny-llama", "tiny-gpt2", "tiny-alibi", "tiny-postnorm-mqa"):
        spec = load_spec(MODELS / f"{name}.yaml")
        model = build_model(spec)
        assert sum(p.numel() for p in model.parameters()) == spec.parameter_count(), name


def test_llama_style_example_is_the_7b_shape():
    spec = load_spec(MODELS / "llama-style.yaml")
    assert spec.parameter_count() == 6_738_415_616
    assert (spec.layer.attention.num_heads, spec.layer.attention.head_dim) == (32, 128)


def test_every_number_field_loads_as_float():
    """JSON Schema's number admits ints; every field the schema types ``number`` holds a float in the typed
    spec, whichever object it sits in (the list of such keys comes from the schema, not a hand-kept set)."""
    d = {
        **MINIMAL,
        "embedding": {
            **MINIMAL["embedding"],
            "positional_encoding": {
                "type": "rope",
                "rope_theta": 10000,
                "rope_scaling": {"type": "yarn", "factor": 4, "mscale": 1, "mscale_all_dim": 1, "attention_factor": 1},
            },
        },
        "layer_overrides": [{"layers": [0], "attention": {"logit_softcap": 30}}],
    }
    spec = load_spec(d)
    scaling = spec.embedding.positional_encoding.rope_scaling
    for value in (
        scaling.factor,
        scaling.mscale,
        scaling.mscale_all_dim,
        scaling.attention_factor,
        spec.layer_specs()[0].attention.logit_softcap,
    ):
        assert type(value) is float, value


def test_rope_scaling_defaults_live_in_the_schema_only():
    """The op-level parameters carry no defaults of their own: the builder passes every one from the spec."""
    from yamlllm_export.ops.rope_scaling import RopeScaling

    assert all(f.default is dataclasses.MISSING for f in dataclasses.fields(RopeScaling))
