"""Folders are checked before they are trusted: build.json's file hashes (validate hashes all; generate and bench
compare sizes and mtimes, or hash with --verify), external data that would be read from outside the folder, and
nothing a folder names (a custom-op library in genai_config.json or build.json) is ever loaded by our commands."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.conftest import MODELS
from tests.validate_fixtures import FAST, assert_recorded, point_external_data, rerecord
from yamlllm_export import export_onnx
from yamlllm_export.cli import main
from yamlllm_export.errors import FolderError
from yamlllm_export.runtime.folder_check import FILES, sha256_file

pytestmark = pytest.mark.xdist_group("tiny-llama")
FAST_ARGS = [f"--{k.replace('_', '-')}={v}" for k, v in FAST.items()]
COMMANDS = {
    "validate": ["validate", *FAST_ARGS, "--ep", "cpu"],
    "generate": ["generate", "--prompt-ids", "1 2 3", "--max-new-tokens", "2"],
    "bench": ["bench", "--prompt-len", "4", "--gen-len", "2", "--rounds", "1", "--warmup", "0", "--backend", "ort", "--no-bandwidth"],
}


@pytest.fixture(scope="module")
def with_tokenizer(tmp_path_factory) -> Path:
    """tiny-llama built with a tokenizer.json: every kind of file a build writes."""
    tokenizers = pytest.importorskip("tokenizers")
    root = tmp_path_factory.mktemp("tokenized")
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel({w: i for i, w in enumerate(["<unk>", "a", "b"])}, unk_token="<unk>"))
    tok.save(str(root / "tokenizer.json"))
    return export_onnx(MODELS / "tiny-llama.yaml", root / "out", tokenizer=root / "tokenizer.json")


def _cli(command: str, folder: Path, *extra: str, report: Path | None = None):
    args = [COMMANDS[command][0], str(folder), *COMMANDS[command][1:], *extra]
    if report is not None and command != "generate":  # where validate and bench write their reports
        args += ["--report" if command == "validate" else "--out", str(report)]
    return CliRunner().invoke(main, args)


def _one_error(result, expected: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and expected in lines[0], (result.exit_code, result.output)


def _flip_a_byte(path: Path) -> None:
    """One byte in the middle changed; the size stays."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_build_records_every_file_it_wrote(with_tokenizer):
    assert_recorded(with_tokenizer)
    files = json.loads((with_tokenizer / "build.json").read_text())[FILES]
    assert set(files) == {"model.onnx", "model.onnx.data", "model.yaml", "genai_config.json", "tokenizer.json"}
    for name, record in files.items():
        path = with_tokenizer / name
        assert (record["sha256"], record["size"], record["mtime_ns"]) == (sha256_file(path), path.stat().st_size, path.stat().st_mtime_ns)


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("name", ["model.onnx.data", "model.onnx", "tokenizer.json"])
def test_a_changed_file_is_named_before_anything_runs(with_tokenizer, tmp_path, name, command):
    folder = shutil.copytree(with_tokenizer, tmp_path / "copy")
    _flip_a_byte(folder / name)
    result = _cli(command, folder, report=tmp_path / "report")
    _one_error(result, f"{folder / name}: changed since the build (sha256 ")
    assert not (tmp_path / "report").exists()


