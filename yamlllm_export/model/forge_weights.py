"""ReaLLM-Forge's weight options (FORGE.md §7, §8): quantized embedding tables (``quantize_wte`` /
``quantize_wpe``), quantized linear weights (``quantized_linear``), BitNet b1.58 linears
(``bitlinear_1p58``), the learned embedding scale and the shared factorized-embedding projection.

Per-tensor fake quantization (round half to even, as torch.round and ONNX Round do; no epsilon):
    symmetric  s = max|W| / (2^{b−1} − 1);  Ŵ = clamp(round(W/s), −2^{b−1}, 2^{b−1} − 1) · s
    affine     s = (max W − min W) / (2^b − 1);  zp = −round(min W / s) − 2^{b−1};
               Ŵ = (clamp(round(W/s) + zp, −2^{b−1}, 2^{b−1} − 1) − zp) · s
    ternary    s = max(mean|W|, 1e-5);  Ŵ = clamp(round(W/s), −1, 1) · s   (bits ignored)
BitLinear b1.58 (Ma et al. 2024): per token x̂ = clamp(round(x·a), −128, 127)/a with a = 127 / max(max|x|, 1e-5)
over the last axis; Ŵ = clamp(round(W·w), −1, 1)/w with w = 1/max(mean|W|, 1e-5); y = x̂ Ŵᵀ + b.

A quantized weight Ŵ is a function of the stored weight alone, so the modules compute it in ``forward`` from
their parameter (the state dict keeps Forge's raw weights and a checkpoint loads unchanged); the exporter's
constant folding turns it into a baked initializer where its size limit allows. The parameter names are those
of the module replaced (``weight``, ``bias``), so every importer maps them as for a plain layer.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

BITLINEAR_CLAMP = 1e-5  # both the activation absmax and the weight mean|W| (Forge / BitNet's reference)


def fake_quant(w: torch.Tensor, method: str, bits: int) -> torch.Tensor:
    """deq(quant(w)) per tensor, computed in float32, returned in w's dtype (see the module docstring)."""
    x = w.float()
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    if method == "symmetric":
        s = x.abs().max() / hi
        q = torch.clamp(torch.round(x / s), lo, hi) * s
    elif method == "affine":
        s = (x.max() - x.min()) / (2**bits - 1)
        zp = -torch.round(x.min() / s) - 2 ** (bits - 1)
        q = (torch.clamp(torch.round(x / s) + zp, lo, hi) - zp) * s
    else:  # ternary
        s = x.abs().mean().clamp(min=BITLINEAR_CLAMP)
        q = torch.clamp(torch.round(x / s), -1, 1) * s
    return q.to(w.dtype)


class QuantizedEmbedding(nn.Embedding):
    """Rows looked up in deq(quant(table)) of the whole table (Forge's QuantizedEmbedding). A tied LM head keeps
    reading the raw ``weight``, as Forge's does."""

    def __init__(self, num: int, dim: int, *, method: str, bits: int, padding_idx: int | None = None) -> None:
        super().__init__(num, dim, padding_idx=padding_idx)
        self.method, self.bits = method, bits

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, fake_quant(self.weight, self.method, self.bits), self.padding_idx)


class QuantizedLinear(nn.Linear):
    """y = x Ŵᵀ (+ b), Ŵ = deq(quant(W)) per tensor (Forge's quantized_linear in eval)."""

    def __init__(self, in_features: int, out_features: int, *, bias: bool, method: str, bits: int) -> None:
        super().__init__(in_features, out_features, bias=bias)
        self.method, self.bits = method, bits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, fake_quant(self.weight, self.method, self.bits), self.bias)


def bitlinear_activations(x: torch.Tensor) -> torch.Tensor:
    """Per-token 8-bit absmax fake quantization (float32 inside)."""
    xf = x.float()
    a = 127.0 / xf.abs().amax(dim=-1, keepdim=True).clamp(min=BITLINEAR_CLAMP)
    return (torch.round(xf * a).clamp(-128, 127) / a).to(x.dtype)


def bitlinear_weight(w: torch.Tensor) -> torch.Tensor:
    """Ternary weights scaled by mean|W| (float32 inside)."""
    wf = w.float()
    s = 1.0 / wf.abs().mean().clamp(min=BITLINEAR_CLAMP)
    return (torch.round(wf * s).clamp(-1, 1) / s).to(w.dtype)


class BitLinear158(nn.Linear):
    """BitNet b1.58's linear (Forge's bitlinear_1p58): per-token 8-bit activations, ternary weights, then + b."""

    def __init__(self, in_features: int, out_features: int, *, bias: bool) -> None:
        super().__init__(in_features, out_features, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(bitlinear_activations(x), bitlinear_weight(self.weight), self.bias)


def swap_linears(module: nn.Module, make: Callable[[nn.Linear], nn.Linear]) -> None:
    """Replace every plain ``nn.Linear`` below ``module`` by ``make(linear)``, under the same name, so the
    state-dict names do not change. A subclass keeps its own forward, except a down projection of one block
    (``ffn.Down`` with ``blocks == 1`` computes a plain Linear: Forge's c_proj takes the variant too)."""
    for name, child in list(module.named_children()):
        one_block_down = type(child).__name__ == "Down" and getattr(child, "blocks", None) == 1
        if isinstance(child, nn.Linear) and (type(child) is nn.Linear or one_block_down):
            setattr(module, name, make(child))
        else:
            swap_linears(child, make)


class LearnedScale(nn.Module):
    """x · s with s a learned scalar ``weight`` (1,) (Forge's use_embedding_scale, starting at sqrt(C))."""

    def __init__(self, initial: float) -> None:
        super().__init__()
        self.initial = initial
        self.weight = nn.Parameter(torch.empty(1))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.constant_(self.weight, self.initial)

    def init_fixups(self) -> list[tuple[nn.Parameter, Callable[[torch.Tensor], object]]]:
        return [(self.weight, lambda t: nn.init.constant_(t, self.initial))]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight


class TransposedProjection(nn.Module):
    """d → e by the transpose of the e → d up-projection's weight U: z = x U (Forge's n_embd_wte_scale_tying,
    U ≡ D). Holds no parameter of its own: it reads ``source.weight`` at every call."""

    def __init__(self, source: nn.Linear) -> None:
        super().__init__()
        self._source = [source]  # a list: not a registered submodule, so U appears once in the state dict

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self._source[0].weight  # (B, S, d) @ (d, e) → (B, S, e)
