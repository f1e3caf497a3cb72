"""A seeded build streams its weights (export/streamed.py, model/seeded.py): the same bytes as the model
``build_model`` makes, without ever building it, and a RAM estimate that needs only the largest weight."""

from __future__ import annotations

import json

import onnx
import pytest
import torch
from onnx import numpy_helper

from tests.conftest import MODELS
from yamlllm_export import export_onnx, load_spec
from yamlllm_export.errors import BuildError
from yamlllm_export.export import resources
from yamlllm_export.model import builders
from yamlllm_export.model.builders import build_model
from yamlllm_export.model.seeded import SeededWeights
from yamlllm_export.spec.sizes import DTYPE_BYTES


def _spec(stem: str, init: str | None = None, padding_idx: int | None = None, sinks: bool = False):
    d = load_spec(MODELS / f"{stem}.yaml").to_dict()
    if sinks:  # GPT-OSS's parameters: per-head sinks (zeroed after the draws), a router bias (drawn)
        d["layer"]["attention"]["sinks"] = True
        d["layer"]["ffn"]["moe"]["router_bias"] = True
    if init is not None:
        d["initialization"] = {"type": init}
    if padding_idx is not None:
        d["embedding"]["padding_idx"] = padding_idx
    return load_spec(d)


@pytest.mark.parametrize(
    ("stem", "init", "padding_idx", "dtype", "sinks"),
    [
        ("tiny-llama", None, None, "float32", False),  # gpt2 scheme
        ("tiny-llama", "default", 3, "bfloat16", False),  # reset_parameters per module, padding row zeroed
        ("tiny-gpt2", "default", None, "float16", False),  # tied embedding: lm_head's reset is the last to write it
        ("tiny-mixtral", None, None, "float16", False),  # stacked experts, one matrix at a time
        ("tiny-mixtral", "default", None, "float32", True),  # sinks and router bias
        ("tiny-postnorm-mqa", None, 0, "float32", False),  # xavier_normal
        ("tiny-mla", "kaiming_uniform", None, "float32", False),
    ],
    ids=["gpt2", "default-padding-bf16", "default-tied-fp16", "experts-fp16", "sinks-router-bias", "xavier-padding", "kaiming-mla"],
)
def test_seeded_weights_equal_build_model(stem, init, padding_idx, dtype, sinks):
    spec = _spec(stem, init, padding_idx, sinks)
    model = build_model(spec, seed=7, dtype=dtype)
    weights = SeededWeights(spec, seed=7, dtype=dtype)
    state = model.state_dict()
    assert sorted(weights.names()) == sorted(state)
    differ = [n for n in state if not torch.equal(weights.value(n), state[n])]
    assert differ == [], f"regenerated weights differ: {differ[:3]}"
    buffers = dict(model.named_buffers(remove_duplicate=False))
    assert sorted(weights.buffers) == sorted(buffers)
    assert all(torch.equal(weights.buffers[n], b) for n, b in buffers.items())


def _initializers(folder) -> dict[str, tuple[tuple[int, ...], int, bytes]]:
    model = onnx.load(str(folder / "model.onnx"))
    return {i.name: (tuple(i.dims), i.data_type, numpy_helper.to_array(i).tobytes()) for i in model.graph.initializer}


@pytest.mark.parametrize(
    ("stem", "target"),
    [
        pytest.param("tiny-llama", "ort", marks=pytest.mark.xdist_group(name="tiny-llama")),
        pytest.param("tiny-gpt2", "portable", marks=pytest.mark.xdist_group(name="tiny-gpt2")),
    ],
    ids=["llama-ort-fused", "gpt2-portable-tied"],
)
def test_streamed_build_equals_the_in_memory_export(stem, target, built, reference, tmp_path):
    """The seed-0 build (streamed) against an export of the built torch model: every initializer's bytes,
    the nodes and the recorded weights hash are the same."""
    streamed = built(stem, target)
    in_memory = export_onnx(reference(stem), tmp_path / "mem", spec=load_spec(MODELS / f"{stem}.yaml"), target=target)
    assert _initializers(streamed) == _initializers(in_memory)
    nodes = [
        [(n.op_type, n.domain) for n in onnx.load(str(f / "model.onnx"), load_external_data=False).graph.node]
        for f in (streamed, in_memory)
    ]
    assert nodes[0] == nodes[1]
    info = [json.loads((f / "build.json").read_text())["weights"] for f in (streamed, in_memory)]
    assert info[0]["kind"] == "seed" and info[0]["sha256"] == info[1]["sha256"]


def test_seeded_build_never_builds_the_torch_model(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("build_model called: the build held the whole model")

    monkeypatch.setattr(builders, "build_model", refuse)
    out = export_onnx(MODELS / "tiny-postnorm-mqa.yaml", tmp_path / "out", target="portable", dtype="float16")
    onnx.checker.check_model(str(out / "model.onnx"), full_check=True)


def test_streamed_ram_estimate_needs_only_the_largest_weight():
    spec = load_spec(MODELS / "llama-style.yaml")  # 6.7 B: 13.5 GB of fp16 weights
    n, size = spec.parameter_count(), DTYPE_BYTES["float16"]
    largest = resources.largest_weight(spec)
    assert largest == 32000 * 4096  # the embedding and the LM head
    assert resources.build_ram(n, size, largest, mode="streamed") < 3e9
    assert resources.build_ram(n, size, largest, mode="in_memory") > n * size
    assert resources.build_ram(n, size, largest, mode="streamed") < resources.build_ram(n, size, largest, mode="streamed", quant=True) < 5e9


def test_quantized_build_too_big_for_ram_is_refused_with_both_numbers(tmp_path, monkeypatch):
    """--quant quantizes one weight at a time: a 6.7 B int4 build needs a few GB, refused below that up front."""
    from yamlllm_export.quant.config import quant_config

    monkeypatch.setattr(resources, "available_ram", lambda: 2 * 10**9)
    with pytest.raises(BuildError, match=r"needs about 3\.2 GB of RAM \(13\.5 GB of weights\) but 2\.0 GB is available"):
        export_onnx(
            MODELS / "llama-style.yaml", tmp_path / "out", dtype="float16", quant=quant_config("int4", dtype="float16", target="ort")
        )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("target", "dtype"), [("ort", "float16"), ("portable", "float32")])
def test_quantized_seeded_build_never_builds_the_torch_model(tmp_path, monkeypatch, target, dtype):
    """--quant streams too: the weights come from SeededWeights, one at a time, quantized one at a time."""
    from yamlllm_export.quant.config import quant_config

    def refuse(*args, **kwargs):
        raise AssertionError("build_model called: the build held the whole model")

    monkeypatch.setattr(builders, "build_model", refuse)
    scheme = "int4" if target == "ort" else "int8"
    out = export_onnx(
        MODELS / "tiny-gpt2.yaml",
        tmp_path / "out",
        target=target,
        dtype=dtype,
        quant=quant_config(scheme, dtype=dtype, target=target),
    )
    info = json.loads((out / "build.json").read_text())
    assert info["quantization"]["matmuls"]["quantized"] > 0 and info["weights"]["kind"] == "seed"
    onnx.checker.check_model(str(out / "model.onnx"), full_check=True)
