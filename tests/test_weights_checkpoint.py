"""Trained weights of the compiled model: a checkpoint saved after a few optimizer steps exports and matches
(validate reloads it from where build.json says), and every bad checkpoint is one clear error, exit 2,
nothing written."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import save_file

from tests.conftest import MODELS
from tests.validate_fixtures import FAST, assert_parity
from yamlllm_export import build_model, load_spec
from yamlllm_export.cli import main

pytestmark = pytest.mark.xdist_group(name="tiny-gpt2")
SPEC = MODELS / "tiny-gpt2.yaml"  # tied head: the checkpoint holds the shared matrix under both names


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """tiny-gpt2 after 5 Adam steps on random tokens, saved as safetensors and as .pt."""
    model = build_model(load_spec(SPEC), seed=0).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        ids = torch.randint(1, 256, (4, 16), generator=g)
        logits, _ = model(ids)
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 256), ids[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    folder = tmp_path_factory.mktemp("ckpt")
    save_file(state, str(folder / "trained.safetensors"))
    torch.save(state, folder / "trained.pt")
    return folder, state


def _build(*args):
    return CliRunner().invoke(main, ["build", str(SPEC), *map(str, args)])


@pytest.mark.parametrize("name", ["trained.safetensors", "trained.pt"])
def test_trained_checkpoint_exports_and_matches(trained, tmp_path, name):
    folder, state = trained
    result = _build("-o", tmp_path / "out", "--weights", folder / name, "--target", "portable")
    assert result.exit_code == 0, result.output
    info = json.loads((tmp_path / "out" / "build.json").read_text())
    assert info["weights"]["kind"] == "file" and info["weights"]["path"] == str((folder / name).resolve())
    seeded = build_model(load_spec(SPEC), seed=0).state_dict()
    assert (state["embed.weight"] - seeded["embed.weight"]).abs().max() > 1e-3  # training moved the weights
    assert_parity(tmp_path / "out", tmp_path / "parity")  # validate rebuilds the reference from the file


def test_half_precision_checkpoint_is_cast_with_a_note(trained, tmp_path):
    folder, state = trained
    save_file({k: v.to(torch.bfloat16) for k, v in state.items()}, str(tmp_path / "bf16.safetensors"))
    result = _build("-o", tmp_path / "out", "--weights", tmp_path / "bf16.safetensors")
    assert result.exit_code == 0, result.output
    assert "note: " in result.stderr and "bfloat16 weights cast to float32" in result.stderr


def test_validate_refuses_when_the_weights_file_moved_or_changed(trained, tmp_path):
    folder, state = trained
    ckpt = tmp_path / "w.safetensors"
    save_file(state, str(ckpt))
    assert _build("-o", tmp_path / "out", "--weights", ckpt).exit_code == 0
    save_file({**state, "embed.weight": state["embed.weight"] + 1}, str(ckpt))
    changed = CliRunner().invoke(main, ["validate", str(tmp_path / "out"), *[f"--{k.replace('_', '-')}={v}" for k, v in FAST.items()]])
    assert changed.exit_code == 2 and "changed since the build" in changed.stderr
    ckpt.unlink()
    gone = CliRunner().invoke(main, ["validate", str(tmp_path / "out")])
    assert gone.exit_code == 2 and "is gone (moved or deleted)" in gone.stderr


class _Evil:
    def __reduce__(self):
        return (print, ("code ran",))


def _bad(state, tmp_path):
    def without(key):
        return {k: v for k, v in state.items() if k not in key}

    t = tmp_path
    cases = {
        "missing": (
            t / "a.safetensors",
            lambda p: save_file(without({"blocks.0.ffn.up.weight"}), str(p)),
            "1 missing: blocks.0.ffn.up.weight",
        ),
        "unexpected": (
            t / "b.safetensors",
            lambda p: save_file({**state, "extra.weight": torch.zeros(2)}, str(p)),
            "1 unexpected: extra.weight",
        ),
        "wrong-shape": (
            t / "c.safetensors",
            lambda p: save_file({**state, "blocks.0.ffn.up.bias": torch.zeros(3)}, str(p)),
            "1 wrong shape: blocks.0.ffn.up.bias (3,)",
        ),
        "not-float": (
            t / "d.safetensors",
            lambda p: save_file({**state, "blocks.0.ffn.up.bias": torch.zeros(256, dtype=torch.int64)}, str(p)),
            "not floating point: blocks.0.ffn.up.bias (torch.int64)",
        ),
        "truncated": (
            t / "e.safetensors",
            lambda p: p.write_bytes((t / "full.safetensors").read_bytes()[:500]),
            "not a readable safetensors file",
        ),
        "pickle-with-code": (
            t / "f.pt",
            lambda p: p.write_bytes(pickle.dumps({"x": _Evil()})),
            "refused: the pickle holds more than tensors",
        ),
        "not-a-state-dict": (t / "g.pt", lambda p: torch.save([torch.zeros(2)], p), "expected a state dict"),
        "unknown-format": (t / "h.npz", lambda p: p.write_bytes(b"x"), "unknown weights format '.npz'"),
        "no-file": (t / "nope.safetensors", lambda p: None, "no such weights file"),
    }
    save_file(state, str(t / "full.safetensors"))
    return cases


BAD = [
    "missing",
    "unexpected",
    "wrong-shape",
    "not-float",
    "truncated",
    "pickle-with-code",
    "not-a-state-dict",
    "unknown-format",
    "no-file",
]


@pytest.mark.parametrize("case", BAD)
def test_bad_checkpoint_is_one_clear_error(trained, tmp_path, case, capfd):
    _, state = trained
    path, write, expected = _bad(state, tmp_path)[case]
    write(path)
    result = _build("-o", tmp_path / "out", "--weights", path)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: ") and expected in lines[0], result.stderr
    assert "Traceback" not in result.output and "code ran" not in capfd.readouterr().out
    assert not (tmp_path / "out").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]
