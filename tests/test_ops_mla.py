"""``yamlllm::mla_attention``'s eager reference (decompress the latent to per-head keys and values) against an
independent float64 numpy formula of the absorbed form the lowerings use (W_uk on the query side, attention
over the latent, W_uv after the softmax), with a cache, padding bias and every attention variant."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from yamlllm_export.ops.masking import mask_value
from yamlllm_export.ops.mla_attention import mla_attention
from yamlllm_export.ops.rotary import rope_caches

B, S, P, NH, DN, DR, DV, L = 2, 3, 4, 4, 6, 4, 5, 7


def _rope(x: np.ndarray, pos: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """Half-rotation RoPE on x (..., dr) at positions pos (B, S); x is (B, S, n, dr)."""
    c, s = cos[pos][:, :, None], sin[pos][:, :, None]  # (B, S, 1, dr/2)
    x1, x2 = x[..., : DR // 2], x[..., DR // 2 :]
    return np.concatenate([x1 * c - x2 * s, x2 * c + x1 * s], axis=-1)


def _absorbed(q, c_new, kr_new, c_past, kr_past, bias, cos, sin, pos, w_uk, w_uv, scale, window, causal, softcap):  # noqa: ANN001, ANN202
    q = q.reshape(B, S, NH, -1)  # (B, S, nh, dn + dr), dr = 0 without RoPE
    q_nope, q_rope = q[..., :DN], q[..., DN:]
    if kr_new is not None:
        q_rope, kr_new = _rope(q_rope, pos, cos, sin), _rope(kr_new[:, :, None], pos, cos, sin)[:, :, 0]
    c = np.concatenate([c_past[:, 0], c_new], axis=1)  # (B, T, L)
    q_lat = np.einsum("bshn,hnl->bhsl", q_nope, w_uk.reshape(NH, DN, L))  # W_uk absorbed into the query
    scores = np.einsum("bhsl,btl->bhst", q_lat, c)
    if kr_new is not None:
        kr = np.concatenate([kr_past[:, 0], kr_new], axis=1)  # (B, T, dr)
        scores = scores + np.einsum("bshr,btr->bhst", q_rope, kr)
    scores = scores * scale
    if softcap:
        scores = softcap * np.tanh(scores / softcap)
    T = P + S
    j, i = np.arange(T)[None], (P + np.arange(S))[:, None]
    visible = ((j <= i) | (not causal)) & ((j > i - window) | (window == 0))
    probs = scores + np.where(visible, 0.0, mask_value(torch.float32)) + bias
    probs = np.exp(probs - probs.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    out = np.einsum("bhst,btl,hvl->bshv", probs, c, w_uv.reshape(NH, DV, L))  # W_uv after the softmax
    return out.reshape(B, S, NH * DV)


def _f64(t: torch.Tensor | None) -> np.ndarray | None:
    return None if t is None else t.double().numpy() if t.is_floating_point() else t.numpy()


VARIANTS = {
    "causal": (0, True, 0.0),
    "window": (3, True, 0.0),
    "bidirectional": (0, False, 0.0),
    "softcap": (0, True, 0.5),
}


@pytest.mark.parametrize("rope", [True, False], ids=["rope", "no-rope"])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_eager_matches_absorbed_formula(variant: str, rope: bool) -> None:
    window, causal, softcap = VARIANTS[variant]
    g = torch.Generator().manual_seed(0)
    dr = DR if rope else 0

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g)

    q, c_new, c_past = rand(B, S, NH * (DN + dr)), rand(B, S, L), rand(B, 1, P, L)
    kr_new, kr_past = (rand(B, S, DR), rand(B, 1, P, DR)) if rope else (None, None)
    w_uk, w_uv = rand(NH * DN, L) * 0.5, rand(NH * DV, L) * 0.5
    mask = torch.ones(B, P + S, dtype=torch.int64)
    mask[0, :2] = 0  # left padding in row 0
    bias = torch.where(mask[:, None, None, :] == 0, mask_value(torch.float32), 0.0)  # (B, 1, 1, T)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)[:, -S:]
    cos, sin = rope_caches(16, DR, 10000.0)
    scale = 1 / np.sqrt(DN + dr)
    rope_args = dict(zip(("cos_cache", "sin_cache", "position_ids"), (cos, sin, pos) if rope else (None, None, None), strict=True))
    out, present_latent, present_rope = mla_attention(
        query=q,
        latent=c_new,
        rope_key=kr_new,
        past_latent=c_past,
        past_rope_key=kr_past,
        attention_bias=bias,
        **rope_args,
        w_uk=w_uk,
        w_uv=w_uv,
        num_heads=NH,
        scale=scale,
        window_size=window,
        causal=causal,
        softcap=softcap,
    )
    want = _absorbed(
        *(_f64(t) for t in (q, c_new, kr_new, c_past, kr_past, bias, cos, sin, pos, w_uk, w_uv)),
        scale, window, causal, softcap,
    )  # fmt: skip
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-5, atol=1e-5, equal_nan=False)  # float32 op vs float64 formula
    assert present_latent.shape == (B, 1, P + S, L) and present_rope.shape == (B, 1, P + S, dr)
    torch.testing.assert_close(present_latent[:, :, P:], c_new[:, None])
