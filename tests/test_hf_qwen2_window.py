"""Qwen2's sliding window without ``layer_types`` in config.json (checkpoints saved before transformers
wrote it): transformers then slides only on layers ≥ ``max_window_layers`` (Qwen2Config.__post_init__),
and so must the import."""

from __future__ import annotations

import json

import pytest

from tests.hf_fixtures import hf_parity, make_hf_model
from yamlllm_export import export_onnx
from yamlllm_export.hf import import_hf
from yamlllm_export.spec import load_spec

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def old_qwen2(tmp_path_factory):  # noqa: ANN001, ANN201
    """The tiny Qwen2 case (window 5 from layer 1 of 2 on), saved without ``layer_types``."""
    folder = tmp_path_factory.mktemp("qwen2-old") / "hf"
    model = make_hf_model("qwen2", folder)
    config = json.loads((folder / "config.json").read_text())
    assert config.pop("layer_types") == ["full_attention", "sliding_attention"]
    (folder / "config.json").write_text(json.dumps(config))
    return model, folder


@pytest.mark.parametrize(("max_window_layers", "windows"), [(1, [None, 5]), (0, [5, 5]), (2, [None, None]), (None, [None, None])])
def test_window_only_from_max_window_layers(old_qwen2, max_window_layers, windows) -> None:  # noqa: ANN001
    _, folder = old_qwen2
    config = json.loads((folder / "config.json").read_text())
    if max_window_layers is None:  # transformers' default, 28
        config.pop("max_window_layers")
    else:
        config["max_window_layers"] = max_window_layers
    (folder / "config.json").write_text(json.dumps(config))
    try:
        spec = load_spec(import_hf(folder)[0])
    finally:
        config["max_window_layers"] = 1
        (folder / "config.json").write_text(json.dumps(config))
    assert [layer.attention.window_size for layer in spec.layer_specs()] == windows


def test_logits_match_transformers(old_qwen2, tmp_path) -> None:  # noqa: ANN001
    model, folder = old_qwen2
    spec, _ = import_hf(folder)
    parity = hf_parity(model, export_onnx(spec, tmp_path / "out", target="ort", weights=folder))
    assert parity.prefill <= 1e-4 and parity.decode <= 1e-4, str(parity)
