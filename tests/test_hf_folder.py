"""What ``build --weights HF_DIR`` and ``import-hf`` do with the folder itself, whatever the family: sharded
and .bin layouts, half-precision checkpoints (cast with a note), validate's reload, and bad folders (one
line, exit 2, nothing written)."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from tests.hf_fixtures import hf_parity, make_hf_model
from tests.validate_fixtures import FAST, copy_folder, edit_graph, nan_logits
from yamlllm_export.cli import main

pytest.importorskip("transformers")
pytestmark = pytest.mark.xdist_group(name="hf-folder")


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    """The llama case saved three ways: one safetensors file, small shards with an index, pytorch_model.bin."""
    root = tmp_path_factory.mktemp("hf-layouts")
    model = make_hf_model("llama", root / "single")
    make_hf_model("llama", root / "sharded", max_shard_size="40KB")
    (root / "bin").mkdir()
    shutil.copy(root / "single" / "config.json", root / "bin")
    torch.save(load_file(str(root / "single" / "model.safetensors")), root / "bin" / "pytorch_model.bin")
    assert cli("import-hf", root / "single", "-o", root / "llama.yaml").exit_code == 0
    return model, root


def test_sharded_and_bin_layouts_load_the_same_model(llama, tmp_path):
    model, root = llama
    assert len(json.loads((root / "sharded" / "model.safetensors.index.json").read_text())["weight_map"]) > 3
    assert len(list((root / "sharded").glob("*.safetensors"))) > 1
    for layout in ("sharded", "bin"):
        result = cli("build", root / "llama.yaml", "--weights", root / layout, "-o", tmp_path / layout)
        assert result.exit_code == 0, result.output
        parity = hf_parity(model, tmp_path / layout)
        assert parity.prefill <= 1e-4 and parity.decode <= 1e-4, f"{layout}: {parity}"


@pytest.fixture(scope="module")
def llama_portable(llama, tmp_path_factory):
    _, root = llama
    out = tmp_path_factory.mktemp("llama-portable") / "out"
    assert cli("build", root / "llama.yaml", "--weights", root / "single", "-o", out, "--target", "portable").exit_code == 0
    return out


@pytest.mark.parametrize("where", ["decode", "pads"])
def test_hf_parity_reports_nan_as_infinite(llama, llama_portable, tmp_path, where):
    """A decode that goes NaN, or NaN at a pad position, is a failure of every HF case (it once folded to 0)."""
    folder = edit_graph(copy_folder(llama_portable, tmp_path / "out"), lambda m: nan_logits(m, where))
    parity = hf_parity(llama[0], folder)
    broken, intact = (parity.prefill, parity.decode) if where == "pads" else (parity.decode, parity.prefill)
    assert broken == math.inf and intact <= 1e-4, parity  # only the logits are NaN: the other phase is untouched


def test_bfloat16_checkpoint_is_cast_with_a_note(tmp_path):
    make_hf_model("llama", tmp_path / "hf", dtype=torch.bfloat16)
    assert cli("import-hf", tmp_path / "hf", "-o", tmp_path / "m.yaml").exit_code == 0
    result = cli("build", tmp_path / "m.yaml", "--weights", tmp_path / "hf", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "bfloat16 weights cast to float32" in result.stderr


def test_validate_reloads_the_folder_and_notices_changes(llama, tmp_path):
    _, root = llama
    hf = shutil.copytree(root / "single", tmp_path / "hf")
    assert cli("build", root / "llama.yaml", "--weights", hf, "-o", tmp_path / "out").exit_code == 0
    result = cli("validate", tmp_path / "out", *[f"--{k.replace('_', '-')}={v}" for k, v in FAST.items()])
    assert result.exit_code == 0, result.output
    info = json.loads((tmp_path / "out" / "build.json").read_text())["weights"]
    assert info["kind"] == "file" and info["path"] == str(hf.resolve())
    config = json.loads((hf / "config.json").read_text())
    (hf / "config.json").write_text(json.dumps({**config, "rms_norm_eps": 1e-3}))
    changed = cli("validate", tmp_path / "out")
    assert changed.exit_code == 2 and "changed since the build" in changed.stderr


def _edit_config(folder, **changes):
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **changes}))


BAD_FOLDERS = {
    "not-a-folder": (lambda d: d / "nope", "not a folder"),
    "no-config": (lambda d: (d / "config.json").unlink() or d, "no config.json"),
    "bad-json": (lambda d: (d / "config.json").write_text("{") and d, "not valid JSON"),
    "unknown-type": (lambda d: _edit_config(d, model_type="rwkv") or d, "'rwkv' is not supported; supported model_type values: "),
    "missing-key": (lambda d: _edit_config(d, hidden_size=None) or d, "'hidden_size' is missing"),
    "odd-activation": (lambda d: _edit_config(d, hidden_act="relu") or d, "hidden_act='relu' is not supported"),
    "odd-scaling": (
        lambda d: _edit_config(d, rope_parameters={"rope_type": "longrope", "rope_theta": 1e4}) or d,
        "rope_parameters.short_factor must be a list of 8 numbers (rotary dim 16), got None",
    ),
}


@pytest.mark.parametrize("bad", sorted(BAD_FOLDERS))
def test_import_of_a_bad_folder_is_one_line_and_writes_nothing(llama, tmp_path, bad):
    _, root = llama
    make, expected = BAD_FOLDERS[bad]
    folder = make(shutil.copytree(root / "single", tmp_path / "hf"))
    result = cli("import-hf", folder, "-o", tmp_path / "m.yaml")
    assert result.exit_code == 2 and expected in result.stderr, result.output
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output
    assert not (tmp_path / "m.yaml").exists() and not list(tmp_path.glob(".m.yaml*"))


BAD_WEIGHTS = {
    "missing-shard": (lambda d: next(d.glob("model-00001-*.safetensors")).unlink(), "names shards that are missing: model-00001-"),
    "missing-tensor": (lambda d: _drop_tensor(d, "model.norm.weight"), "1 missing: final_norm.weight"),
    "unknown-tensor": (
        lambda d: _add_tensor(d, "model.layers.0.mlp.extra.weight"),
        "does not know: 1 unknown: model.layers.0.mlp.extra.weight",
    ),
    "no-weights": (lambda d: [p.unlink() for p in d.glob("model*")], "no weights (expected one of model.safetensors"),
}


def _drop_tensor(folder, name):
    from safetensors.torch import save_file

    for path in folder.glob("*.safetensors"):
        state = load_file(str(path))
        if name in state:
            del state[name]
            save_file(state, str(path))


def _add_tensor(folder, name):
    from safetensors.torch import save_file

    path = next(folder.glob("*.safetensors"))
    save_file({**load_file(str(path)), name: torch.zeros(3)}, str(path))


@pytest.mark.parametrize("bad", sorted(BAD_WEIGHTS))
def test_build_from_a_bad_folder_is_one_line_and_writes_nothing(llama, tmp_path, bad):
    _, root = llama
    make, expected = BAD_WEIGHTS[bad]
    folder = shutil.copytree(root / "sharded", tmp_path / "hf")
    make(folder)
    result = cli("build", root / "llama.yaml", "--weights", folder, "-o", tmp_path / "out")
    assert result.exit_code == 2 and expected in result.stderr, result.output
    assert "Traceback" not in result.output and not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))


def test_weights_of_another_model_do_not_fit(llama, tmp_path):
    _, root = llama
    make_hf_model("mistral", tmp_path / "mistral")  # other head_dim
    result = cli("build", root / "llama.yaml", "--weights", tmp_path / "mistral", "-o", tmp_path / "out")
    assert result.exit_code == 2 and "wrong shape" in result.stderr


def test_tokens_and_tokenizer_come_along(llama, tmp_path):
    """import-hf writes the special token ids; build --weights HF_DIR copies the folder's tokenizer.json, so
    ``generate --prompt`` works on the result."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    _, root = llama
    hf = shutil.copytree(root / "single", tmp_path / "hf")
    tok = Tokenizer(models.WordLevel({f"w{i}": i for i in range(96)}, unk_token="w0"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(hf / "tokenizer.json"))
    assert cli("import-hf", hf, "-o", tmp_path / "m.yaml").exit_code == 0
    assert "bos_token_id: 1" in (tmp_path / "m.yaml").read_text()
    assert cli("build", tmp_path / "m.yaml", "--weights", hf, "-o", tmp_path / "out").exit_code == 0
    assert (tmp_path / "out" / "tokenizer.json").is_file()
    result = cli("generate", tmp_path / "out", "--prompt", "w5 w7 w9", "--max-new-tokens", "4")
    words = result.output.split()
    assert result.exit_code == 0 and len(words) == 4 and all(w.startswith("w") for w in words), result.output


def test_an_unfit_hf_tokenizer_is_left_out_with_a_note(llama, tmp_path):
    """The weights are still good when the folder's tokenizer has ids beyond the vocabulary: build goes on,
    says why the tokenizer was not copied, and generate --prompt then names the fix."""
    from tokenizers import Tokenizer, models

    _, root = llama
    hf = shutil.copytree(root / "single", tmp_path / "hf")
    Tokenizer(models.WordLevel({f"w{i}": i for i in range(500)}, unk_token="w0")).save(str(hf / "tokenizer.json"))
    result = cli("build", root / "llama.yaml", "--weights", hf, "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "tokenizer.json not copied" in result.stderr and "does not fit" in result.stderr
    assert not (tmp_path / "out" / "tokenizer.json").exists()
    prompt = cli("generate", tmp_path / "out", "--prompt", "w5")
    assert prompt.exit_code == 2 and "--tokenizer" in prompt.stderr
