"""``build --quant``: the typed settings of a weight-only quantized build, checked once at the boundary.

Every refusal names its flag and is raised before any work starts (nothing is written).
"""

from __future__ import annotations

from dataclasses import dataclass

from yamlllm_export.errors import BuildError

BITS = {"int4": 4, "int8": 8}
HEADS = ("int4", "int8", "float")
# onnxruntime.quantization's weight-only algorithms (matmul_nbits_quantizer) that run here. "rtn": its DEFAULT
# algorithm, C++ round-to-nearest with the block's absmax scale (symmetric, like the genai builder); "hqq":
# half-quadratic optimisation of scale and zero point (asymmetric, float zero points; 4 bits on the CPU). Not
# offered: its neural-compressor "RTN" / "k_quant" (the code ORT 1.31 bundles fails on our graphs: a KeyError on
# the graph inputs, a reshape error for K < 128), and "GPTQ" needs calibration batches the build does not have.
ALGOS = ("rtn", "hqq")
# rtn by default: hqq's quality is far better on SmolLM2 (docs/quantization.md), but its float zero points have no
# prepacked CPU kernel in ORT 1.31.1: measured decode 0.9 tok/s against rtn's 9.7 (fp32: 3.7), same run
DEFAULT_ALGO = "rtn"
# MatMulNBits accuracy_level: the precision its kernel computes in. 0 = unset (the kernel's choice, fp32 on CPU),
# 1 fp32, 2 fp16, 3 bf16, 4 int8 activations (the fast CPU path; CUDA ignores it and runs fp16/fp32).
ACCURACY_LEVELS = range(5)
DEFAULT_BLOCK = 32
DEFAULT_ACCURACY = 4
FFN_DOWN = ("int8", "int4")
# the FFN down projection at int8 in an int4 build (llama.cpp's Q4_K_M keeps it wider too): on SmolLM2 it takes
# the perplexity cost of rtn int4 from +19 % to +10 % for +10 % of size and no measurable decode speed
DEFAULT_FFN_DOWN = "int8"
DEFAULT_HEAD = "int8"  # measured on SmolLM2 (docs/quantization.md): an int4 head costs most of int4's perplexity


@dataclass(frozen=True)
class QuantConfig:
    """A weight-only quantization recipe: ``bits`` for every constant-weight MatMul, ``head_bits`` for the LM head
    (None: kept float), per-``block_size`` scales along K, symmetric (no zero points; hqq adds them)."""

    scheme: str  # int4 | int8
    block_size: int = DEFAULT_BLOCK
    accuracy_level: int = DEFAULT_ACCURACY
    algo: str = DEFAULT_ALGO
    lm_head: str = DEFAULT_HEAD
    ffn_down: str = DEFAULT_FFN_DOWN

    @property
    def bits(self) -> int:
        return BITS[self.scheme]

    @property
    def down_bits(self) -> int:
        """The FFN down projection's bits: never more than the scheme's."""
        return max(self.bits, BITS[self.ffn_down]) if self.bits == 4 else self.bits

    @property
    def head_bits(self) -> int | None:
        return BITS.get(self.lm_head)

    def to_dict(self) -> dict[str, object]:
        return {
            "scheme": self.scheme,
            "block_size": self.block_size,
            "accuracy_level": self.accuracy_level,
            "algo": self.algo,
            "lm_head": self.lm_head,
            "ffn_down": f"int{self.down_bits}",
            "symmetric": self.algo != "hqq",
        }


def quant_config(
    scheme: str | None,
    *,
    block_size: int | None = None,
    accuracy_level: int | None = None,
    algo: str | None = None,
    lm_head: str | None = None,
    ffn_down: str | None = None,
    dtype: str = "float32",
    target: str = "ort",
) -> QuantConfig | None:
    """The checked recipe, or None for a float build (then no other quantization flag may be given)."""
    if scheme is None:
        given = [
            f
            for f, v in (
                ("--block-size", block_size),
                ("--accuracy-level", accuracy_level),
                ("--quant-algo", algo),
                ("--lm-head", lm_head),
                ("--ffn-down", ffn_down),
            )
            if v is not None
        ]
        if given:
            raise BuildError(f"{given[0]}: only applies with --quant int4|int8")
        return None
    if scheme not in BITS:
        raise BuildError(f"--quant: unknown scheme {scheme!r} (choose from {', '.join(BITS)})")
    cfg = QuantConfig(
        scheme,
        DEFAULT_BLOCK if block_size is None else block_size,
        DEFAULT_ACCURACY if accuracy_level is None else accuracy_level,
        algo or DEFAULT_ALGO,
        lm_head or DEFAULT_HEAD,
        ffn_down or DEFAULT_FFN_DOWN,
    )
    b = cfg.block_size
    if b < 16 or b & (b - 1):
        raise BuildError(f"--block-size: {b} is not a power of two ≥ 16")
    if cfg.accuracy_level not in ACCURACY_LEVELS:
        raise BuildError(f"--accuracy-level: {cfg.accuracy_level} is out of range (0–4)")
    if cfg.algo not in ALGOS:
        raise BuildError(f"--quant-algo: unknown algorithm {cfg.algo!r} (choose from {', '.join(ALGOS)})")
    if cfg.lm_head not in HEADS:
        raise BuildError(f"--lm-head: unknown choice {cfg.lm_head!r} (choose from {', '.join(HEADS)})")
    if cfg.ffn_down not in FFN_DOWN:
        raise BuildError(f"--ffn-down: unknown choice {cfg.ffn_down!r} (choose from {', '.join(FFN_DOWN)})")
    if cfg.algo == "hqq" and cfg.bits == 8:
        raise BuildError("--quant int8 --quant-algo hqq: HQQ writes float zero points, which ORT's CPU MatMulNBits runs at 4 bits only")
    if dtype == "bfloat16":
        raise BuildError("--quant with --dtype bfloat16: ORT has no bfloat16 MatMulNBits kernel on the CPU; use float32 or float16")
    if target == "portable" and 4 in (cfg.bits, cfg.head_bits):
        flag = "--quant int4" if cfg.bits == 4 else "--lm-head int4"
        raise BuildError(
            f"{flag} --target portable: 4-bit DequantizeLinear needs opset 21 (portable is opset 18); use int8 or --target onnx"
        )
    if target != "ort" and cfg.algo != "rtn":
        raise BuildError(f"--quant-algo {cfg.algo}: writes com.microsoft.MatMulNBits only (--target ort); --target {target} uses rtn")
    try:
        from yamlllm_export.quant.ort_import import matmul_nbits_quantizer

        matmul_nbits_quantizer()
    except ImportError as err:
        raise BuildError(
            f"--quant: ORT's weight-only quantizer cannot be imported ({err}); install onnxruntime with its quantization tools"
        ) from None
    return cfg
