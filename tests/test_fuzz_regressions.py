"""Failures the generated-spec tests (test_fuzz_specs.py) found, each as the concrete spec that showed it."""

from __future__ import annotations

import onnx
import pytest

from tests.validate_fixtures import failed, run
from yamlllm_export.errors import BuildError
from yamlllm_export.spec import load_spec
from yamlllm_export.spec.load import dump_yaml
from yamlllm_export.validate.runner import ValidateOptions, settings_for

TINY = {
    "name": "0",
    "embedding": {"vocab_size": 2, "max_position_embeddings": 4, "embedding_dim": 8},
    "num_layers": 1,
    "layer": {"hidden_dim": 8, "attention": {"num_heads": 1}, "ffn": {}},
}


def _with_context(n: int) -> dict:
    return {**TINY, "embedding": {**TINY["embedding"], "max_position_embeddings": n}}


@pytest.mark.parametrize("context", [2, 4, 9])
def test_validate_defaults_fit_a_short_context(context):
    """Was: ``validate`` on a 4-position model said '--prompt-len -4 + --steps 8 = 4 does not fit' (exit 2), flags
    the user never passed: the default 8 decode steps were not capped by the context as the prompt was."""
    settings = settings_for(load_spec(_with_context(context)), ValidateOptions())
    assert settings.prompt_len >= 1 and settings.steps >= 1
    assert settings.prompt_len + settings.steps <= context
    assert settings.long_steps < settings.long_context <= context


def test_validate_says_why_a_one_position_model_cannot_be_validated():
    with pytest.raises(BuildError, match="max_position_embeddings 1 leaves no position for a decode step"):
        settings_for(load_spec(_with_context(1)), ValidateOptions())


def test_explicit_steps_are_not_capped():
    with pytest.raises(BuildError, match="--steps 8 leaves no position for a prompt in max_position_embeddings 4"):
        settings_for(load_spec(TINY), ValidateOptions(steps=8))
    with pytest.raises(BuildError, match="--prompt-len 2 \\+ --steps 3 = 5 does not fit max_position_embeddings 4"):
        settings_for(load_spec(TINY), ValidateOptions(steps=3, prompt_len=2))
    with pytest.raises(BuildError, match="--steps: 0 is less than 1"):
        settings_for(load_spec(TINY), ValidateOptions(steps=0))


def test_ort_attention_with_a_head_size_gqa_refuses(export_case, tmp_path):
    """Was: hidden_dim 8 with 4 heads (head_dim 2) built for ort, and every decode check failed with ORT's 'head_size
    must be a multiple of 8' from GroupQueryAttention. Such layers now lower to plain attention ops (the tiny
    models, head_dim 16, keep GroupQueryAttention: test_graph)."""
    spec = {**TINY, "embedding": {"vocab_size": 32, "max_position_embeddings": 16, "embedding_dim": 8}, "num_layers": 2}
    # with sinks, which the plain-op attention must keep (merging the two once dropped them silently)
    folder = export_case("fuzz-head-dim-2", {**spec, "layer": {**TINY["layer"], "attention": {"num_heads": 4, "sinks": True}}}, "ort")
    assert failed(run(folder, tmp_path / "parity")) == set()
    ops = {n.op_type for n in onnx.load(str(folder / "model.onnx"), load_external_data=False).graph.node}
    assert "GroupQueryAttention" not in ops


def test_an_override_without_attention_loads_back_from_model_yaml():
    """Was: ``layer_overrides: [{layers: [1]}]`` built, but model.yaml held ``attention: {}``, which the schema
    refuses, so ``validate`` (and anything that reloads the folder) stopped with
    'layer_overrides[0].attention: {} should be non-empty'."""
    spec = load_spec({**TINY, "num_layers": 2, "layer_overrides": [{"layers": [1]}]})
    assert load_spec(spec.to_dict()) == spec


@pytest.mark.parametrize("name", ["1e5", "-2E-3", "3.0e+1", "Q\x85Ð"], ids=["1e5", "-2E-3", "3.0e+1", "next-line-char"])
def test_a_name_that_looks_like_a_float_loads_back_from_model_yaml(tmp_path, name):
    """Was: ``name: "1e5"`` built, but model.yaml held ``name: 1e5`` unquoted, which our loader (it reads ``1e-6``
    as a float, unlike YAML 1.1) read back as 100000.0: 'name: 100000.0 is not of type 'string''. And a name with
    U+0085 (NEL) must come back as written, not as a space."""
    spec = load_spec({**TINY, "name": name})
    (tmp_path / "model.yaml").write_text(dump_yaml(spec.to_dict()))
    assert load_spec(tmp_path / "model.yaml") == spec


def test_an_ort_graph_without_contrib_ops_passes_the_opset_check():
    """Was: an ort build with no com.microsoft node (head_dim 4: plain attention; LayerNorm without a learned
    scale; no RoPE) imports ai.onnx only, and validate failed it: 'imports com.microsoft nothing, the target
    needs 1'. A contrib domain no node uses need not be imported; one a node uses still must be."""
    from onnx import helper

    from yamlllm_export.validate.structure import _opset_problems

    def model(domain: str, imports: dict[str, int]) -> onnx.ModelProto:
        node = helper.make_node("Add" if not domain else "FusedGemm", ["a", "a"], ["b"], domain=domain)
        value = helper.make_tensor_value_info("a", onnx.TensorProto.FLOAT, [1])
        graph = helper.make_graph([node], "g", [value], [helper.make_tensor_value_info("b", onnx.TensorProto.FLOAT, [1])])
        return helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in imports.items()])

    ort = {"": 18, "com.microsoft": 1}
    assert _opset_problems(model("", {"": 18}), ort) == []
    assert _opset_problems(model("com.microsoft", {"": 18}), ort) == [
        "imports com.microsoft nothing, the target needs 1",
        "nodes use domain com.microsoft, which is not imported",
    ]
    assert _opset_problems(model("", {"": 18, "com.microsoft": 2}), ort) == ["imports com.microsoft 2, the target needs 1"]
