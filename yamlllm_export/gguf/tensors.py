"""A GGUF file's tensors → our state dict. Every one of our tensors is a row selection of one stored
tensor (all rows; llama.cpp's RoPE permutation undone; one part of a fused [q; k; v]), so the same
selection applies to dequantized values and to quantized blocks alike: ``--keep-quantized`` reuses it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from yamlllm_export.errors import BuildError
from yamlllm_export.gguf.archs import arch_for
from yamlllm_export.gguf.reader import GGUFFile, GGUFTensor, gguf_module, read_gguf
from yamlllm_export.weights.checkpoint import check_finite, listed, load_weights

FLOAT_TYPES = {"F32", "F16", "BF16"}


@dataclass(frozen=True)
class Piece:
    """Our tensor = rows ``index`` of the stored tensor ``source`` (every row when None), plus ``offset``."""

    source: GGUFTensor
    index: np.ndarray | None = None
    offset: float = 0.0


@dataclass(frozen=True)
class Heads:
    num_heads: int
    num_kv_heads: int
    head_dim: int

    @classmethod
    def of(cls, f: GGUFFile) -> Heads:
        nh = int(f.require(".attention.head_count"))
        nkv = int(f.get(".attention.head_count_kv", nh))
        return cls(nh, nkv, int(f.get(".attention.key_length", int(f.require(".embedding_length")) // nh)))


def unpermute(rows: int, heads: int) -> np.ndarray:
    """Row order that undoes ``convert_hf_to_gguf.py``'s LLaMA q/k permutation: within each head, llama.cpp
    interleaves the two rotary halves (rows i and i + hd/2 become neighbours)."""
    return np.arange(rows).reshape(heads, rows // heads // 2, 2).swapaxes(1, 2).reshape(-1)


def pieces(f: GGUFFile) -> dict[str, Piece]:
    """our tensor name → its piece of the file. Raises ``BuildError`` for a tensor no rule knows, or a fused
    tensor whose rows do not match the metadata's head counts."""
    arch = arch_for(f)
    heads = Heads.of(f)
    rules = [(re.compile(p), target, how) for p, target, how in arch.rules(f)]
    out: dict[str, Piece] = {}
    unknown = []
    for name, t in f.tensors.items():
        offset = -1.0 if arch.norm_plus_one and name.endswith("norm.weight") else 0.0
        for pattern, target, how in rules:
            m = pattern.fullmatch(name)
            if m is None:
                continue
            ours = m.expand(target)
            if how == "config":  # read into the config (Phi-3's LongRoPE factors), not a weight
                break
            if how == "all":
                out[ours] = Piece(t, None, offset)
            elif how == "unpermute":
                n = heads.num_heads if m.group(2) == "q" else heads.num_kv_heads
                out[ours] = Piece(t, unpermute(t.rows if t.data.ndim > 1 else t.cols, n))
            elif how == "gate_up":  # Phi-3's fused [gate; up]
                rows = t.rows if t.data.ndim > 1 else t.cols
                half = rows // 2
                out[ours.format(p="gate")], out[ours.format(p="up")] = Piece(t, np.arange(half)), Piece(t, np.arange(half, rows))
            else:  # a fused [q; k; v]
                q, kv = heads.num_heads * heads.head_dim, heads.num_kv_heads * heads.head_dim
                rows = t.rows if t.data.ndim > 1 else t.cols
                if rows != q + 2 * kv:
                    raise BuildError(
                        f"{f.path}: tensor '{name}' has {rows} rows; '{f.arch}.attention.head_count' {heads.num_heads} and "
                        f"'head_count_kv' {heads.num_kv_heads} of {heads.head_dim} need {q + 2 * kv}"
                    )
                for part, (start, stop) in zip("qkv", ((0, q), (q, q + kv), (q + kv, q + 2 * kv)), strict=True):
                    out[ours.format(p=part)] = Piece(t, np.arange(start, stop))
            break
        else:
            unknown.append(name)
    if unknown:
        raise BuildError(f"{f.path}: tensors the GGUF {f.arch} mapping does not know: {listed('unknown', unknown)}")
    return out


def check_types(f: GGUFFile) -> None:
    """Refuse a tensor stored in a type gguf cannot dequantize (Q8_1, Q8_K, integer types), before any work."""
    gguf = gguf_module()
    bad = [t for t in f.tensors.values() if t.qtype not in FLOAT_TYPES and not hasattr(gguf.quants, t.qtype)]
    if bad:
        raise BuildError(
            f"{f.path}: tensor '{bad[0].name}' is stored as {bad[0].qtype}, which gguf cannot dequantize"
            f" ({len(bad)} tensor(s); GGUF's usual weight types are supported: F32, F16, BF16, Q4_0 ... Q8_0, K-quants, IQ*)"
        )


def dequantized(t: GGUFTensor, source: Path) -> np.ndarray:
    """The stored tensor as float32, with llama.cpp's own dequantizer (exact for float types); NaN or ±inf
    (in a float tensor or a block's scale) is refused naming ``source`` and the tensor."""
    if t.qtype in ("F32", "F16"):
        values = np.asarray(t.data, dtype=np.float32).reshape(t.shape)
    else:
        gguf = gguf_module()
        try:
            values = gguf.quants.dequantize(np.asarray(t.data), gguf.GGMLQuantizationType[t.qtype])
        except (NotImplementedError, KeyError) as err:
            raise BuildError(f"tensor '{t.name}': quantization type {t.qtype} cannot be dequantized by gguf ({err})") from None
        values = values.astype(np.float32, copy=False).reshape(t.shape)
    with np.errstate(over="ignore", invalid="ignore"):  # NaN / inf make the sum non-finite (checkpoint.check_finite)
        total = values.sum()
    if not np.isfinite(total):  # numpy first: the array may be read-only memory-mapped data, torch would copy it anyway
        check_finite(torch.tensor(values), t.name, source)
    return values


def state_dict(f: GGUFFile, wanted: dict[str, Piece] | None = None) -> dict[str, torch.Tensor]:
    """Our state dict, dequantized to float32 (each stored tensor dequantized once)."""
    cache: dict[str, np.ndarray] = {}
    out: dict[str, torch.Tensor] = {}
    for ours, p in (wanted or pieces(f)).items():
        if p.source.name not in cache:
            cache[p.source.name] = dequantized(p.source, f.path)
        values = cache[p.source.name]
        values = values[p.index] if p.index is not None else values
        if p.offset:
            values = values + np.float32(p.offset)
        out[ours] = torch.from_numpy(np.require(values, requirements=["C", "W"]))  # a writable copy of memory-mapped data
    return out


def load_gguf_weights(model: nn.Module, path: str | Path) -> list[str]:
    """Load the GGUF file's tensors (dequantized) into ``model`` (built from the spec ``import-gguf`` wrote)."""
    f = read_gguf(path)
    check_types(f)
    state = state_dict(f)
    types = sorted({p.source.qtype for p in pieces(f).values()} - FLOAT_TYPES)
    notes = [f"{f.path.name}: {', '.join(types)} blocks dequantized with gguf"] if types else []
    try:
        return notes + load_weights(model, state, str(f.path))
    except BuildError as err:
        raise BuildError(f"{err} (tensor names after mapping GGUF {f.arch} to yamlllm-export's)") from None
