"""The CLI on good and bad input. Every bad input: exit code 2, one ``error:`` line naming the key path or
file, no traceback, and no output folder (or partial folder) left behind."""

from __future__ import annotations

import json

import pytest
import yaml
from click.testing import CliRunner

from tests.conftest import MODELS
from yamlllm_export.cli import main

GOOD = yaml.safe_load((MODELS / "tiny-llama.yaml").read_text())


def _with(path: str, value, base=None):
    """GOOD with the dotted ``path`` set to ``value`` (``...`` deletes it)."""
    import copy

    d = copy.deepcopy(base or GOOD)
    *parents, last = path.split(".")
    node = d
    for p in parents:
        node = node.setdefault(p, {})
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return yaml.safe_dump(d)


BAD_SPECS = {
    "yaml-syntax": ("name: x\nembedding: [1, 2\n", "YAML error"),
    "python-object-tag": ("name: !!python/object/apply:os.system ['echo hi']\n", "unsupported YAML tag"),
    "duplicate-key": ("name: a\nname: b\n", "duplicate key 'name'"),
    "empty-file": ("", "must be a mapping"),
    "top-level-list": ("- 1\n- 2\n", "must be a mapping"),
    "unknown-top-key": (_with("flavour", "vanilla"), "<top level>: unknown key 'flavour'"),
    "unknown-nested-key": (_with("layer.attention.num_haeds", 4), "layer.attention: unknown key 'num_haeds'"),
    "wrong-type": (_with("layer.attention.num_heads", "four"), "layer.attention.num_heads: 'four' is not of type 'integer'"),
    "bool-as-int": (_with("num_layers", True), "num_layers: True is not of type 'integer'"),
    "zero-layers": (_with("num_layers", 0), "num_layers: 0 is less than the minimum of 1"),
    "missing-required": (_with("layer.ffn", ...), "layer.ffn: required key is missing"),
    "bad-enum": (_with("layer.ffn.activation", "gelu2"), "layer.ffn.activation: 'gelu2' is not one of"),
    "kv-heads-not-dividing": (_with("layer.attention.num_kv_heads", 3), "layer.attention.num_kv_heads: 3 does not divide num_heads 4"),
    "kv-heads-exceed": (_with("layer.attention.num_kv_heads", 8), "layer.attention.num_kv_heads: 8 exceeds num_heads 4"),
    "alibi-without-mechanism": (
        _with("embedding.positional_encoding", {"type": "alibi"}),
        "layer.attention.mechanism: 'standard' with positional_encoding.type 'alibi'",
    ),
    "alibi-mechanism-with-rope": (
        _with("layer.attention.mechanism", "alibi"),
        "embedding.positional_encoding.type: 'rope' with attention.mechanism",
    ),
    "gated-without-flag": (
        _with("layer.ffn.use_gated_activation", False),
        "layer.ffn.use_gated_activation: 'swiglu' is a gated activation",
    ),
    "flag-without-gated": (_with("layer.ffn.activation", "gelu"), "layer.ffn.use_gated_activation: true with non-gated activation 'gelu'"),
    "parallel-post-norm": (
        _with("layer.norm_placement", "post", yaml.safe_load(_with("layer.parallel", True))),
        "layer.parallel: a parallel block is pre-norm",
    ),
    "heads-not-dividing-hidden": (
        _with("layer.attention.num_heads", 5, yaml.safe_load(_with("layer.attention.num_kv_heads", 1))),
        "layer.hidden_dim: 64 is not divisible by num_heads 5",
    ),
    "positions-disagree": (
        _with("embedding.positional_encoding.max_position_embeddings", 64),
        "embedding.positional_encoding.max_position_embeddings: 64 disagrees",
    ),
    "odd-rope-head-dim": (_with("layer.attention.head_dim", 15), "layer.attention.head_dim: 15 is odd"),
    "mla-without-latent": (
        _with("layer.attention.mechanism", "mla"),
        "layer.attention.mla_latent_dim: required with mechanism 'mla'",
    ),
    "negative-eps": (_with("layer.layer_norm.eps", -1.0), "layer.layer_norm.eps: -1.0 is less than the minimum of 0"),
}


def _assert_clean_failure(result, expected: str, tmp_path, code: int = 2):
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    assert expected in lines[0], lines[0]
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")], "partial output left behind"


@pytest.mark.parametrize(("text", "expected"), list(BAD_SPECS.values()), ids=list(BAD_SPECS))
def test_bad_spec_build(tmp_path, text, expected):
    spec = tmp_path / "spec.yaml"
    spec.write_text(text)
    result = CliRunner().invoke(main, ["build", str(spec), "-o", str(tmp_path / "out")])
    _assert_clean_failure(result, f"{expected}" if not expected.startswith("YAML") else expected, tmp_path)


