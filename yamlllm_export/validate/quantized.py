"""``validate`` on a quantized folder (build.json has ``quantization``): two separate questions.

export error   the graph vs the PyTorch model carrying the SAME dequantized weights, re-made from the float
               weights with build.json's recipe (quant/requantize.py; never read from the graph, so an altered
               file cannot vouch for itself), through the usual prefill / decode / left-padding checks, with a
               tolerance per MatMulNBits accuracy level: the kernels differ from the reference only by how they
               compute, never by which weights they use
weights        the same graph with every MatMulNBits computing in fp32 (accuracy level 1), prefill + one decode
               step, vs the same reference at 1e-4: at level 4 the int8 activations add ~1e-2 of noise, enough to
               hide a scale 25 % off in an early layer of a random tiny model; in fp32 a wrong scale, zero point or
               weight shows (measured: 2e-7 when right, ~1e-3 with one scale tensor × 1.25)
quality        the graph vs the float PyTorch model on a fixed English text (the folder's tokenizer, or its UTF-8
               bytes as ids when it has none): mean per-token KL divergence, top-1 agreement, perplexity of both

Export-error tolerances, relative L2 of the logits ‖Δ‖/‖ref‖ (docs/quantization.md has the measurements):
accuracy level 0/1 (fp32 compute) 1e-4; 2/3 (fp16/bf16 compute) 1e-2; 4 (int8 activations, quantized per block
of K) 8e-2 and ≥ 85 % of greedy tokens: measured 6e-3 to 2.3e-2 over the tiny models (MoE routing flips make
tiny-mixtral the worst) and 5.1e-2 / 89 % on SmolLM2-135M's random-token prompts (real weights have activation
outliers that int8 rounding feels). Level 4's noise is the kernel's, not the export's: the ``weights`` row is the
tight export-error check (measured 4e-6 on SmolLM2).
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from yamlllm_export.quant.dequant import load_dequantized
from yamlllm_export.quant.requantize import recipe_weights
from yamlllm_export.runtime.io_contract import IOContract
from yamlllm_export.runtime.stepper import GraphStepper
from yamlllm_export.validate.parity import HALF_REL_L2, Tolerance, padded_batch, trace
from yamlllm_export.validate.quality import mean_kl, perplexity, top1_agreement
from yamlllm_export.validate.report import FAIL, PASS, CheckResult

TEXT = Path(__file__).with_name("english.txt")  # the fixed English text of the quality row and the SmolLM2 tests
MAX_TEXT_TOKENS = 512
# accuracy_level → max ‖Δ‖/‖ref‖ of the logits against the dequantized-weight reference
REL_L2 = {0: 1e-4, 1: 1e-4, 2: 1e-2, 3: 1e-2, 4: 8e-2}
# share of decided greedy tokens that must agree with the dequantized-weight reference
AGREEMENT = {0: 1.0, 1: 1.0, 2: 0.99, 3: 0.99, 4: 0.85}
# quality: max mean KL(float ‖ quantized) in nats per token on the text; generous bounds that catch a broken
# recipe (a wrong head, an unquantized-then-dropped weight), not the recipe's cost, which the report states
MAX_KL = {"int8": 0.05, "int4": 0.5}
QUALITY, WEIGHTS = "quality", "weights"
# the weights row's bound per build dtype: fp32 rounding; fp16 activations (measured 5e-4 on tiny-llama)
WEIGHTS_REL_L2 = {"float32": REL_L2[1], "float16": 2e-3}


def export_tolerance(quant: dict, dtype: str) -> Tolerance:
    """The accuracy level's bound, or the half-precision build's where that is looser."""
    level = int(quant.get("accuracy_level", 4))
    if dtype == "float32":
        return Tolerance("rel_l2", REL_L2[level], AGREEMENT[level])
    half = Tolerance.for_dtype(dtype)
    return Tolerance("rel_l2", max(REL_L2[level], HALF_REL_L2), min(AGREEMENT[level], half.min_agreement))


def _fp32_compute_copy(folder: Path, tmp: Path) -> Path:
    """``folder``'s graph with every MatMulNBits at accuracy level 1, saved in ``tmp``."""
    model = onnx.load(str(folder / "model.onnx"))
    for node in model.graph.node:
        if node.op_type == "MatMulNBits":
            for a in node.attribute:
                if a.name == "accuracy_level":
                    a.i = 1
    onnx.save_model(model, str(tmp / "model.onnx"), save_as_external_data=True, location="model.onnx.data")
    return tmp


