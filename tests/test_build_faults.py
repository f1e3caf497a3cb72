"""Builds under faults: killed with SIGKILL, racing another build into the same folder, a full disk (a file-size
limit), an unwritable parent. Each leaves the previous ``OUT`` as it was and, once the next build has run, no
hidden debris; a refusal is one ``error:`` line and exit code 2."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.conftest import MODELS, ROOT
from yamlllm_export import export_onnx
from yamlllm_export.cli import main
from yamlllm_export.errors import BuildError
from yamlllm_export.model.builders import skeleton
from yamlllm_export.spec import load_spec

SPEC = MODELS / "tiny-llama.yaml"  # ~0.5 MB written: model.onnx.data 434 kB, model.onnx 67 kB


def _previous(out: Path) -> Path:
    out.mkdir()
    (out / "old.txt").write_text("previous build")
    return out


def _wait_for(found, proc: subprocess.Popen, timeout: float = 180.0) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        hit = found()
        if hit is not None:
            return hit
        assert proc.poll() is None, f"the build ended (rc {proc.returncode}) before it could be interrupted"
        time.sleep(0.005)
    raise AssertionError("the build never reached the point to interrupt")


def test_killed_build_keeps_the_previous_folder_blocks_a_second_build_and_its_debris_goes(tmp_path):
    """A build into OUT is running: a second one (this process) is refused naming its pid; the first is killed
    with SIGKILL mid-export (its weights written, the swap not yet done); the next build removes its debris."""
    out = _previous(tmp_path / "out")
    # what export_onnx imports before it takes the lock (the model code, for the RAM estimate) is imported now, so
    # this process reaches the lock within the seconds the other build holds it, even on a loaded machine
    skeleton(load_spec(SPEC))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "yamlllm_export", "build", str(SPEC), "-o", str(out), "--overwrite"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
    try:
        partial = _wait_for(lambda: next(tmp_path.glob(".out.*.partial"), None), proc)
        with pytest.raises(BuildError, match=rf"{out}: another build \(pid {proc.pid}\) is writing this folder"):
            export_onnx(SPEC, out, overwrite=True)
        _wait_for(lambda: partial / "model.onnx" if (partial / "model.onnx").is_file() else None, proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert sorted(p.name for p in out.iterdir()) == ["old.txt"] and (out / "old.txt").read_text() == "previous build"
    assert partial.is_dir(), "the killed build's temporary folder is the debris the next build must remove"

    export_onnx(SPEC, out, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"], "no .out.*.partial, .out.old-*, .out.lock left"
    assert (out / "build.json").is_file() and not (out / "old.txt").exists()


def test_a_build_that_died_mid_swap_gets_its_previous_folder_back(tmp_path):
    """Where the atomic exchange is unavailable the swap is two renames; a build killed between them left OUT
    set aside as ``.out.old-*``: the next build puts it back (and refuses to replace it without --overwrite),
    removes dead partial folders, and leaves ``out.v2``'s alone."""
    _previous(tmp_path / ".out.old-.out.4242-0badc0de.partial")
    dead = tmp_path / ".out.4242-0badc0de.partial"
    dead.mkdir()
    other = tmp_path / ".out.v2.4243-0badc0de.partial"  # a build into out.v2: not ours to touch
    other.mkdir()
    with pytest.raises(BuildError, match="output folder exists; pass --overwrite"):
        export_onnx(SPEC, tmp_path / "out")
    assert (tmp_path / "out" / "old.txt").read_text() == "previous build"
    assert sorted(p.name for p in tmp_path.iterdir()) == [other.name, "out"]


@contextlib.contextmanager
def _file_size_limit(limit: int):
    """RLIMIT_FSIZE for this process: a write past it fails with EFBIG (Python ignores SIGXFSZ from startup)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


# a limit met while numpy writes the weights (its OSError has no errno) or while Python writes a small file
@pytest.mark.parametrize("limit", [200_000, 1_500], ids=["in-the-weights", "in-a-small-file"])
def test_disk_full_is_one_line_exit_2_and_leaves_the_previous_folder(tmp_path, limit):
    out = _previous(tmp_path / "out")
    with _file_size_limit(limit):
        result = CliRunner().invoke(main, ["build", str(SPEC), "-o", str(out), "--overwrite"])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {out}: cannot write the build"), lines
    assert "nothing was written" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"] and sorted(p.name for p in out.iterdir()) == ["old.txt"]


@pytest.mark.parametrize("below", ["", "new/"], ids=["parent", "grandparent"])
def test_unwritable_parent_is_one_line_exit_2(tmp_path, below):
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o555)
    out = parent / f"{below}out"
    try:
        if os.access(parent, os.W_OK):
            pytest.skip("this process ignores directory modes (root with CAP_DAC_OVERRIDE)")
        result = CliRunner().invoke(main, ["build", str(SPEC), "-o", str(out)])
        assert result.exit_code == 2, result.output
        assert result.stderr.strip().splitlines() == [f"error: {out}: cannot write into {parent} (permission denied); nothing was written"]
        assert list(parent.iterdir()) == []
    finally:
        parent.chmod(0o755)
