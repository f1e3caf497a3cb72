"""Issue 29: NaN, infinite and out-of-float32 numbers, pathological YAML, and NaN/inf weights. Each is refused with
one line naming the key path (or the file, and the tensor), exit 2, no traceback, nothing written: by ``check``,
``build``, ``import-hf`` and ``import-gguf`` (GGUF cases: test_gguf_bad_input.py)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner, Result
from safetensors.torch import load_file, save_file

from tests.conftest import MODELS
from yamlllm_export import build_model, load_spec
from yamlllm_export.cli import main
from yamlllm_export.errors import SpecError
from yamlllm_export.spec import schema
from yamlllm_export.spec.load import MAX_NESTING, MAX_SPEC_BYTES, MAX_SPEC_VALUES, dump_yaml

LLAMA = load_spec(MODELS / "tiny-llama.yaml").to_dict()  # every key written out


def _cli(*args: object) -> Result:
    return CliRunner(env={"YAMLLLM_DEBUG": ""}).invoke(main, [str(a) for a in args])


def one_line(result: Result) -> str:
    """The refusal's one line: exit 2, no exception but the exit, no traceback."""
    assert result.exit_code == 2, f"exit {result.exit_code}: {result.output[-2000:]}"
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0].removeprefix("error: ")


def with_value(where: str, value: object) -> dict:
    spec = copy.deepcopy(LLAMA)
    *parents, last = where.split(".")
    node = spec
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return spec


# (key path, the YAML text of the value, what the line says after the key path)
NUMBERS = {
    "layer-norm-eps-nan": ("layer.layer_norm.eps", ".nan", "nan is not a finite number"),
    "init-std-nan": ("initialization.std", ".nan", "nan is not a finite number"),
    "rope-theta-inf": ("embedding.positional_encoding.rope_theta", ".inf", "inf is not a finite number"),
    "residual-scale-minus-inf": ("layer.residual_scale", "-.inf", "-inf is not a finite number"),
    "embedding-scale-nan": ("embedding.scale", ".NaN", "nan is not a finite number"),  # a oneOf node
    "dropout-nan": ("layer.ffn.dropout", ".nan", "nan is not a finite number"),  # NaN passes minimum and maximum
    "rope-theta-huge": ("embedding.positional_encoding.rope_theta", "1e300", "1e+300 overflows float32"),
    "rope-theta-huge-int": ("embedding.positional_encoding.rope_theta", "1" + "0" * 60, "1e+60 overflows float32"),
    "rope-theta-401-digits": ("embedding.positional_encoding.rope_theta", "1" + "0" * 400, "an integer of 401 digits overflows float32"),
    "rope-theta-1e400": ("embedding.positional_encoding.rope_theta", "1.0e+400", "inf is not a finite number"),  # YAML reads inf
    "eps-subnormal": ("layer.layer_norm.eps", "5e-324", "4.94066e-324 underflows float32"),
    # (rmsnorm's eps may be 0, Forge's no-epsilon form, so -0.0 is taken there; rope_theta's bound excludes 0)
    "rope-theta-negative-zero": ("embedding.positional_encoding.rope_theta", "-0.0", "-0.0 is less than or equal to the minimum of 0"),
    "num-layers-float": ("num_layers", "2.0", "2.0 is not of type 'integer'"),  # was an internal error (range(2.0))
    "num-heads-huge-float": ("layer.attention.num_heads", "1e300", "1e+300 is not of type 'integer'"),
    "vocab-past-int64": ("embedding.vocab_size", "1" + "0" * 29, "1e+29 does not fit int64"),
}


@pytest.mark.parametrize("case", sorted(NUMBERS), ids=str)
def test_a_number_the_model_cannot_use_is_refused_by_check_and_build(case: str, tmp_path: Path) -> None:
    where, text, says = NUMBERS[case]
    path = tmp_path / "spec.yaml"
    path.write_text(dump_yaml(with_value(where, "VALUE")).replace("VALUE", text))
    assert one_line(_cli("check", path)).startswith(f"{where}: {says}")
    assert one_line(_cli("build", path, "-o", tmp_path / "out")).startswith(f"{where}: {says}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.yaml"]


