"""``yamlllm-export validate`` and ``build --validate`` through the CLI: the table, the report files, exit
codes 0 / 1 / 2, and one clear ``error:`` line for every input it cannot validate."""

from __future__ import annotations

import json

import pytest
import yaml
from click.testing import CliRunner

from tests.conftest import MODELS
from tests.validate_fixtures import FAST, copy_folder, edit_build_json, edit_graph, rerecord, shift_cache
from yamlllm_export.cli import main
from yamlllm_export.runtime.session import availability

FAST_ARGS = [f"--{k.replace('_', '-')}={v}" for k, v in FAST.items()]
llama = pytest.mark.xdist_group(name="tiny-llama")


def _validate(*args: str):
    return CliRunner().invoke(main, ["validate", *map(str, args), *FAST_ARGS])


def _one_error_line(result, expected: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert expected in lines[0], lines[0]
    assert "Traceback" not in result.output


@llama
def test_validate_prints_table_and_writes_report_in_folder(built, tmp_path):
    folder = copy_folder(built("tiny-llama", "ort"), tmp_path / "llama")
    result = _validate(folder)
    assert result.exit_code == 0, result.output
    for check in ("checker", "io contract", "prefill", "decode", "incremental", "long context", "tokens"):
        assert check in result.stdout
    assert "max|Δ|/σ ≤ 2.3e-05 (ε·√2·(16·√64 + 8))" in result.stdout and "all checks passed" in result.stdout
    cuda = availability("cuda")
    skipped = [line for line in result.stdout.splitlines() if line.startswith("cuda: skipped")]
    assert len(skipped) == (0 if cuda.usable else 1), result.stdout
    assert result.stderr == ""  # no ORT log lines, no warnings
    saved = json.loads((folder / "parity" / "parity.json").read_text())
    assert saved["passed"] and saved["model"]["name"] == "TinyLlama" and saved["settings"]["prompt_lengths"] == [8, 6, 4]
    assert saved["settings"]["long_context"] == "125 + 3 steps = 128"
    assert (folder / "parity" / "parity.md").read_text().startswith("# Parity report: TinyLlama (ort, float32)")


@llama
def test_long_context_option_bounds_the_long_check(built, tmp_path):
    result = _validate(built("tiny-llama", "ort"), "--long-context", "40", "--report", tmp_path / "rep")
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "rep" / "parity.json").read_text())
    assert saved["settings"]["long_context"] == "37 + 3 steps = 40"
    long = next(c for c in saved["checks"] if c["check"] == "long context")
    assert "prompt 37, positions up to 39" in long["detail"] and long["limit"] < 3e-5  # T ≤ 40 keys, not 128


@llama
def test_parity_failure_exits_1_and_names_the_check(built, tmp_path):
    folder = edit_graph(copy_folder(built("tiny-llama", "portable"), tmp_path / "broken"), shift_cache)
    result = _validate(folder, "--report", tmp_path / "rep")
    assert result.exit_code == 1, result.output
    assert "FAILED" in result.stdout
    decode = next(line for line in result.stdout.splitlines() if line.startswith("│ decode"))
    assert "fail" in decode and "max|Δ|" in decode
    checks = {c["check"]: c for c in json.loads((tmp_path / "rep" / "parity.json").read_text())["checks"]}
    assert checks["decode"]["status"] == "fail" and checks["decode"]["value"] > 1e-4 and checks["prefill"]["status"] == "pass"


def _edit_spec(folder):
    spec = yaml.safe_load((folder / "model.yaml").read_text())
    spec["embedding"]["positional_encoding"]["rope_theta"] = 500.0  # not a weight: the weight hash still matches
    (folder / "model.yaml").write_text(yaml.safe_dump(spec))


