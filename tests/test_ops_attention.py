"""The eager references of ``yamlllm::attention`` and ``yamlllm::complex_attention`` against independent
float64 numpy formulas: per-query visibility written out as the spec words it, RoPE from the angles rather
than the cached tables, complex scores with numpy's complex type."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from yamlllm_export import ops
from yamlllm_export.ops.rotary import rope_caches

B, S, P, NH, NKV, HS, THETA = 2, 5, 4, 4, 2, 8, 10000.0
SCALE = HS**-0.5


def _inputs(rd: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    cos, sin = rope_caches(32, rd, THETA)
    return {
        "q": torch.randn(B, S, NH * HS, generator=g) * 2,
        "k": torch.randn(B, S, NKV * HS, generator=g) * 2,
        "v": torch.randn(B, S, NKV * HS, generator=g),
        "pk": torch.randn(B, NKV, P, HS, generator=g),
        "pv": torch.randn(B, NKV, P, HS, generator=g),
        "bias": torch.randn(B, 1, S, P + S, generator=g),
        "cos": cos,
        "sin": sin,
        "pos": torch.arange(P, P + S).expand(B, -1) + torch.tensor([[0], [3]]),
        "sinks": torch.randn(NH, generator=g) * 2,
    }


def _call(op, t: dict[str, torch.Tensor], **options):
    """``op`` (a keyword-only op wrapper) on ``_inputs``'s tensors; ``options`` add or override arguments."""
    args = dict(query=t["q"], key=t["k"], value=t["v"], past_key=t["pk"], past_value=t["pv"], attention_bias=t["bias"])
    args |= dict(cos_cache=t["cos"], sin_cache=t["sin"], position_ids=t["pos"], num_heads=NH, num_kv_heads=NKV, scale=SCALE)
    return op(**(args | options))


def _rotate_np(x: np.ndarray, pos: np.ndarray, rd: int) -> np.ndarray:
    """x (B, S, n, hs): pair feature i with i + rd/2 for i < rd/2, angle pos · θ^(-2i/rd)."""
    out = x.copy()
    half = rd // 2
    for i in range(half):
        a = pos[:, :, None] * THETA ** (-2 * i / rd)
        x1, x2 = x[..., i], x[..., i + half]
        out[..., i], out[..., i + half] = x1 * np.cos(a) - x2 * np.sin(a), x2 * np.cos(a) + x1 * np.sin(a)
    return out


def _reference(
    t: dict[str, torch.Tensor], rd: int, *, window: int, causal: bool, softcap: float, complex_qk: bool = False, sinks: bool = False
) -> np.ndarray:
    """``sinks``: each head's logit t["sinks"][h] joins the softmax's denominator (GPT-OSS), not its numerator."""
    d = {k: v.double().numpy() for k, v in t.items()}
    pos = t["pos"].numpy()
    q = d["q"].reshape(B, S, NH, HS)
    k = d["k"].reshape(B, S, NKV, HS)
    if complex_qk:  # q ↦ q·e^{i·p·θ_j}, one θ_j per complex feature
        ang = pos[:, :, None, None] * THETA ** (-2 * np.arange(HS // 2) / HS)
        qc = (q[..., : HS // 2] + 1j * q[..., HS // 2 :]) * np.exp(1j * ang)
        kc = (k[..., : HS // 2] + 1j * k[..., HS // 2 :]) * np.exp(1j * ang)
        k = np.concatenate([kc.real, kc.imag], -1)
        pkc = d["pk"][..., : HS // 2] + 1j * d["pk"][..., HS // 2 :]
    else:
        q, k = _rotate_np(q, pos, rd), _rotate_np(k, pos, rd)
    keys = np.concatenate([d["pk"], k.transpose(0, 2, 1, 3)], 2)  # (B, nkv, T, hs)
    vals = np.concatenate([d["pv"], d["v"].reshape(B, S, NKV, HS).transpose(0, 2, 1, 3)], 2)
    out = np.zeros((B, S, NH, HS))
    for b in range(B):
        for h in range(NH):
            g = h // (NH // NKV)
            for i in range(S):
                if complex_qk:
                    kall = np.concatenate([pkc[b, g], kc[b, :, g]], 0)
                    s = (qc[b, i, h] * kall.conj()).sum(-1).real * SCALE
                else:
                    s = keys[b, g] @ q[b, i, h] * SCALE
                if softcap:
                    s = softcap * np.tanh(s / softcap)
                s = s + d["bias"][b, 0, i]
                j = np.arange(P + S)
                seen = np.ones(P + S, bool)
                if causal:
                    seen &= j <= P + i
                if window:
                    seen &= j > P + i - window
                s = np.where(seen, s, -np.inf)
                sink = d["sinks"][h] if sinks else -np.inf
                top = max(s.max(), sink)
                p = np.exp(s - top)
                out[b, i, h] = (p / (p.sum() + np.exp(sink - top))) @ vals[b, g]
    return out.reshape(B, S, NH * HS)


VARIANTS = [
    pytest.param(0, True, 0.0, id="causal"),
    pytest.param(3, True, 0.0, id="window3"),
    pytest.param(0, False, 0.0, id="bidirectional"),
    pytest.param(0, True, 1.5, id="softcap"),
    pytest.param(2, True, 1.5, id="window2-softcap"),
]


SINKS = pytest.mark.parametrize("sinks", [False, True], ids=["no-sinks", "sinks"])


@SINKS
@pytest.mark.parametrize("rd", [HS, 4], ids=["full-rotary", "partial-rotary"])
@pytest.mark.parametrize(("window", "causal", "softcap"), VARIANTS)
def test_attention_matches_formula(rd, window, causal, softcap, sinks):
    t = _inputs(rd)
    with torch.no_grad():
        out, _, _ = _call(ops.attention, t, window_size=window, causal=causal, softcap=softcap, sinks=t["sinks"] if sinks else None)
    ref = _reference(t, rd, window=window, causal=causal, softcap=softcap, sinks=sinks)
    np.testing.assert_allclose(out.numpy(), ref, atol=2e-5, equal_nan=False)


@SINKS
@pytest.mark.parametrize(("window", "causal", "softcap"), VARIANTS)
def test_complex_attention_matches_complex_formula(window, causal, softcap, sinks):
    t = _inputs(HS)
    with torch.no_grad():
        out, present_k, _ = _call(
            ops.complex_attention, t, window_size=window, causal=causal, softcap=softcap, sinks=t["sinks"] if sinks else None
        )
    ref = _reference(t, HS, window=window, causal=causal, softcap=softcap, complex_qk=True, sinks=sinks)
    np.testing.assert_allclose(out.numpy(), ref, atol=2e-5, equal_nan=False)
    assert torch.equal(present_k[:, :, :P], t["pk"])  # past ++ new, in the real layout


def test_complex_attention_refuses_partial_rotary():
    t = _inputs(4)
    with pytest.raises(RuntimeError, match="rotary_dim = head_dim"), torch.no_grad():
        _call(ops.complex_attention, t, attention_bias=None)