def test_generate_trusts_an_unmoved_mtime_and_verify_hashes_anyway(with_tokenizer, tmp_path):
    folder = shutil.copytree(with_tokenizer, tmp_path / "copy")
    data = folder / "model.onnx.data"
    stat = data.stat()
    _flip_a_byte(data)
    os.utime(data, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # an edit that put the old mtime back
    assert _cli("generate", folder).exit_code == 0  # the cheap check: sizes and mtimes
    _one_error(_cli("generate", folder, "--verify"), f"{data}: changed since the build (sha256 ")
    _one_error(_cli("bench", folder, "--verify", report=tmp_path / "b"), f"{data}: changed since the build (sha256 ")


def test_a_copy_with_new_mtimes_but_the_same_bytes_is_trusted(with_tokenizer, tmp_path):
    folder = shutil.copytree(with_tokenizer, tmp_path / "copy", copy_function=shutil.copyfile)  # mtimes not kept
    assert (folder / "model.onnx.data").stat().st_mtime_ns != (with_tokenizer / "model.onnx.data").stat().st_mtime_ns
    result = _cli("generate", folder)
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda f: (f / "model.onnx.data").open("ab").write(b"\0"),
            "model.onnx.data: changed since the build (434177 bytes, build.json records 434176)",
        ),
        (lambda f: (f / "genai_config.json").unlink(), "genai_config.json: missing (build.json records it"),
    ],
    ids=["grown", "deleted"],
)
def test_a_grown_or_deleted_file_is_refused_by_the_cheap_check(with_tokenizer, tmp_path, edit, expected):
    from yamlllm_export.runtime import Generator

    folder = shutil.copytree(with_tokenizer, tmp_path / "copy")
    edit(folder)
    with pytest.raises(FolderError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        Generator(folder)


def _absolute(folder: Path) -> None:
    point_external_data(folder, str((folder / "model.onnx.data").resolve()))  # inside the folder, but absolute


def _through_dotdot(folder: Path) -> None:
    point_external_data(folder, f"../{folder.name}/model.onnx.data")  # resolves back inside: still refused


def _symlink_out(folder: Path) -> None:
    outside = folder.parent / "elsewhere.data"
    shutil.move(folder / "model.onnx.data", outside)
    (folder / "model.onnx.data").symlink_to(outside)
    rerecord(folder)


LOCATIONS = {
    "absolute": (_absolute, "an absolute path, outside the folder"),
    "dotdot": (_through_dotdot, "a path through '..'"),
    "symlink": (_symlink_out, "outside the folder (it resolves to "),
}


@pytest.mark.parametrize("entry", ["session", "generate", "validate"])
@pytest.mark.parametrize(("crafted", "why"), list(LOCATIONS.values()), ids=list(LOCATIONS))
def test_external_data_outside_the_folder_is_refused_before_ort_opens_it(built, tmp_path, monkeypatch, crafted, why, entry):
    import onnxruntime as ort

    from yamlllm_export.runtime import session

    folder = shutil.copytree(built("tiny-llama", "ort"), tmp_path / "crafted")
    crafted(folder)
    opened = []
    monkeypatch.setattr(ort, "InferenceSession", lambda *a, **k: opened.append(a) or pytest.fail("ORT opened the folder"))
    expected = f"{folder / 'model.onnx'}: tensor "
    if entry == "session":
        for open_it in (session.cpu_session, lambda f: session.open_session(f, "cpu")):
            with pytest.raises(FolderError, match=f"keeps its data at .*: {why[:12]}"):
                open_it(folder)
    else:
        result = _cli(entry, folder, report=tmp_path / "report")
        _one_error(result, expected)
        assert why in result.stderr and "refused before loading" in result.stderr
    assert opened == []


EVIL_C = r"""
#include <stdio.h>
#include <stdlib.h>
__attribute__((constructor)) static void loaded(void) {
    FILE *f = fopen(getenv("YAMLLLM_LOADED_MARKER"), "a");
    if (f) { fputs("loaded\n", f); fclose(f); }
}
"""


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Path:
    """A shared library that, once loaded by any process, appends to the file ``$YAMLLLM_LOADED_MARKER``."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to make the probe library")
    root = tmp_path_factory.mktemp("lib")
    (root / "probe.c").write_text(EVIL_C)
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(root / "probe.so"), str(root / "probe.c")], check=True)  # noqa: S603
    return root / "probe.so"


def test_a_library_named_by_the_folder_is_never_loaded(built, tmp_path, monkeypatch, library):
    """genai_config.json's ``custom_ops_library`` (onnxruntime-genai dlopens it) and library-like keys in build.json:
    generate, validate and bench (its worker processes included) load none of them."""
    marker = tmp_path / "loaded"
    monkeypatch.setenv("YAMLLLM_LOADED_MARKER", str(marker))
    folder = shutil.copytree(built("tiny-llama", "ort"), tmp_path / "named")
    shutil.copy(library, folder / "ops.so")
    genai = json.loads((folder / "genai_config.json").read_text())
    options = genai["model"]["decoder"]["session_options"]
    options["custom_ops_library"] = str(folder / "ops.so")
    options["provider_options"] = [{"cpu": {"custom_ops_library": str(folder / "ops.so")}}]
    (folder / "genai_config.json").write_text(json.dumps(genai))
    info = json.loads((folder / "build.json").read_text())
    info["custom_ops_library"] = info["weights"]["library"] = str(folder / "ops.so")
    (folder / "build.json").write_text(json.dumps(info))
    rerecord(folder)  # the folder as its build (or someone else's) wrote it: every check passes but this one
    for command in COMMANDS:
        result = _cli(command, folder, report=tmp_path / command)
        assert result.exit_code == 0, (command, result.output)
    assert not marker.exists(), marker.read_text()
    # the probe works: loading the library writes the marker
    subprocess.run([sys.executable, "-c", f"import ctypes; ctypes.CDLL({str(folder / 'ops.so')!r})"], check=True)  # noqa: S603
    assert marker.read_text() == "loaded\n"
