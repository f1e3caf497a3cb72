"""Bad GGUF files: one line naming the file and the key or tensor, exit 2, nothing written."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import gguf
import numpy as np
import pytest
from click.testing import CliRunner

from yamlllm_export.cli import main


def tiny(
    path: Path,
    *,
    arch: str = "llama",
    blocks: int = 1,
    drop: str = "",
    heads: int = 2,
    raw: str = "",
    eps: float = 1e-5,
    theta: float | None = None,
    poison: tuple[str, float] | None = None,
) -> Path:
    """A one-layer LLaMA-style GGUF (d 64, 2 heads, vocab 32) with F32 tensors; ``raw``: ffn_up stored as
    that type instead (random bytes; ``Q8_0-nan-scale``: quantized, its row 1's second block scale a NaN);
    ``poison``: (tensor, value) written at that tensor's element [1, 2]."""
    rng = np.random.default_rng(0)
    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(blocks)
    w.add_context_length(32)
    w.add_embedding_length(64)
    w.add_feed_forward_length(96)
    w.add_head_count(heads)
    w.add_layer_norm_rms_eps(eps)
    if theta is not None:
        w.add_rope_freq_base(theta)
    shapes = {"token_embd.weight": (32, 64), "output_norm.weight": (64,), "blk.0.attn_norm.weight": (64,), "blk.0.ffn_norm.weight": (64,)}
    shapes.update({f"blk.0.attn_{p}.weight": (64, 64) for p in "qkv"} | {"blk.0.attn_output.weight": (64, 64)})
    shapes.update({"blk.0.ffn_gate.weight": (96, 64), "blk.0.ffn_up.weight": (96, 64), "blk.0.ffn_down.weight": (64, 96)})
    for name, shape in shapes.items():
        if raw == "Q8_0-nan-scale" and name == "blk.0.ffn_up.weight":
            q8 = gguf.GGMLQuantizationType.Q8_0
            blocks = gguf.quants.quantize(rng.standard_normal(shape).astype(np.float32), q8)  # (96, 2 x 34 bytes)
            blocks[1, 34:36] = np.frombuffer(np.float16("nan").tobytes(), dtype=np.uint8)  # a block: fp16 scale, 32 int8
            w.add_tensor(name, blocks, raw_dtype=q8)
        elif raw and name == "blk.0.ffn_up.weight":
            qtype = gguf.GGMLQuantizationType[raw]
            w.add_tensor(name, rng.integers(0, 256, gguf.quants.quant_shape_to_byte_shape(shape, qtype), dtype=np.uint8), raw_dtype=qtype)
        elif name != drop:
            values = rng.standard_normal(shape).astype(np.float32)
            if poison and poison[0] == name:
                values[1, 2] = poison[1]
            w.add_tensor(name, values)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def truncated(p: Path) -> Path:
    data = tiny(p).read_bytes()
    p.write_bytes(data[: len(data) - 4000])
    return p


def wrong_magic(p: Path) -> Path:
    data = tiny(p).read_bytes()
    p.write_bytes(b"GGML" + data[4:])
    return p


CASES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "truncated": (truncated, "truncated or corrupt"),
    "wrong-magic": (wrong_magic, "not a GGUF file"),
    "unknown-arch": (lambda p: tiny(p, arch="mamba"), "'general.architecture' = 'mamba' is not supported"),
    "missing-tensor": (lambda p: tiny(p, drop="blk.0.ffn_up.weight"), "missing: blocks.0.ffn.up.weight"),
    "block-count": (lambda p: tiny(p, blocks=2), "'llama.block_count' = 2"),
    "head-count": (lambda p: tiny(p, heads=3), "'llama.attention.head_count'"),
    "quant-type": (lambda p: tiny(p, raw="Q8_1"), "'blk.0.ffn_up.weight' is stored as Q8_1, which gguf cannot dequantize"),
    "nan-eps": (lambda p: tiny(p, eps=float("nan")), "metadata key 'llama.attention.layer_norm_rms_epsilon' = nan is not a finite number"),
    "inf-rope-base": (lambda p: tiny(p, theta=float("inf")), "metadata key 'llama.rope.freq_base' = inf is not a finite number"),
    "nan-tensor": (
        lambda p: tiny(p, poison=("blk.0.ffn_down.weight", float("nan"))),
        "tensor 'blk.0.ffn_down.weight' holds 1 NaN and 0 infinite values (first at index [1, 2])",
    ),
    "nan-block-scale": (
        lambda p: tiny(p, raw="Q8_0-nan-scale"),
        "tensor 'blk.0.ffn_up.weight' holds 32 NaN and 0 infinite values (first at index [1, 32])",
    ),
    "inf-tensor": (
        lambda p: tiny(p, poison=("token_embd.weight", float("-inf"))),
        "tensor 'token_embd.weight' holds 0 NaN and 1 infinite values (first at index [1, 2])",
    ),
}
BUILD_TIME = {"missing-tensor", "nan-tensor", "inf-tensor", "nan-block-scale"}  # the metadata is fine: the build finds the problem


@pytest.mark.parametrize("case", sorted(CASES), ids=str)
def test_bad_gguf_is_refused_in_one_line(case: str, tmp_path: Path) -> None:
    make, expected = CASES[case]
    path = make(tmp_path / "bad.gguf")
    spec = tmp_path / "spec.yaml"
    runner = CliRunner()
    if case in BUILD_TIME:
        assert runner.invoke(main, ["import-gguf", str(path), "-o", str(spec)]).exit_code == 0
        result = runner.invoke(main, ["build", str(spec), "--weights", str(path), "-o", str(tmp_path / "out")])
        assert not (tmp_path / "out").exists()
    else:
        result = runner.invoke(main, ["import-gguf", str(path), "-o", str(spec)])
        assert not spec.exists()
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and expected in lines[0], result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["bad.gguf"] + (["spec.yaml"] if case in BUILD_TIME else []))
