"""The export folder: build.json provenance, bit-identical rebuilds, atomic writes, resource refusal."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.conftest import MODELS
from yamlllm_export import build_model, export_onnx, load_spec
from yamlllm_export.errors import BuildError
from yamlllm_export.export import resources
from yamlllm_export.export.provenance import weights_sha256


@pytest.mark.xdist_group(name="tiny-llama")
def test_build_json_records_provenance(built):
    folder = built("tiny-llama", "ort")
    info = json.loads((folder / "build.json").read_text())
    for key in ("versions", "spec_sha256", "target", "opset", "parameter_count", "build_seconds", "weights", "kv_cache_bytes_per_token"):
        assert key in info, key
    assert info["versions"]["torch"] and info["opset"] == {"": 18, "com.microsoft": 1}
    assert info["weights"]["kind"] == "seed" and info["weights"]["seed"] == 0
    assert info["parameter_count"] == load_spec(MODELS / "tiny-llama.yaml").parameter_count()
    # the reference rebuilt from model.yaml + seed is bit-identical to the exported weights
    rebuilt = build_model(load_spec(folder / "model.yaml"), seed=info["weights"]["seed"])
    assert weights_sha256(rebuilt) == info["weights"]["sha256"]
    assert load_spec(folder / "model.yaml") == load_spec(MODELS / "tiny-llama.yaml")
    assert info["kv_cache_bytes_per_token"] == 2 * 2 * 2 * 16 * 4  # layers · (k, v) · kv heads · head dim · fp32


def test_failed_build_leaves_nothing(tmp_path, monkeypatch):
    from yamlllm_export.export import writer

    def explode(path):
        raise BuildError("simulated checker failure")

    monkeypatch.setattr(writer, "_check", explode)
    with pytest.raises(BuildError, match="simulated"):
        export_onnx(MODELS / "tiny-postnorm-mqa.yaml", tmp_path / "out", target="portable")
    assert list(tmp_path.iterdir()) == []


def test_overwrite_keeps_old_folder_until_new_one_is_complete(tmp_path, monkeypatch):
    from yamlllm_export.export import writer

    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("previous build")
    monkeypatch.setattr(writer, "_check", lambda path: (_ for _ in ()).throw(BuildError("boom")))
    with pytest.raises(BuildError):
        export_onnx(MODELS / "tiny-postnorm-mqa.yaml", out, target="portable", overwrite=True)
    assert (out / "old.txt").read_text() == "previous build"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.parametrize("exchange", ["refused", "unsupported"])
def test_failed_final_rename_restores_the_previous_folder(tmp_path, monkeypatch, exchange):
    """The swap fails (a permission): refused, the atomic exchange changed nothing; unsupported by the
    filesystem, the two-rename fallback's last step fails and the old build is back under its name."""
    import errno
    import os

    from yamlllm_export.export import out_dir as out_dir_module

    rename = os.rename
    out = tmp_path / "out"

    def failing(src, dst):
        if str(dst) == str(out) and ".old-" not in str(src):  # the finished build moving into place
            raise OSError(13, "Permission denied")
        rename(src, dst)

    def exchange_fails(a, b):
        raise OSError(errno.EACCES if exchange == "refused" else errno.EINVAL, "exchange")

    out.mkdir()
    (out / "old.txt").write_text("previous build")
    monkeypatch.setattr(os, "rename", failing)
    monkeypatch.setattr(out_dir_module, "_exchange", exchange_fails)
    with pytest.raises(BuildError, match="cannot move the finished build into place .*previous folder is unchanged"):
        export_onnx(MODELS / "tiny-postnorm-mqa.yaml", out, target="portable", overwrite=True)
    assert (out / "old.txt").read_text() == "previous build"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_memory_refusal_names_needed_and_available_bytes(tmp_path, monkeypatch):
    monkeypatch.setattr(resources, "available_ram", lambda: 1 * 10**9)
    spec = load_spec(MODELS / "alibi.yaml")  # 124 M parameters ≈ 0.5 GB fp32; streamed: the graph + its 38.6 M-value embedding
    with pytest.raises(BuildError, match=r"needs about 1\.4 GB of RAM \(0\.5 GB of weights\) but 1\.0 GB is available"):
        export_onnx(spec, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_disk_refusal(tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**9, 10**9, 10**6))
    with pytest.raises(BuildError, match="of disk"):
        export_onnx(MODELS / "alibi.yaml", tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_export_of_an_in_memory_model_records_its_hash(tmp_path):
    spec = load_spec(MODELS / "tiny-postnorm-mqa.yaml")
    model = build_model(spec, seed=5)
    folder = export_onnx(model, tmp_path / "out", spec=spec, target="portable")
    info = json.loads((folder / "build.json").read_text())
    assert info["weights"] == {"kind": "model", "sha256": weights_sha256(model)}
    assert yaml.safe_load((folder / "model.yaml").read_text())["name"] == spec.name


def test_weights_go_to_external_data_and_the_folder_runs(tmp_path, reference):
    """Weights are saved as model.onnx.data beside a small graph; the folder runs on ORT and matches."""
    import onnx

    from yamlllm_export.runtime.io_contract import IOContract
    from yamlllm_export.runtime.session import cpu_session
    from yamlllm_export.validate.parity import Tolerance, teacher_forced

    folder = export_onnx(MODELS / "tiny-postnorm-mqa.yaml", tmp_path / "out", target="ort")
    data = (folder / "model.onnx.data").stat().st_size
    assert data >= 4 * load_spec(MODELS / "tiny-postnorm-mqa.yaml").parameter_count() - 64 * 1024  # tiny tensors may stay inline
    proto = onnx.load(str(folder / "model.onnx"), load_external_data=False)
    assert any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer)
    assert json.loads((folder / "build.json").read_text())["external_data"] == "model.onnx.data"
    contract = IOContract.for_spec(load_spec(folder / "model.yaml"))
    diffs = teacher_forced(reference("tiny-postnorm-mqa"), cpu_session(folder), contract, lengths=[4, 2], side="left", decode_steps=2)
    tol = Tolerance.for_spec("float32", load_spec(folder / "model.yaml"))
    assert all(tol.ok(d.max_rel, d.keys) for d in diffs), diffs


@pytest.mark.xdist_group(name="tiny-gpt2")
def test_reference_rebuild_reports_mismatches(built, tmp_path):
    import shutil

    from yamlllm_export.export.reference import load_reference

    folder = built("tiny-gpt2", "portable")
    assert weights_sha256(load_reference(folder)) == json.loads((folder / "build.json").read_text())["weights"]["sha256"]

    def copy_with(edit):
        dst = tmp_path / f"copy{len(list(tmp_path.iterdir()))}"
        shutil.copytree(folder, dst)
        edit(dst)
        return dst

    def set_info(dst, **weights):
        info = json.loads((dst / "build.json").read_text())
        info["weights"].update(weights)
        (dst / "build.json").write_text(json.dumps(info))

    cases = {
        "torch 1.0.0": copy_with(lambda d: set_info(d, torch_version="1.0.0")),
        "sha256 mismatch": copy_with(lambda d: set_info(d, seed=1)),
        "cannot be rebuilt": copy_with(lambda d: set_info(d, kind="model")),
        "model.yaml is missing": copy_with(lambda d: (d / "model.yaml").unlink()),
    }
    for expected, dst in cases.items():
        with pytest.raises(BuildError, match=expected):
            load_reference(dst)