@pytest.mark.parametrize(("text", "expected"), list(BAD_SPECS.values())[:6], ids=list(BAD_SPECS)[:6])
def test_bad_spec_check(tmp_path, text, expected):
    spec = tmp_path / "spec.yaml"
    spec.write_text(text)
    result = CliRunner().invoke(main, ["check", str(spec)])
    _assert_clean_failure(result, expected, tmp_path)


def test_yaml_errors_name_file_and_line(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: x\nembedding: [1, 2\n")
    result = CliRunner().invoke(main, ["check", str(spec)])
    assert f"{spec}:3:" in result.stderr


def test_missing_file(tmp_path):
    result = CliRunner().invoke(main, ["build", str(tmp_path / "nope.yaml"), "-o", str(tmp_path / "out")])
    _assert_clean_failure(result, "nope.yaml: no such file", tmp_path)


def test_spec_is_a_directory(tmp_path):
    result = CliRunner().invoke(main, ["check", str(tmp_path)])
    _assert_clean_failure(result, "not a regular file", tmp_path)


def test_output_parent_is_a_file(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    result = CliRunner().invoke(main, ["build", str(MODELS / "tiny-llama.yaml"), "-o", str(blocker / "out")])
    _assert_clean_failure(result, f"parent {blocker} is not a directory", tmp_path)
    assert blocker.read_text() == "a file, not a folder"


def test_output_exists_without_overwrite(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    result = CliRunner().invoke(main, ["build", str(MODELS / "tiny-llama.yaml"), "-o", str(tmp_path / "out")])
    assert result.exit_code == 2 and "pass --overwrite" in result.stderr
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"


def test_unknown_target_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(main, ["build", str(MODELS / "tiny-llama.yaml"), "-o", str(tmp_path / "out"), "--target", "tpu"])
    assert result.exit_code == 2 and "'tpu' is not one of" in result.stderr
    assert not (tmp_path / "out").exists()


def test_full_size_llama_is_refused_before_work_when_memory_is_short(tmp_path, monkeypatch):
    """A machine with 1 GB free: even the streamed 6.7 B build (the graph plus its largest weight) is refused up
    front, naming both numbers. (With 2 GB or more it builds: benchmarks/scale.py.)"""
    from yamlllm_export.export import resources

    monkeypatch.setattr(resources, "available_ram", lambda: 1 << 30)
    result = CliRunner().invoke(main, ["build", str(MODELS / "llama-style.yaml"), "-o", str(tmp_path / "out"), "--quant", "int8"])
    _assert_clean_failure(result, "of RAM", tmp_path)
    assert "GB of weights" in result.stderr and "1.1 GB is available" in result.stderr


def test_check_and_schema_commands():
    runner = CliRunner()
    result = runner.invoke(main, ["check", str(MODELS / "llama-style.yaml"), "--target", "ort"])
    assert result.exit_code == 0 and "6,738,415,616 parameters" in result.output
    schema = json.loads(runner.invoke(main, ["schema"]).output)
    assert schema["$schema"].endswith("2020-12/schema")


@pytest.mark.xdist_group(name="tiny-gpt2")
def test_build_command_writes_folder(tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["build", str(MODELS / "tiny-gpt2.yaml"), "-o", str(out), "--target", "portable", "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["build.json", "genai_config.json", "model.onnx", "model.onnx.data", "model.yaml"]
    info = json.loads((out / "build.json").read_text())
    assert info["target"] == "portable" and info["weights"]["seed"] == 3
    again = CliRunner().invoke(main, ["build", str(MODELS / "tiny-gpt2.yaml"), "-o", str(out), "--overwrite"])
    assert again.exit_code == 0 and json.loads((out / "build.json").read_text())["target"] == "ort"
    assert not [p for p in tmp_path.iterdir() if p.name != "out"], "temporary folders left behind"


def test_dialect_scientific_floats_are_numbers(tmp_path):
    """The dialect writes ``eps: 1e-6``, which YAML 1.1 would read as a string."""
    from yamlllm_export.spec import load_spec

    spec = tmp_path / "s.yaml"
    spec.write_text(_with("layer.layer_norm.eps", "PLACEHOLDER").replace("PLACEHOLDER", "1e-6"))
    assert CliRunner().invoke(main, ["check", str(spec)]).exit_code == 0
    eps = load_spec(spec).layer.layer_norm.eps
    assert isinstance(eps, float) and eps == 1e-6