def test_negative_zero_is_zero_where_zero_is_allowed() -> None:
    assert load_spec(with_value("layer.ffn.dropout", -0.0)).layer.ffn.dropout == 0.0


def test_a_number_field_may_be_marked_as_taking_nonfinite_values() -> None:
    """``"x-nonfinite": true`` lets NaN and ±inf through (no field of the dialect has it today); finite values
    still must fit float32."""
    check = schema.SpecValidator({"type": "number", "x-nonfinite": True})
    assert check.is_valid(float("inf")) and check.is_valid(float("nan")) and not check.is_valid(1e300)
    assert not schema.SpecValidator({"type": "number"}).is_valid(float("inf"))


def _deep_list(n: int) -> str:
    return "name: x\nembedding: " + "[" * n + "]" * n + "\n"


PATHOLOGICAL = {
    "5000-deep-flow-sequence": (lambda: _deep_list(5000), f"YAML nested deeper than {MAX_NESTING} levels"),
    "5000-deep-flow-mapping": (lambda: "name: x\nembedding: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n", "YAML nested deeper"),
    "1000-deep-block-sequence": (
        lambda: "name: x\nembedding:\n" + "".join(" " * i + "-\n" for i in range(1000)),
        "YAML nested deeper",
    ),
    "anchor-used-inside-itself": (lambda: "name: &a [x, *a]\n", "YAML nested deeper"),
    "billion-laughs": (
        lambda: (
            "a: &a [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\n"
            + "".join(f"{c}: &{c} [{', '.join([f'*{p}'] * 10)}]\n" for p, c in zip("abcd", "bcde", strict=True))
        ),
        f"more than {MAX_SPEC_VALUES:,} YAML values",
    ),
    "5001-digit-integer": (lambda: "name: x\nnum_layers: 1" + "0" * 5000 + "\n", "an integer of 5001 digits is too long"),
    "too-large": (lambda: "name: x\n" + "#" * MAX_SPEC_BYTES + "\n", f"larger than {MAX_SPEC_BYTES:,} bytes"),
}


@pytest.mark.parametrize("case", sorted(PATHOLOGICAL), ids=str)
def test_pathological_yaml_is_refused_naming_the_file(case: str, tmp_path: Path) -> None:
    make, says = PATHOLOGICAL[case]
    path = tmp_path / "spec.yaml"
    path.write_text(make())
    for args in (["check", path], ["build", path, "-o", tmp_path / "out"]):
        line = one_line(_cli(*args))
        assert line.startswith(str(path)) and says in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.yaml"]


def test_nesting_the_dialect_uses_is_well_inside_the_limit(tmp_path: Path) -> None:
    """Up to the limit a wrong value is named by its key path; one level more, by the file and line."""
    assert schema.max_depth() == 6  # embedding.positional_encoding.rope_scaling.short_factor[i]
    assert MAX_NESTING >= 4 * schema.max_depth()
    path = tmp_path / "spec.yaml"
    for levels, says in ((MAX_NESTING - 2, r"^embedding\.scale: \[\[\["), (MAX_NESTING - 1, rf"^{path}:\d+:\d+: YAML nested deeper")):
        deep = "[" * levels + "]" * levels  # embedding.scale is level 3: the innermost list is level 32, then 33
        path.write_text(dump_yaml(with_value("embedding.scale", "DEEP")).replace("DEEP", deep))
        with pytest.raises(SpecError, match=says):
            load_spec(path)


def test_aliases_within_the_limits_still_load(tmp_path: Path) -> None:
    spec = {k: v for k, v in LLAMA.items() if k != "final_layer_norm"}
    text = dump_yaml(spec).replace("  layer_norm:\n", "  layer_norm: &norm\n", 1) + "final_layer_norm: *norm\n"
    assert text.count("&norm") == 1
    (tmp_path / "spec.yaml").write_text(text)
    assert load_spec(tmp_path / "spec.yaml") == load_spec(MODELS / "tiny-llama.yaml")