BAD_FOLDERS = {
    "torch-version": (lambda f: edit_build_json(f, torch_version="1.0.0"), [], "seeded build made with torch 1.0.0"),
    "weights-changed": (lambda f: edit_build_json(f, seed=1), [], "sha256 mismatch"),
    "in-memory-model": (lambda f: edit_build_json(f, kind="model"), [], "cannot be rebuilt"),
    "spec-edited": (_edit_spec, [], "model.yaml: changed since the build ("),
    # build.json's file hashes made to agree: the spec hash still tells
    "spec-edited-rehashed": (lambda f: rerecord(_edit_spec(f) or f), [], "differs from the spec the folder was built from"),
    "model-onnx-missing": (lambda f: (f / "model.onnx").unlink(), [], "model.onnx is missing"),
    "prompt-too-long": (
        lambda f: None,
        ["--prompt-len", "126"],
        "--prompt-len 126 + --steps 3 = 129 does not fit max_position_embeddings 128",
    ),
    "long-context-too-long": (lambda f: None, ["--long-context", "129"], "--long-context 129: must be more than its 3 decode"),
    "long-context-too-short": (lambda f: None, ["--long-context", "3"], "at most max_position_embeddings 128 of TinyLlama"),
}


@pytest.mark.parametrize(("edit", "args", "expected"), list(BAD_FOLDERS.values()), ids=list(BAD_FOLDERS))
@llama
def test_bad_folders_exit_2_with_one_line(built, tmp_path, edit, args, expected):
    folder = copy_folder(built("tiny-llama", "ort"), tmp_path / "llama")
    edit(folder)
    result = CliRunner().invoke(main, ["validate", str(folder), *FAST_ARGS, *args])
    _one_error_line(result, expected)
    assert not (folder / "parity").exists(), "no report for a folder that could not be validated"


def test_not_a_folder(tmp_path):
    _one_error_line(_validate(tmp_path / "nope"), "not a model folder")


@llama
def test_refuses_before_loading_when_memory_is_short(built, tmp_path, monkeypatch):
    from yamlllm_export.export import resources
    from yamlllm_export.validate import runner

    monkeypatch.setattr(resources, "available_ram", lambda: 10**8)
    monkeypatch.setattr(runner, "load_checked_reference", lambda *a: pytest.fail("the reference was loaded"))
    result = _validate(built("tiny-llama", "ort"), "--report", tmp_path / "rep")
    _one_error_line(result, "of RAM")
    assert "but 0.1 GB is available; refused before loading anything" in result.stderr


@llama
def test_refuses_when_disk_is_full(built, tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**9, 10**9, 10**5))
    _one_error_line(_validate(built("tiny-llama", "ort"), "--report", tmp_path / "rep"), "of disk")


@pytest.mark.skipif(availability("cuda").usable, reason="this machine has a usable CUDA EP")
@llama
def test_explicit_cuda_without_gpu_is_bad_input(built, tmp_path):
    result = _validate(built("tiny-llama", "ort"), "--ep", "cuda", "--report", tmp_path / "rep")
    _one_error_line(result, "--ep cuda: not usable on this machine (")
    assert not (tmp_path / "rep").exists()


@pytest.mark.xdist_group(name="tiny-postnorm-mqa")
def test_build_then_validate_in_one_command(tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main, ["build", str(MODELS / "tiny-postnorm-mqa.yaml"), "-o", str(out), "--target", "portable", "--validate"]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"built {out}") and "all checks passed" in result.stdout
    assert json.loads((out / "parity" / "parity.json").read_text())["passed"] is True


@pytest.mark.xdist_group(name="tiny-llama")
def test_build_that_cannot_run_on_the_ep_is_reported_not_failed(tmp_path):
    """bfloat16 MatMul has no CPU kernel: the CPU row says so, nothing counts as a parity failure, and since
    the one EP asked for cannot run the build, nothing was validated: exit 2."""
    from yamlllm_export import export_onnx

    folder = export_onnx(MODELS / "tiny-llama.yaml", tmp_path / "bf16", dtype="bfloat16")
    result = _validate(folder, "--ep", "cpu")
    _one_error_line(result, "runs on none of the execution providers tried (cpu: Could not find an implementation for MatMul")
    checks = json.loads((folder / "parity" / "parity.json").read_text())["checks"]
    assert [c["status"] for c in checks if c["ep"] == "cpu"] == ["unsupported"]
    assert all(c["status"] == "pass" for c in checks if c["ep"] == "-")
    assert "unsupported" in result.stdout
