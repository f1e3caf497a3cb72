"""llama.cpp blocks → ``com.microsoft.MatMulNBits`` initializers without re-quantizing.

MatMulNBits (block 32) stores per 32 weights the codes c, a float scale s and a zero point z, and ONNX
Runtime's CPU kernel (accuracy levels 0/1) computes each weight as ``c·s + (-(z·s))`` in float32 (measured:
tests/test_gguf_matmul_nbits.py runs it on an identity input). llama.cpp's types map onto that exactly:

- Q4_0  ``(q - 8)·d``        → 4 bits, s = d, z = the default 8
- Q8_0  ``q·d`` (q int8)     → 8 bits, c = q + 128, s = d, z = the default 128
- Q4_1  ``q·d + m``          → 4 bits, s = d, float z with fl(z·d) = -m
- Q4_K  ``q·(d·sc) - dmin·mn`` per 32-weight sub-block → 4 bits, s = d·sc, float z with fl(z·s) = dmin·mn

c·s is exact in float32 for every type (at most 21 significant bits), so the weight equals gguf's
dequantization bit for bit whenever z·s rounds to the offset exactly. ``pack`` looks for such a z in every
block (the float32 neighbours of offset/s). In a real Q4_1 file about 1 block in 10 has none (consecutive
z·s products step over it), so a tensor with such a block keeps its codes and scales with zero points 0 and
has the offsets subtracted beside the kernel: y = MatMulNBits(x) - blocksum(x) @ offsetsᵀ, a MatMul 32×
smaller. Each weight (identity input) is still exactly gguf's; ``pack`` checks it against gguf's values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BLOCK = 32
EXACT_TYPES = ("Q4_0", "Q4_1", "Q8_0", "Q4_K")


@dataclass(frozen=True)
class NBits:
    """MatMulNBits inputs for a weight of ``rows`` outputs × ``cols`` inputs (a Linear's (out, in))."""

    bits: int
    codes: np.ndarray  # uint8 (rows, cols / 32, 32 · bits / 8): two 4-bit codes a byte, the even one low
    scales: np.ndarray  # float32 (rows, cols / 32)
    zero_points: np.ndarray | None  # float32 (rows, cols / 32); None: MatMulNBits' default 2^(bits-1)
    offsets: np.ndarray | None = None  # float32 (rows, cols / 32): subtracted as (block sums of x) @ offsetsᵀ

    def dequantized(self) -> np.ndarray:
        """What ONNX Runtime's kernel computes from these inputs (float32, (rows, cols))."""
        c = self.unpacked().astype(np.float32)
        z = self.zero_points if self.zero_points is not None else np.full(self.scales.shape, 2.0 ** (self.bits - 1), np.float32)
        offset = -(z * self.scales) if self.offsets is None else -self.offsets
        return (c * self.scales[..., None] + offset[..., None]).reshape(c.shape[0], -1)

    def unpacked(self) -> np.ndarray:
        if self.bits == 8:
            return self.codes
        low, high = self.codes & 0x0F, self.codes >> 4
        return np.stack([low, high], axis=-1).reshape(*self.codes.shape[:2], BLOCK)


class NotExact(ValueError):
    """The blocks have no exact MatMulNBits form; the message says why."""


def pack(qtype: str, blocks: np.ndarray, cols: int, reference: np.ndarray) -> NBits:
    """``blocks``: one weight's stored rows, uint8 (rows, bytes per row), as GGUF holds them; ``reference``:
    gguf's dequantization of them, which the result must reproduce bit for bit (else ``NotExact``)."""
    rows = blocks.shape[0]
    if qtype not in _UNPACK:
        raise NotExact(f"{qtype} has no exact MatMulNBits form (kept: {', '.join(EXACT_TYPES)})")
    codes, scales, offsets, bits = _UNPACK[qtype](np.ascontiguousarray(blocks), rows, cols)
    packed = codes if bits == 8 else (codes[..., 0::2] | (codes[..., 1::2] << 4))
    packed = np.ascontiguousarray(packed.astype(np.uint8))
    if offsets is None:
        out = NBits(bits, packed, scales, None)
    else:
        z = _zero_points(scales, offsets)
        # a block whose offset no z·s rounds to: zero points 0 and the offsets subtracted beside the kernel
        out = NBits(bits, packed, scales, z) if z is not None else NBits(bits, packed, scales, np.zeros_like(scales), offsets)
    if not np.array_equal(out.dequantized(), reference):
        raise NotExact(f"{qtype}: the MatMulNBits form differs from gguf's dequantization")
    return out


def _zero_points(s: np.ndarray, offsets: np.ndarray) -> np.ndarray | None:
    """z with fl(z·s) == offset in every block, among the float32 neighbours of offset/s; None if some block has none."""
    with np.errstate(divide="ignore", invalid="ignore"):
        guess = np.where(s != 0, offsets.astype(np.float64) / s, 0.0).astype(np.float32)
    found = np.full(s.shape, np.nan, np.float32)
    for step in (0, 1, -1, 2, -2):
        trial = guess
        for _ in range(abs(step)):
            trial = np.nextafter(trial, np.float32(np.inf if step > 0 else -np.inf))
        hit = np.isnan(found) & ((trial * s) == offsets)
        found[hit] = trial[hit]
    return None if np.isnan(found).any() else found


def _f16(b: np.ndarray) -> np.ndarray:
    return b.view(np.float16).astype(np.float32)[..., 0]


def _nibbles(qs: np.ndarray) -> np.ndarray:
    """llama.cpp's 32-weight nibble layout: weight j in byte j's low nibble, weight 16 + j in its high one."""
    return np.concatenate([qs & 0x0F, qs >> 4], axis=-1)


def _q4_0(blocks: np.ndarray, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray, None, int]:
    b = blocks.reshape(rows, cols // 32, 18)
    return _nibbles(b[..., 2:]), _f16(b[..., 0:2]), None, 4


def _q4_1(blocks: np.ndarray, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    b = blocks.reshape(rows, cols // 32, 20)
    return _nibbles(b[..., 4:]), _f16(b[..., 0:2]), -_f16(b[..., 2:4]), 4


def _q8_0(blocks: np.ndarray, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray, None, int]:
    b = blocks.reshape(rows, cols // 32, 34)
    codes = (b[..., 2:].view(np.int8).astype(np.int16) + 128).astype(np.uint8)
    return codes, _f16(b[..., 0:2]), None, 8


def _q4_k(blocks: np.ndarray, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    from gguf.quants import Q4_K

    b = blocks.reshape(-1, 144)  # super-blocks of 256 weights: d, dmin, 12 bytes of 6-bit scales and mins, 128 bytes
    d, dmin = _f16(b[:, 0:2])[:, None], _f16(b[:, 2:4])[:, None]
    sc, mn = Q4_K.get_scale_min(b[:, 4:16].copy())
    qs = b[:, 16:].reshape(-1, 4, 1, 32) >> np.array([0, 4], np.uint8).reshape(1, 1, 2, 1)  # sub-blocks 2i (low), 2i+1 (high)
    codes = (qs & 0x0F).reshape(rows, cols // 32, 32)
    scales = (d * sc.astype(np.float32)).reshape(rows, cols // 32)
    offsets = (dmin * mn.astype(np.float32)).reshape(rows, cols // 32)
    return codes, scales, offsets, 4


_UNPACK = {"Q4_0": _q4_0, "Q4_1": _q4_1, "Q8_0": _q8_0, "Q4_K": _q4_k}
