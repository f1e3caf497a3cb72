"""ReaLLM-Forge's per-token options against their formulas, written here independently from FORGE.md (§3,
§5–§9) in numpy float64; for the delicate ones (kRMSNorm's slice and float16 rounding, pRMSNorm's k, the
learned spline's coefficients, the piecewise ends, BitLinear's 1e-5 clamp, round half to even) a deliberate
mutation of the formula is shown to fail."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.feature_cases import case
from yamlllm_export import build_model, load_spec
from yamlllm_export.model.activations import STATELESS, LearnedSpline, Piecewise, PReLU, ShiftedGELU
from yamlllm_export.model.ffn import MLP, DualPathMLP, GatedMLP, Offsets
from yamlllm_export.model.forge_norms import DyT, HypersphereNorm, KRMSNorm, PartialRMSNorm
from yamlllm_export.model.forge_weights import (
    BitLinear158,
    QuantizedEmbedding,
    QuantizedLinear,
    TransposedProjection,
    bitlinear_activations,
    bitlinear_weight,
    fake_quant,
)
from yamlllm_export.model.norms import RMSNorm
from yamlllm_export.model.steering import OneHotLSV, OneHotMLPLSV, RoutedLSV

torch.manual_seed(0)
C = 40


def _x(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(1)) * 1.7 + 0.3


def _close(got: torch.Tensor, want: np.ndarray, tol: float = 2e-6) -> bool:
    return bool(np.abs(got.detach().double().numpy() - want).max() <= tol * max(1.0, np.abs(want).max()))


def _gain(module: torch.nn.Module) -> np.ndarray:
    with torch.no_grad():
        module.weight.copy_(torch.linspace(0.5, 1.5, module.weight.numel()))
    return module.weight.detach().double().numpy()


# --- norms (FORGE.md §5)


def test_rmsnorm_eps_zero_is_forges_rmsnorm():
    """Forge: y = x·sqrt(C)/‖x‖₂·g, no epsilon; ours: rmsnorm with eps 0."""
    norm = RMSNorm(C, eps=0.0, affine=True)
    g, x = _gain(norm), _x(3, 5, C)
    xd = x.double().numpy()
    want = xd * math.sqrt(C) / np.linalg.norm(xd, axis=-1, keepdims=True) * g
    assert _close(norm(x), want)
    assert not _close(RMSNorm(C, eps=1e-2, affine=True).requires_grad_(False)(x) * torch.tensor(g), want)  # an epsilon shows


@pytest.mark.parametrize("pct", [0.0625, 0.21, 0.33], ids=["default", "0.21", "0.33"])
def test_prmsnorm(pct):
    """k = ceil(C·pct): y = x·sqrt(k)/‖x[:k]‖·g. Mutation: k = floor(C·pct) must fail (C·pct is not whole)."""
    norm = PartialRMSNorm(C, pct=pct, gain=True)
    g, x = _gain(norm), _x(2, 4, C)
    xd = x.double().numpy()

    def formula(k: int) -> np.ndarray:
        return xd * math.sqrt(k) / np.linalg.norm(xd[..., :k], axis=-1, keepdims=True) * g

    assert _close(norm(x), formula(math.ceil(C * pct)))
    assert not _close(norm(x), formula(math.floor(C * pct)))


def _krms(xd: np.ndarray, k: int, last: bool, fp16: bool = True) -> np.ndarray:
    part = xd[..., -k:] if last else xd[..., :k]
    if fp16:
        part = part.astype(np.float16).astype(np.float64)
    return np.linalg.norm(part, axis=-1, keepdims=True) / math.sqrt(k)


@pytest.mark.parametrize("select", ["first", "last"])
@pytest.mark.parametrize("num", [10, 7, 64], ids=["k10", "k7", "k-over-C"])
def test_krmsnorm(select, num):
    """r = ‖fp16(x_S)‖/sqrt(k), k = min(C, num), S the first or last k; y = x/r·g. Mutations: the other slice,
    and the slice without float16 rounding, must fail."""
    norm = KRMSNorm(C, num=num, select=select, gain=True)
    g, k, last = _gain(norm), min(C, num), select == "last"
    x = _x(3, 6, C) * 37.0  # large enough that float16 rounding moves the norm well past float32 noise
    xd = x.double().numpy()
    assert _close(norm(x), xd / _krms(xd, k, last) * g, tol=1e-6)
    assert not _close(norm(x), xd / _krms(xd, k, last, fp16=False) * g, tol=1e-6)
    if k < C:
        assert not _close(norm(x), xd / _krms(xd, k, not last) * g, tol=1e-6)


def test_krmsnorm_without_gain_has_no_parameters():
    norm = KRMSNorm(C, num=10, select="last", gain=False)
    xd = _x(2, C).double().numpy()
    assert not list(norm.parameters())
    assert _close(norm(torch.from_numpy(xd).float()), xd / _krms(xd, 10, True), tol=1e-6)


def test_hyperspherenorm():
    norm = HypersphereNorm(radius=2.5)
    xd = _x(4, C).double().numpy()
    assert _close(norm(torch.from_numpy(xd).float()), xd / np.linalg.norm(xd, axis=-1, keepdims=True) * 2.5)


@pytest.mark.parametrize("act", ["tanh", "softsign"])
def test_dyt(act):
    """γ ⊙ act(α·x) + β with α scalar, β and γ per channel (Forge's dact)."""
    fn = {"tanh": np.tanh, "softsign": lambda v: v / (1 + np.abs(v))}[act]
    norm = DyT(C, act=_module(act), alpha_init=0.75, alpha=True, beta=True, gamma=True)
    with torch.no_grad():
        norm.beta.copy_(torch.linspace(-0.2, 0.3, C))
        norm.gamma.copy_(torch.linspace(0.5, 1.5, C))
    x = _x(3, C)
    want = norm.gamma.detach().double().numpy() * fn(0.75 * x.double().numpy()) + norm.beta.detach().double().numpy()
    assert _close(norm(x), want)


def _module(name: str) -> torch.nn.Module:
    from yamlllm_export.model.activations import make_activation

    return make_activation(name)


# --- activations (FORGE.md §6)

SELU_L, SELU_A = 1.0507009873554804934193349852946, 1.6732632423543772848170429916717
FORMULAS = {
    "relu6": lambda x: np.clip(x, 0, 6),
    "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
    "tanh": np.tanh,
    "softsign": lambda x: x / (1 + np.abs(x)),
    "identity": lambda x: x,
    "elu": lambda x: np.where(x > 0, x, np.expm1(x)),
    "celu": lambda x: np.where(x > 0, x, np.expm1(x)),
    "selu": lambda x: SELU_L * np.where(x > 0, x, SELU_A * np.expm1(x)),
    "leaky_relu": lambda x: np.where(x >= 0, x, 0.01 * x),
    "rrelu": lambda x: np.where(x >= 0, x, 11 / 48 * x),
    "mish": lambda x: x * np.tanh(np.log1p(np.exp(x))),
    "softplus": lambda x: np.where(x > 20, x, np.log1p(np.exp(np.minimum(x, 20)))),
}


@pytest.mark.parametrize("name", sorted(FORMULAS))
def test_stateless_activation(name):
    x = torch.linspace(-25, 25, 2001, dtype=torch.float64)
    assert np.abs(STATELESS[name](x).numpy() - FORMULAS[name](x.numpy())).max() < 1e-12


def test_rrelu_slope_is_the_eval_mean():
    """Mutation: torch's RReLU in training mode draws slopes; eval uses (1/8 + 1/3)/2 = 11/48, not 1/8."""
    x = -torch.ones(4, dtype=torch.float64)
    assert torch.equal(STATELESS["rrelu"](x), torch.nn.RReLU().eval()(x))
    assert not torch.allclose(STATELESS["rrelu"](x), F.leaky_relu(x, 1 / 8))


def test_gelu_shifted_and_prelu():
    x = torch.linspace(-4, 4, 81, dtype=torch.float64)
    shifted = ShiftedGELU(0.25).double()
    erf = np.vectorize(math.erf)
    xs = x.numpy() - 0.25
    assert np.abs(shifted(x).detach().numpy() - 0.5 * xs * (1 + erf(xs / math.sqrt(2)))).max() < 1e-12
    prelu = PReLU().double()
    assert np.abs(prelu(x).detach().numpy() - np.where(x.numpy() >= 0, x.numpy(), 0.25 * x.numpy())).max() < 1e-12


def _piecewise_formula(x: np.ndarray, xs: np.ndarray, ys: np.ndarray, right: float, learned_ends: bool) -> np.ndarray:
    """FORGE.md §6, written as a per-point lookup (not a where-chain)."""
    out = np.empty_like(x)
    n = len(xs)
    for j, v in enumerate(x):
        if v < xs[0]:
            out[j] = ys[0] if learned_ends else 0.0
        elif v >= xs[-1]:
            if learned_ends:  # the last interior segment, extended
                out[j] = ys[-2] + (ys[-1] - ys[-2]) / (xs[-1] - xs[-2]) * (v - xs[-2])
            elif v < right:  # the line through (x_{n-1}, y_{n-1}) and (R, R)
                out[j] = ys[-1] + (right - ys[-1]) / (right - xs[-1]) * (v - xs[-1])
            else:
                out[j] = v
        else:
            i = int(np.searchsorted(xs, v, side="right")) - 1
            i = min(i, n - 2)
            out[j] = ys[i] + (ys[i + 1] - ys[i]) / (xs[i + 1] - xs[i]) * (v - xs[i])
    return out


@pytest.mark.parametrize(("num", "left", "right", "ends"), [(7, -2.0, 2.0, False), (50, -10.0, 10.0, False), (30, -10.0, 10.0, True)],
                         ids=["piecewise", "pfla", "pfla_le"])  # fmt: skip
def test_piecewise(num, left, right, ends):
    act = Piecewise(num, left, right, learned_ends=ends).double()
    with torch.no_grad():  # trained-looking knots: not GELU any more, not evenly spaced
        act.y_vals.add_(torch.sin(torch.arange(num, dtype=torch.float64)) * 0.3)
        act.x_vals.add_(torch.cos(torch.arange(num, dtype=torch.float64)) * 0.2 * (right - left) / (num + 1))
    xs, ys = act.x_vals.detach().numpy(), act.y_vals.detach().numpy()
    x = np.concatenate([np.linspace(left - 3, right + 3, 997), xs, [right]])
    got = act(torch.from_numpy(x)).detach().numpy()
    assert np.abs(got - _piecewise_formula(x, xs, ys, right, ends)).max() < 1e-9
    assert np.abs(got - _piecewise_formula(x, xs, ys, right, not ends)).max() > 1e-3  # the ends matter


def _forge_spline(x: np.ndarray, xs: np.ndarray, ys: np.ndarray, mixed: bool = True) -> np.ndarray:
    """FORGE.md §6's literal coefficients (a dense solve here, not the Thomas algorithm). ``mixed`` False: the
    textbook natural spline with the same M (c = M, d = (M₊ − M)/(3h), b = δ − h(2M + M₊)/3): a mutation."""
    n = len(xs)
    h = np.diff(xs)
    delta = np.diff(ys) / h
    A, rhs = np.zeros((n, n)), np.zeros(n)
    A[0, 0] = A[-1, -1] = 1
    for i in range(1, n - 1):
        A[i, i - 1], A[i, i], A[i, i + 1] = h[i - 1], 2 * (h[i - 1] + h[i]), h[i]
        rhs[i] = 3 * (delta[i] - delta[i - 1])
    M = np.linalg.solve(A, rhs)
    a, b = ys[:-1], delta - h * (2 * M[:-1] + M[1:]) / 3
    c, d = (M[:-1] / 2, (M[1:] - M[:-1]) / (6 * h)) if mixed else (M[:-1], (M[1:] - M[:-1]) / (3 * h))
    k = np.clip(np.searchsorted(xs, x, side="left") - 1, 0, n - 2)
    t = x - xs[k]
    return a[k] + b[k] * t + c[k] * t**2 + d[k] * t**3


def test_learned_spline():
    act = LearnedSpline(10, -5.0, 5.0).double()
    with torch.no_grad():
        act.y_vals.add_(torch.sin(torch.arange(10, dtype=torch.float64)) * 0.4)
    xs, ys = act.x_vals.detach().numpy(), act.y_vals.detach().numpy()
    x = np.concatenate([np.linspace(-8, 8, 1601), xs])  # knots: searchsorted's left side puts x = x_k in segment k − 1
    got = act(torch.from_numpy(x)).detach().numpy()
    assert np.abs(got - _forge_spline(x, xs, ys)).max() < 1e-9
    assert np.abs(got - _forge_spline(x, xs, ys, mixed=False)).max() > 1e-2


# --- MLP variants (FORGE.md §3)


def _lin(layer: torch.nn.Linear, v: np.ndarray) -> np.ndarray:
    out = v @ layer.weight.detach().double().numpy().T
    return out + layer.bias.detach().double().numpy() if layer.bias is not None else out


GELU = np.vectorize(lambda v: 0.5 * v * (1 + math.erf(v / math.sqrt(2))))


def test_mlp_with_offsets_and_summed_down_projections():
    """y = W_d[act(W_u x + b_u − x_off) − y_off] + b_d, W_d writing k·C values summed over k blocks."""
    mlp = MLP(16, 24, activation=Offsets(_module("gelu"), x_offset=0.25, y_offset=-0.125), bias=True, dropout=0.0, down_blocks=3).double()
    x = _x(5, 16).double().numpy()
    h = GELU(_lin(mlp.up, x) - 0.25) + 0.125
    want = _lin(mlp.down, h).reshape(5, 3, 16).sum(1)
    assert _close(mlp(torch.from_numpy(x)), want, tol=1e-12)
    assert not _close(mlp(torch.from_numpy(x)), _lin(mlp.down, h)[:, :16], tol=1e-6)  # one block only: wrong


def test_gated_mlp_with_a_gelu_gate_and_offsets():
    """Forge's swiglu: y = W_o[(act(W_1 x + b_1 − x_off) − y_off) ⊙ (W_2 x + b_2)] + b_o, act GELU by default."""
    act = Offsets(_module("gelu"), x_offset=0.375, y_offset=0.0625)
    mlp = GatedMLP(16, 24, activation=act, bias=True, dropout=0.0).double()
    x = _x(5, 16).double().numpy()
    want = _lin(mlp.down, (GELU(_lin(mlp.gate, x) - 0.375) - 0.0625) * _lin(mlp.up, x))
    assert _close(mlp(torch.from_numpy(x)), want, tol=1e-12)


def test_dual_path():
    """g = W_fc x; y = W_1(act(g − x_off) − y_off) + W_2(−act(−(g + x_off)) − y_off)."""
    mlp = DualPathMLP(16, 24, act=_module("gelu"), bias=True, dropout=0.0, x_offset=0.25, y_offset=0.125).double()
    x = _x(5, 16).double().numpy()
    g = _lin(mlp.up, x)
    want = _lin(mlp.down, GELU(g - 0.25) - 0.125) + _lin(mlp.down_neg, -GELU(-(g + 0.25)) - 0.125)
    assert _close(mlp(torch.from_numpy(x)), want, tol=1e-12)
    mutated = _lin(mlp.down, GELU(g - 0.25) - 0.125) + _lin(mlp.down_neg, -GELU(-(g - 0.25)) - 0.125)  # x_off sign on the mirror
    assert not _close(mlp(torch.from_numpy(x)), mutated, tol=1e-6)


@pytest.mark.parametrize("scheme", ["default", "gpt2"])
def test_forge_parameters_start_at_their_own_values(scheme):
    """Every init scheme leaves radii, knots, slopes, shifts and offsets at Forge's initial values (the gpt2
    scheme would otherwise set every 1-D parameter to 1)."""
    spec = load_spec(case(
        "initialization", {"type": scheme}, "layer.layer_norm", {"type": "dyt", "dyt_alpha_init": 0.5},
        "final_layer_norm", {"type": "hyperspherenorm", "hypersphere_radius": 2.0},
        "layer.ffn.activation", "pfla", "layer.ffn.use_gated_activation", False, "layer.ffn.x_offset", 0.25,
    ))  # fmt: skip
    model = build_model(spec)
    block = model.blocks[0]
    assert block.attn_norms.pre.alpha.item() == 0.5 and block.attn_norms.pre.beta.abs().max() == 0
    assert model.final_norm.radius.item() == 2.0
    assert block.ffn.act.x_offset.item() == 0.25
    assert torch.allclose(block.ffn.act.act.x_vals, torch.linspace(-10, 10, 52)[1:-1])


# --- weights (FORGE.md §7, §8)


def _quant_formula(w: np.ndarray, method: str, bits: int, rnd=np.round) -> np.ndarray:
    """FORGE.md §8 in float64 (np.round is half to even, as torch.round and ONNX Round)."""
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    if method == "symmetric":
        s = np.abs(w).max() / hi
        return np.clip(rnd(w / s), lo, hi) * s
    if method == "affine":
        s = (w.max() - w.min()) / (2**bits - 1)
        zp = -rnd(w.min() / s) - 2 ** (bits - 1)
        return (np.clip(rnd(w / s) + zp, lo, hi) - zp) * s
    s = max(np.abs(w).mean(), 1e-5)
    return np.clip(rnd(w / s), -1, 1) * s


def _half_away(v: np.ndarray) -> np.ndarray:
    return np.sign(v) * np.floor(np.abs(v) + 0.5)


@pytest.mark.parametrize(("method", "bits"), [("symmetric", 8), ("affine", 8), ("affine", 4), ("ternary", 8)])
def test_fake_quant(method, bits):
    w = torch.randn(24, 16, generator=torch.Generator().manual_seed(3))
    got = fake_quant(w, method, bits).double().numpy()  # computed in float32, as Forge's
    assert np.abs(got - _quant_formula(w.double().numpy(), method, bits)).max() < 1e-6 * np.abs(w.numpy()).max()


def test_fake_quant_rounds_half_to_even():
    """Codes exactly halfway: 0.5 → 0 and 2.5 → 2 (half to even, ONNX Round); half away from zero gives 1 and 3."""
    w = torch.tensor([-2.5, -0.5, 0.5, 1.5, 2.5, 3.0])  # symmetric 3-bit: s = max|w| / 3 = 1
    assert torch.equal(fake_quant(w, "symmetric", 3), torch.tensor([-2.0, 0.0, 0.0, 2.0, 2.0, 3.0]))
    assert not np.array_equal(fake_quant(w, "symmetric", 3).numpy(), _quant_formula(w.numpy(), "symmetric", 3, rnd=_half_away))


def _bitlinear_formula(x: np.ndarray, w: np.ndarray, clamp: float = 1e-5) -> np.ndarray:
    a = 127.0 / np.maximum(np.abs(x).max(-1, keepdims=True), clamp)
    xq = np.clip(np.round(x * a), -128, 127) / a
    s = 1.0 / max(np.abs(w).mean(), clamp)
    wq = np.clip(np.round(w * s), -1, 1) / s
    return xq @ wq.T


def test_bitlinear_1p58():
    """Per-token absmax/127 activations and ternary weights; rows 1 and 2 are tiny, below the 1e-5 clamp (row 2
    between 1e-6 and 1e-5: a 1e-6 clamp (mutation) changes it)."""
    layer = BitLinear158(16, 8, bias=False).double()
    x = torch.randn(3, 16, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    x[1] *= 1e-7 / x[1].abs().max()
    x[2] *= 3e-6 / x[2].abs().max()
    xd, wd = x.numpy(), layer.weight.detach().numpy()
    got = layer(x).detach().numpy()
    # computed in float32 inside, as Forge's (x.float(), weight.float()); rows compared relative to their own size
    for row, want in zip(got, _bitlinear_formula(xd, wd), strict=True):
        assert np.abs(row - want).max() <= 1e-6 * np.abs(want).max()
    assert np.abs(got[2] - _bitlinear_formula(xd, wd, clamp=1e-6)[2]).max() > 1e-3 * np.abs(got[2]).max()
    tiny = torch.full((4, 4), 1e-7, dtype=torch.float64)  # mean|W| below the clamp: s = 1e5, round(0.01) = 0
    assert torch.equal(bitlinear_weight(tiny), torch.zeros_like(tiny))
    assert torch.equal(bitlinear_activations(torch.zeros(2, 4)), torch.zeros(2, 4))  # no 0/0


def test_quantized_linear_and_embedding():
    lin = QuantizedLinear(16, 8, bias=False, method="affine", bits=4).double()
    x = _x(3, 16).double()
    want = x.numpy() @ _quant_formula(lin.weight.detach().numpy(), "affine", 4).T
    assert _close(lin(x), want, tol=1e-6)
    emb = QuantizedEmbedding(10, 6, method="symmetric", bits=8).double()
    ids = torch.tensor([[3, 0, 9]])
    assert _close(emb(ids), _quant_formula(emb.weight.detach().numpy(), "symmetric", 8)[ids.numpy()], tol=1e-6)


def test_tied_lm_head_reads_the_raw_table_when_the_lookup_is_quantized():
    """Forge: lookups from deq(quant(wte)), logits from the raw wte (the tied head does not see the quantization)."""
    model = build_model(load_spec(case("embedding.quantize_wte", {"bits": 4}, "tie_word_embeddings", True)))
    assert model.lm_head.weight is model.embed.weight
    h = torch.randn(1, 2, 64)
    assert torch.equal(model.lm_head(h), h @ model.embed.weight.t())
    raw = model.embed.weight.detach().numpy()
    assert _close(model.embed(torch.tensor([[5]]))[0, 0], _quant_formula(raw.astype(np.float64), "affine", 4)[5], tol=1e-6)
    assert not _close(model.embed(torch.tensor([[5]]))[0, 0], raw[5], tol=1e-4)


def test_factorized_embeddings_with_a_shared_projection_and_learned_scale():
    """h₀ = U·wte[tok]·s_emb, z = x·U (U ≡ D), logits = wte·z (tied); s_emb starts at sqrt(C)."""
    model = build_model(load_spec(case("embedding.embedding_dim", 32, "embedding.learned_scale", True, "embedding.tie_projections", True,
                                       "tie_word_embeddings", True)))  # fmt: skip
    assert isinstance(model.head_proj, TransposedProjection)
    assert model.embed_scale.weight.item() == pytest.approx(8.0)
    U = model.embed_proj.weight.detach().double().numpy()  # (C, E)
    x = _x(2, 64).double()
    assert _close(model.head_proj(x.float()), x.numpy() @ U, tol=1e-5)
    names = [n for n, _ in model.named_parameters()]
    assert "embed_proj.weight" in names and not any(n.startswith("head_proj") for n in names)


# --- steering (FORGE.md §9)


def _relu(v: np.ndarray) -> np.ndarray:
    return np.maximum(v, 0)


def _seq(mlp: torch.nn.Sequential, v: np.ndarray) -> np.ndarray:
    """MLP3 or MLP2 of Linear / ReLU layers, in numpy."""
    linears = [m for m in mlp if isinstance(m, torch.nn.Linear)]
    for i, layer in enumerate(linears):
        v = _lin(layer, v)
        if i < len(linears) - 1:
            v = _relu(v)
    return v


def _init(module: torch.nn.Module) -> torch.nn.Module:
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 0.3)
    return module.double()


@pytest.mark.parametrize("variant", ["ohmg", "ohmt", "ohmm", "ohma", "mol"])
def test_routed_lsv(variant):
    lsv = _init(RoutedLSV(variant, 4, 16))
    x = _x(2, 5, 16).double()
    xd = x.numpy()
    outs = np.stack([_seq(m, xd) for m in lsv.mlps], axis=-2)  # (B, S, n, C)
    if variant == "ohma":
        logits = xd @ lsv.queries.detach().numpy().T
    else:
        logits = _lin(lsv.router[0] if isinstance(lsv.router, torch.nn.Sequential) else lsv.router, xd)
    softmax = np.exp(logits - logits.max(-1, keepdims=True))
    softmax /= softmax.sum(-1, keepdims=True)
    if variant == "ohmg":
        gates = 1 / (1 + np.exp(-logits))
    elif variant == "ohmt":  # the two largest logits get 1, the rest 0
        gates = (logits >= np.sort(logits, -1)[..., -2:-1]).astype(np.float64)
    else:
        gates = softmax
    want = xd + (gates[..., None] * outs).sum(-2)
    assert _close(lsv(x), want, tol=1e-12)
    assert len(lsv.mlps[0]) == (5 if variant in ("ohmg", "mol") else 3)  # MLP3 vs MLP2


def test_one_hot_lsv_selection_scale_and_mixture():
    one = _init(OneHotLSV(3, 16, index=2, scale=0.5, mixture=None))
    x = _x(2, 16).double()
    M = one.lsv_matrix.detach().numpy()
    assert _close(one(x), x.numpy() + 0.5 * M[2], tol=1e-12)
    mix = _init(OneHotLSV(3, 16, index=0, scale=1.0, mixture=(0.25, 0.0, 0.75)))
    M = mix.lsv_matrix.detach().numpy()
    assert _close(mix(x), x.numpy() + 0.25 * M[0] + 0.75 * M[2], tol=1e-12)
    mlp = _init(OneHotMLPLSV(3, 16, index=1, mixture=None))
    assert _close(mlp(x), x.numpy() + _seq(mlp.mlps[1], x.numpy()), tol=1e-12)
    mixed = _init(OneHotMLPLSV(3, 16, index=0, mixture=(0.5, 0.5, 0.0)))
    want = x.numpy() + 0.5 * _seq(mixed.mlps[0], x.numpy()) + 0.5 * _seq(mixed.mlps[1], x.numpy())
    assert _close(mixed(x), want, tol=1e-12)


def test_manual_steering_vector_is_added_after_block_k(tmp_path):
    """x ← x + α·v after block k (1-based): the logits are the head of (block k's output + α·v)."""
    v = np.linspace(-1, 1, 64, dtype=np.float32).reshape(1, 1, 64)
    np.save(tmp_path / "v.npy", v)
    model = build_model(load_spec(case("steering", {"vector": {"file": str(tmp_path / "v.npy"), "layer": 2, "scale": 0.5}})))
    seen = {}
    model.blocks[1].register_forward_hook(lambda m, i, out: seen.update(x=out[0]))
    ids = torch.randint(0, 256, (1, 4))
    logits = model(ids)[0]
    want = model.lm_head(model.final_norm(seen["x"] + 0.5 * torch.from_numpy(v.reshape(64))))
    assert torch.allclose(logits, want, atol=1e-6)
    assert not torch.allclose(logits, model.lm_head(model.final_norm(seen["x"])), atol=1e-3)