# ---- Hugging Face config.json ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hf_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("transformers")
    from tests.hf_fixtures import make_hf_model

    folder = tmp_path_factory.mktemp("hf-llama")
    make_hf_model("llama", folder)
    return folder


def _copy_hf(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ('"rms_norm_eps": NaN', "rms_norm_eps = nan is not a finite number"),
        ('"rope_theta": Infinity', "rope_theta = inf is not a finite number"),
        ('"rope_theta": 1e400', "rope_theta = inf is not a finite number"),  # json reads an overflow as inf
        ('"rope_scaling": {"rope_type": "linear", "factor": -Infinity}', "rope_scaling.factor = -inf is not a finite number"),
    ],
    ids=["eps-nan", "theta-infinity", "theta-1e400", "nested-factor"],
)
def test_import_hf_refuses_a_nonfinite_config_number(hf_llama: Path, tmp_path: Path, changes: str, says: str) -> None:
    folder = _copy_hf(hf_llama, tmp_path / "hf")
    config = folder / "config.json"
    text = config.read_text().rstrip().removesuffix("}").rstrip() + f",\n  {changes}\n}}\n"
    config.write_text(text)
    assert json.loads(text)  # Python's json reads it
    out = tmp_path / "spec.yaml"
    line = one_line(_cli("import-hf", folder, "-o", out))
    assert line == f"{config}: {says} (JSON has no NaN or Infinity; a broken converter wrote it)"
    assert not out.exists() and not list(tmp_path.glob(".*partial"))


# ---- weights ---------------------------------------------------------------------------------------------


def test_hf_weights_with_nan_are_named_by_build(hf_llama: Path, tmp_path: Path) -> None:
    folder = _copy_hf(hf_llama, tmp_path / "hf")
    spec = tmp_path / "spec.yaml"
    assert _cli("import-hf", folder, "-o", spec).exit_code == 0
    state = load_file(str(folder / "model.safetensors"))
    name = "model.layers.0.mlp.up_proj.weight"
    state[name][3, 5] = float("nan")
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    line = one_line(_cli("build", spec, "--weights", folder, "-o", tmp_path / "out"))
    assert line.startswith(f"{folder / 'model.safetensors'}: tensor '{name}' holds 1 NaN and 0 infinite values (first at index [3, 5])")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
@pytest.mark.parametrize("bad", [float("inf"), float("-inf"), float("nan")], ids=["inf", "minus-inf", "nan"])
def test_checkpoint_with_nonfinite_values_is_named_by_build(tmp_path: Path, suffix: str, bad: float) -> None:
    spec = MODELS / "tiny-llama.yaml"
    state = {k: v.clone().contiguous() for k, v in build_model(load_spec(spec), seed=0).state_dict().items()}
    name = "blocks.1.attn.o_proj.weight"
    state[name].view(-1)[7] = bad
    path = tmp_path / f"ckpt{suffix}"
    save_file(state, str(path)) if suffix == ".safetensors" else torch.save(state, path)
    line = one_line(_cli("build", spec, "--weights", path, "-o", tmp_path / "out"))
    nan, inf = (1, 0) if bad != bad else (0, 1)
    assert line.startswith(f"{path}: tensor '{name}' holds {nan} NaN and {inf} infinite values"), line
    assert not (tmp_path / "out").exists()


def test_a_value_inside_a_oneof_object_is_named_by_its_own_key(tmp_path: Path) -> None:
    """jsonschema stops at the ``oneOf`` (object or null) when the value breaks two keywords of its branch (type and
    minimum here); the line must still name the key inside it (found by the fuzzer's subnormal draws)."""
    path = tmp_path / "spec.yaml"
    path.write_text(dump_yaml(with_value("layer.ffn.moe", "MOE")).replace("MOE", "{num_experts: 4, top_k: 1.0e-40}"))
    assert one_line(_cli("check", path)) == "layer.ffn.moe.top_k: 1e-40 is not of type 'integer'"