@torch.no_grad()
def weights_row(folder: Path, model: torch.nn.Module, contract: IOContract, lengths: list[int], seed: int, dtype: str) -> CheckResult:
    """The graph computing in fp32 vs the dequantized-weight reference: exact up to fp32 rounding (float16
    builds: up to their activations' rounding)."""
    tol = Tolerance("rel_l2", WEIGHTS_REL_L2[dtype], 1.0)
    with tempfile.TemporaryDirectory(prefix="yamlllm-quant-") as tmp:
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.add_session_config_entry("session.qdq_matmulnbits_accuracy_level", "1")  # DequantizeLinear → MatMul graphs
        session = ort.InferenceSession(str(_fp32_compute_copy(folder, Path(tmp)) / "model.onnx"), opts, providers=["CPUExecutionProvider"])
        ids, mask = padded_batch(lengths, contract.vocab_size, "left", np.random.default_rng(seed))
        steps = trace(model, GraphStepper.for_session(session, contract), ids, mask, 1)
    value = max(tol.measure(s.ref, s.got, s.valid) for s in steps)
    measured = f"{tol.label()} {value:.2e}" if np.isfinite(value) else "NaN/inf in output"
    detail = "MatMulNBits at accuracy level 1 (fp32), prefill + 1 decode step"
    return CheckResult(WEIGHTS, "cpu", PASS if tol.ok(value, 0) else FAIL, measured, tol.describe(0), value, tol.limit(0), detail)


def dequantized_reference(quant: dict, model: torch.nn.Module, target: str, dtype: str) -> torch.nn.Module:
    """A copy of the float reference carrying the weights the recipe makes of its float weights (not the
    graph's: quant/requantize.py)."""
    deq = recipe_weights(model, quant, target, dtype)
    return load_dequantized(copy.deepcopy(model), quant["weights"], deq, table_shared=bool(quant.get("embedding_quantized")))


def text_tokens(folder: Path, vocab: int, max_len: int) -> tuple[np.ndarray, str]:
    """(token ids (1, S), how they were made) for the fixed English text."""
    text = TEXT.read_text()
    if (folder / "tokenizer.json").is_file():
        from yamlllm_export.runtime.tokenizer import load_tokenizer

        ids, how = load_tokenizer(folder).encode(text).ids, "tokenizer.json"
    else:
        ids, how = [b % vocab for b in text.encode()], "UTF-8 bytes as ids (no tokenizer.json)"
    ids = ids[: min(MAX_TEXT_TOKENS, max_len)]
    return np.asarray(ids, dtype=np.int64)[None], f"{len(ids)} tokens of {TEXT.name}, {how}"


@torch.no_grad()
def quality_rows(
    folder: Path, quant: dict, float_model: torch.nn.Module, stepper: GraphStepper, contract: IOContract, max_len: int
) -> list[CheckResult]:
    """KL, top-1 agreement and both perplexities of the graph against the float model on the text (one prefill)."""
    ids, how = text_tokens(folder, contract.vocab_size, max_len)
    mask = np.ones_like(ids)
    ref, _ = float_model(torch.from_numpy(ids), torch.from_numpy(mask), None, None)
    ref = ref.float().numpy()[0]
    got, _ = stepper.step(ids, mask, stepper.empty_past(1))
    got = got[0]
    kl, agree = mean_kl(ref, got), top1_agreement(ref, got)
    ppl_f, ppl_q = perplexity(ref, ids[0]), perplexity(got, ids[0])
    limit = MAX_KL[quant["scheme"]]
    ok = bool(np.isfinite(kl)) and kl <= limit
    measured = f"KL {kl:.4f}, top-1 {agree:.1%}, ppl {ppl_f:.2f} → {ppl_q:.2f} ({ppl_q / ppl_f - 1:+.1%})"
    return [CheckResult(QUALITY, "cpu", PASS if ok else FAIL, measured, f"mean KL ≤ {limit} nats", kl, limit, how)]
