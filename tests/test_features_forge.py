"""ReaLLM-Forge's attention options (docs/forge.md): interleaved RoPE on the first rope_length dims, SOAP,
FIRE and the softmax variants.

Each option against its formula written here from FORGE.md §2 / §4 (numpy, float64), independently of
``ops/``, with a deliberate mutation of the delicate parts shown to fail the same comparison (FIRE's
threshold, SOAP's frequency, interleaved vs half rotation, consmax's β/γ, polymax's pieces, the 1e-6
clamps); the onnxscript lowering of every variant against the eager op; the spec's refusals; left padding
exact in the eager model; and the parity grid (left-padded prefill + cached decode steps on ONNX Runtime vs
PyTorch) for every variant. The feature-table grid (tests/test_feature_matrix.py) runs interleaved RoPE,
SOAP, FIRE and three variants on every target; ort and onnx lower a variant by calling the portable
target's MatMul attention (``lowerings/ort.py``, ``lowerings/standard.py``), so the remaining variants run
here on ``portable``, sharing those exports."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from onnxscript import opset18 as op

from tests.feature_cases import ATT, FIRE, ROPE, SOFTMAX, VARIANTS, case
from tests.validate_fixtures import assert_parity
from yamlllm_export import SpecError, build_model, load_spec
from yamlllm_export.lowerings import softmax_variants as onnx_variants
from yamlllm_export.model.fire import FIRE as FireModule
from yamlllm_export.model.positions import RotaryCache
from yamlllm_export.model.softmax_variants import make_softmax
from yamlllm_export.ops.masking import mask_value
from yamlllm_export.ops.rotary import apply_rotary, rope_caches
from yamlllm_export.ops.softmax_variants import variant_weights

E = math.e


def differs(a: np.ndarray, b: np.ndarray) -> float:
    """max |a − b| with NaN / inf counted as a difference (a mutation that breaks the numbers fails too)."""
    d = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))
    return float("inf") if not np.isfinite(d).all() else float(d.max())


# --- RoPE on the first R dims, interleaved pairs; SOAP ----------------------------------------------------


def forge_rope(x: np.ndarray, positions: np.ndarray, R: int, freqs: np.ndarray) -> np.ndarray:
    """FORGE.md §2: pair i < R/2 is (2i, 2i+1), turned by p·θ_i: (e, o) → (e cos − o sin, e sin + o cos); dims ≥ R pass."""
    out = x.copy()
    for i in range(R // 2):
        angle = positions[..., None] * freqs[i]  # (B, S, 1)
        e, o = x[..., 2 * i], x[..., 2 * i + 1]
        out[..., 2 * i] = e * np.cos(angle) - o * np.sin(angle)
        out[..., 2 * i + 1] = e * np.sin(angle) + o * np.cos(angle)
    return out


HS, R, BASE_THETA = 16, 8, 10000.0
X = np.random.default_rng(0).standard_normal((2, 5, 3, HS))  # (B, S, heads, hs)
POS = np.array([[0, 0, 1, 2, 3], [4, 5, 9, 10, 11]])  # a pad repeat and a jump


def ours(x: np.ndarray, cos: torch.Tensor, sin: torch.Tensor, *, interleaved: bool) -> np.ndarray:
    return apply_rotary(torch.from_numpy(x), torch.from_numpy(POS), cos.double(), sin.double(), interleaved=interleaved).numpy()


def test_interleaved_rope_on_the_first_R_dims() -> None:
    """θ_i = base^(−i/(R/2)): spaced over R, not the head size; the half layout and the head-size spacing fail."""
    cos, sin = rope_caches(64, R, BASE_THETA)
    want = forge_rope(X, POS, R, BASE_THETA ** (-np.arange(R // 2) / (R / 2)))
    got = ours(X, cos, sin, interleaved=True)
    assert differs(got, want) < 1e-6
    np.testing.assert_array_equal(got[..., R:], X[..., R:])
    assert differs(ours(X, cos, sin, interleaved=False), want) > 0.1  # mutation: half-rotation pairs
    spaced_over_head = forge_rope(X, POS, R, BASE_THETA ** (-np.arange(R // 2) / (HS / 2)))
    assert differs(got, spaced_over_head) > 0.1  # mutation: frequencies spaced over the head dim


def forge_soap_scores(q: np.ndarray, k: np.ndarray, n: int, roll: int) -> np.ndarray:
    """Forge's SOAP as its module runs it (FORGE.md §2): a table θ_j = 2πj/N rolled by ``roll`` calls; position p
    takes table[p mod N] and turns every interleaved pair of q and k by it. Returns q·k for every (p_q, p_k)."""
    table = np.roll(np.linspace(0, 2 * np.pi - 2 * np.pi / n, n), roll)
    angles = table[np.arange(q.shape[0]) % n]  # (S,)

    def turn(x: np.ndarray) -> np.ndarray:
        out = x.copy()
        for i in range(R // 2):
            e, o = x[:, 2 * i], x[:, 2 * i + 1]
            out[:, 2 * i], out[:, 2 * i + 1] = e * np.cos(angles) - o * np.sin(angles), e * np.sin(angles) + o * np.cos(angles)
        return out

    return turn(q) @ turn(k).T


@pytest.mark.parametrize("roll", [0, 3], ids=["fresh", "rolled-3"])
def test_soap_is_one_frequency_two_pi_over_n(roll: int) -> None:
    """Our table (every column 2π/N) gives Forge's rolled-table scores whatever the roll; 2π/(N+1) does not."""
    n, S = 16, 40  # S > N: positions wrap around the circle
    rng = np.random.default_rng(1)
    q, k = rng.standard_normal((S, HS)), rng.standard_normal((S, HS))
    want = forge_soap_scores(q, k, n, roll)

    def scores(angles: int) -> np.ndarray:
        cache = RotaryCache(64, R, theta=BASE_THETA, soap_angles=angles)
        pos = torch.arange(S)[None]
        turn = lambda x: apply_rotary(torch.from_numpy(x)[None, :, None], pos, cache.cos.double(), cache.sin.double(), interleaved=True)  # noqa: E731
        return (turn(q)[0, :, 0] @ turn(k)[0, :, 0].T).numpy()

    assert differs(scores(n), want) < 1e-4
    assert differs(scores(n + 1), want) > 0.1  # mutation: the frequency 2π/(N+1)


# --- FIRE -------------------------------------------------------------------------------------------------


def forge_fire(module: FireModule, positions: np.ndarray, new: int) -> np.ndarray:
    """FORGE.md §2: L = |L_mult·init_L|, n_i = max(i, L) + eps, u = log(c(|i−j|+eps)+b+eps)/log(|c·n_i|+b+eps),
    bias[h, i, j] = mlp(u)_h (the MLP is the module's own Sequential, run in float64)."""
    c, L, b, eps = module.c.item(), abs(module.L_multiplier.item() * module.init_L.item()), module.log_bias, 1e-6
    i, j = positions[:, -new:, None].astype(np.float64), positions[:, None, :].astype(np.float64)
    u = np.log(c * (np.abs(i - j) + eps) + b + eps) / np.log(np.abs(c * (np.maximum(i, L) + eps)) + b + eps)
    with torch.no_grad():
        out = module.mlp.double()(torch.from_numpy(u)[..., None]).numpy()  # (B, S, T, nh)
    module.float()
    return out.transpose(0, 3, 1, 2)


def fire_module(outermost_relu: bool = False, hidden_layers: int = 2) -> FireModule:
    torch.manual_seed(0)
    module = FireModule(4, width=8, hidden_layers=hidden_layers, outermost_relu=outermost_relu, init_c=0.3, init_L=4.0, log_bias=1.0)
    with torch.no_grad():
        module.c.fill_(0.3), module.init_L.fill_(4.0), module.L_multiplier.fill_(1.5)  # threshold L = 6
    return module


@pytest.mark.parametrize(("relu", "layers"), [(False, 2), (True, 1), (False, 0)], ids=["2-hidden", "outermost-relu", "linear-only"])
def test_fire_bias_formula(relu: bool, layers: int) -> None:
    """Positions 0..11 (a left-padded row repeats 0) cross the threshold L = 1.5·4 = 6; a threshold of init_L
    alone (4) or none at all gives other biases below it."""
    module = fire_module(relu, layers)
    positions = np.array([[0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9], list(range(12))])
    with torch.no_grad():
        got = module(torch.from_numpy(positions), 5).numpy()
    assert got.shape == (2, 4, 5, 12)
    want = forge_fire(module, positions, 5)
    assert differs(got, want) < 1e-5
    for multiplier in (1.0 / 1.5, 0.0):  # mutations: L = init_L (multiplier ignored), no threshold
        with torch.no_grad():
            module.L_multiplier.mul_(multiplier)
        mutated = forge_fire(module, positions, 5)
        with torch.no_grad():
            module.L_multiplier.fill_(1.5)
        assert differs(got, mutated) > 1e-3


def test_fire_decode_row_uses_the_absolute_query_position() -> None:
    """A decode step (one new token, query position = its own) equals the last row of the full window's bias."""
    module = fire_module()
    positions = torch.arange(12)[None]
    with torch.no_grad():
        full, step = module(positions, 12), module(positions, 1)
    torch.testing.assert_close(step, full[:, :, -1:], atol=1e-6, rtol=0)


# --- softmax variants ----------------------------------------------------------------------------------


def _sig(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def forge_variant(kind: str, x: np.ndarray, p: dict[str, np.ndarray], o: dict, mutate: str = "") -> np.ndarray:
    """FORGE.md §4, on rows x (B, nh, S, T) with −inf at masked keys (Forge's mask), per head parameters (nh, 1, 1).
    ``mutate`` names a deliberate error the comparison must catch."""
    with np.errstate(all="ignore"):
        if kind == "consmax":
            beta, gamma = (p["gamma"], p["beta"]) if mutate == "swap-beta-gamma" else (p["beta"], p["gamma"])
            return o["base"] ** (x - beta) / gamma
        if kind == "consmax_v2":
            a = x - o["beta_init"] * p["beta_factor"]
            a = np.minimum(a, o["clamp"]) if mutate != "no-clamp" else a
            return o["base"] ** a / (o["gamma_init"] * p["gamma_factor"])
        if kind == "consmax_quan":
            if mutate == "no-rounding":
                return np.exp(x - p["beta"]) / p["gamma"]
            return np.exp(x - np.round(100 * p["beta"]) / 100) / (np.round(10 * p["gamma"]) / 10)
        if kind == "saturatingconsmax":
            x_sat = o["saturation"] + o["beta_init"]
            return np.where(x < x_sat, o["base"] ** (x - p["beta"]), x_sat) / p["gamma"]
        if kind in ("polymax", "vpolymax"):
            a, y0, pw = o["x_intercept"], o["y_intercept"], o["power"]
            slope = (y0 / -a if kind == "polymax" else y0 / a) * (-1 if mutate == "other-slope" else 1)
            flat = x < a if mutate != "no-flat-piece" else np.zeros_like(x, bool)
            return np.where(flat, 0.0, np.where(x <= 0, slope * x + y0, x**pw + y0)) / o["divisor"]
        if kind == "exppolymax":
            pw = o["power"]
            s = (1 / pw) ** (1 / (pw - 1))
            return np.where(x < 0, np.exp(x), (x + s) ** pw + o["y_intercept"]) / o["divisor"]
        if kind == "softermax":
            e = 2.0 ** (x - x.max(-1, keepdims=True))
            return e / e.sum(-1, keepdims=True)
        if kind == "strongermax":
            a = np.minimum(x, o["clamp"]) if o["clamp"] is not None else x
            a = a - (o["xmax_guess"] if o["xmax_guess"] else a.max(-1, keepdims=True))
            r = o["base"] ** (a / p["temperature"])
            if o["div_by_sum"]:
                r = r / (p["obo"] + r.sum(-1, keepdims=True))
            return r / o["divisor"]
        if kind == "sigsoftmax":
            e = np.exp(x) * _sig(x)
            return e / e.sum(-1, keepdims=True)
        if kind == "relumax":
            return np.maximum(x, 0) / o["divisor"]
        if kind == "relu2max":
            return np.maximum(x, 0) ** 2 / o["divisor"]
        if kind == "sigmoidmax":
            return _sig(x) / o["divisor"]
        if kind == "softplus":
            return np.where(x > 20, x, np.log1p(np.exp(x))) / o["divisor"]
        if kind == "pfla_softmax":
            return forge_pfla(x, p, o, mutate)
    raise AssertionError(kind)


def forge_pfla(x: np.ndarray, p: dict[str, np.ndarray], o: dict, mutate: str) -> np.ndarray:
    """Knots xk, values v (y² in linear mode, √y in quadratic): idx = #knots < x in [0, N−1], j = min(idx+1, N−1),
    y = v_idx + (v_j − v_idx)/max(xk_j − xk_idx, 1e-6)·(x − xk_idx); non-finite x gives 0; / (Σy + 1e-6) or (relu(γ) + 1e-6)."""
    knots, roots = p["x_vals"], p["y_vals"]
    finite = np.isfinite(x)
    xs = np.where(finite, x, 0.0)
    n = len(knots)
    idx = np.clip((knots < xs[..., None]).sum(-1), 0, n - 1)
    nxt = np.minimum(idx + 1, n - 1)
    gap = knots[nxt] - knots[idx]
    gap = np.maximum(gap, 1e-6) if mutate != "no-gap-clamp" else gap
    values = roots if o["mode"] == "quadratic" else roots**2
    y = values[idx] + (values[nxt] - values[idx]) / gap * (xs - knots[idx])
    y = xs * y**2 if o["mode"] == "quadratic" else y
    y = np.where(finite, y, 0.0)
    eps = 0.0 if mutate == "no-eps" else 1e-6
    if o["learned_divisor"]:
        return y / (np.maximum(p["gamma_raw"], 0) + eps)
    return y / (y.sum(-1, keepdims=True) + eps)


NH = 4


def variant_case(name: str, seed: int = 0) -> tuple[str, dict, dict[str, np.ndarray], torch.Tensor | None, list[float]]:
    """(kind, filled options, Forge-shaped parameters with random values, our packed params, our consts)."""
    spec = load_spec(case(SOFTMAX, VARIANTS[name])).layer.attention.softmax
    module = make_softmax(spec.type, NH, **spec.options())
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for pname, value in module.initial.items():
            param = getattr(module, pname)
            jitter = torch.rand(param.shape, generator=g, dtype=torch.float64).float() * 0.5 + 0.75  # × [0.75, 1.25)
            param.copy_(value * jitter if pname != "x_vals" else value)
    params = {n: getattr(module, n).detach().double().numpy() for n in module.initial}
    packed = module.packed()
    return spec.type, spec.options(), params, packed.detach() if packed is not None else None, list(module.consts)


def scores_and_mask(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Scores (2, nh, 5 new, 9 keys) in [−3, 3] (plus a few large ones), float32 values, and a causal +
    left-padding mask: row 1's first 7 keys are pads, so its first 3 queries see nothing (pad rows)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-3, 3, (2, NH, 5, 9))
    x[0, :, :, 2] = 30.0  # past softplus's threshold and the clamps
    x = x.astype(np.float32).astype(np.float64)  # what the float32 op sees
    causal = np.arange(9)[None, :] > (4 + np.arange(5))[:, None]
    pad = np.zeros((2, 1, 1, 9), bool)
    pad[1, ..., :7] = True
    return x, causal[None, None] | pad


def ours_weights(kind: str, x: np.ndarray, masked: np.ndarray, packed: torch.Tensor | None, consts: list[float]) -> np.ndarray:
    scores = torch.from_numpy(np.where(masked, mask_value(torch.float32), x)).float()
    return variant_weights(scores, torch.from_numpy(masked), kind, packed, consts).double().numpy()


def _forge_params(params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Parameters as Forge broadcasts them over (B, nh, S, T): per-head (nh, 1, 1) stays, scalars (1,) too."""
    return params


VARIANT_IDS = list(VARIANTS)


@pytest.mark.parametrize("name", VARIANT_IDS)
def test_variant_formula(name: str) -> None:
    """Our op on masked rows (finite mask value) equals Forge's formula on −inf rows, masked keys exactly 0."""
    kind, o, params, packed, consts = variant_case(name)
    x, masked = scores_and_mask()
    got = ours_weights(kind, x, masked, packed, consts)
    want = forge_variant(kind, np.where(masked, -np.inf, x), _forge_params(params), o)
    valid = ~np.broadcast_to(masked, x.shape)
    assert np.isfinite(got).all()
    assert (got[~valid] == 0).all()  # masked keys: exactly no weight, pad rows included
    rows = ~masked.all(-1, keepdims=True) & valid  # Forge's pad rows are NaN or arbitrary; ours are 0
    assert differs(got[rows], want[rows]) < 1e-5 * max(1.0, np.abs(want[rows]).max())


MUTATIONS = [  # (variant case, mutation of the formula that the comparison must catch)
    ("consmax", "swap-beta-gamma"),
    ("consmax_v2", "no-clamp"),
    ("consmax_quan", "no-rounding"),
    ("polymax", "other-slope"),
    ("polymax", "no-flat-piece"),
    ("vpolymax", "other-slope"),
]


@pytest.mark.parametrize(("name", "mutate"), MUTATIONS, ids=[f"{n}-{m}" for n, m in MUTATIONS])
def test_variant_formula_mutation_fails(name: str, mutate: str) -> None:
    kind, o, params, packed, consts = variant_case(name)
    x, masked = scores_and_mask()
    got = ours_weights(kind, x, masked, packed, consts)
    want = forge_variant(kind, np.where(masked, -np.inf, x), params, o, mutate)
    rows = ~np.broadcast_to(masked, x.shape) & ~masked.all(-1, keepdims=True)
    assert differs(got[rows], want[rows]) > 1e-3


def test_pfla_clamps() -> None:
    """Two knots at one x (learned knots may meet) make a zero-width segment: the 1e-6 clamp keeps its slope
    finite; a learned divisor that ReLU sends to 0 divides by 1e-6. Without either clamp: inf / NaN."""
    kind, o, params, packed, consts = variant_case("pfla_softmax")
    n = len(params["x_vals"])
    params["x_vals"][3] = params["x_vals"][2]  # a zero-width segment
    params["gamma_raw"] = np.array(-1.0)  # relu → 0
    packed = torch.from_numpy(np.concatenate([params["x_vals"], params["y_vals"], [-1.0]])).float()
    x, masked = scores_and_mask()
    x[..., 0] = np.float32(params["x_vals"][2] - 1e-3)  # lands in the segment ending at the doubled knot
    got = ours_weights(kind, x, masked, packed, consts)
    want = forge_variant(kind, np.where(masked, -np.inf, x), params, o)
    rows = ~np.broadcast_to(masked, x.shape) & ~masked.all(-1, keepdims=True)
    assert np.isfinite(got).all() and differs(got[rows], want[rows]) < 1e-5 * np.abs(want[rows]).max()
    assert n == 4
    for mutate in ("no-gap-clamp", "no-eps"):
        assert differs(got[rows], forge_variant(kind, np.where(masked, -np.inf, x), params, o, mutate)[rows]) > 1.0


@pytest.mark.parametrize("name", VARIANT_IDS)
def test_variant_same_in_both_languages(name: str) -> None:
    """``lowerings/softmax_variants.py`` (onnxscript, run eagerly) against the eager op, float32."""
    kind, _, _, packed, consts = variant_case(name, seed=1)
    x, masked = scores_and_mask(seed=1)
    scores = np.where(masked, mask_value(torch.float32), x).astype(np.float32)
    want = ours_weights(kind, x, masked, packed, consts)
    params = packed.numpy() if packed is not None else None
    got = np.asarray(onnx_variants.variant_weights(op, scores, np.broadcast_to(masked, x.shape).copy(), kind, params, consts, NH).value)
    assert differs(got, want) < 1e-5 * max(1.0, np.abs(want).max())


# --- the spec: keys, refusals -----------------------------------------------------------------------------

REFUSED = {
    "squareplus": ((SOFTMAX, {"type": "squareplus"}), "layer.attention.softmax.type: 'squareplus' is broken upstream"),
    "div-by-seq-len": ((SOFTMAX, {"type": "relumax", "div_by_seq_len": True}), "layer.attention.softmax.div_by_seq_len: divides every row"),
    "option-of-another-variant": ((SOFTMAX, {"type": "relumax", "beta_init": 1.0}), "softmax.beta_init: is not an option of softmax variant 'relumax'"),
    "sigsoftmax-base": ((SOFTMAX, {"type": "sigsoftmax", "base": 2.0}), "only the Euler base works upstream"),
    "variant-with-mla": ((SOFTMAX, {"type": "consmax"}, f"{ATT}.mechanism", "mla", f"{ATT}.num_kv_heads", ..., f"{ATT}.mla_latent_dim", 16), "layer.attention.softmax: is implemented for attention.mechanism standard, not 'mla'"),
    "variant-with-sinks": ((SOFTMAX, {"type": "consmax"}, f"{ATT}.sinks", True), "layer.attention.sinks: a sink joins"),
    "fire-bidirectional": ((f"{ATT}.fire", {}, f"{ATT}.causal", False), "layer.attention.fire: FIRE needs causal attention"),
    "fire-complex": ((f"{ATT}.fire", {}, f"{ATT}.mechanism", "complex"), "layer.attention.fire: is implemented for attention.mechanism standard"),
    "interleaved-without-rope": ((ROPE, {"type": "learned", "rope_layout": "interleaved"}), "embedding.positional_encoding.rope_layout: 'interleaved' applies to RoPE"),
    "interleaved-complex": ((f"{ROPE}.rope_layout", "interleaved", f"{ATT}.mechanism", "complex"), "rope_layout: 'interleaved' is not available with attention.mechanism 'complex'"),
    "soap-scaled": ((f"{ROPE}.rope_variant", "soap", f"{ROPE}.rope_scaling", {"type": "linear", "factor": 2.0}), "rope_scaling: SOAP turns every pair"),
    "soap-angles-without-soap": ((f"{ROPE}.soap_num_angles", 64), "embedding.positional_encoding.soap_num_angles: applies to rope_variant soap"),
    "pfla-bounds": ((SOFTMAX, {"type": "pfla_softmax", "x_min": 20.0}), "layer.attention.softmax.x_min: 20.0 must be below x_max 10.0"),
    "polymax-intercept": ((SOFTMAX, {"type": "polymax", "x_intercept": 1.0}), "layer.attention.softmax.x_intercept"),
}  # fmt: skip


@pytest.mark.parametrize("name", REFUSED, ids=REFUSED.keys())
def test_refused_with_the_key_path(name: str) -> None:
    pairs, message = REFUSED[name]
    with pytest.raises(SpecError) as err:
        load_spec(case(*pairs))
    assert message in str(err.value) and "\n" not in str(err.value), str(err.value)


def test_cli_check_refuses_in_one_line(tmp_path) -> None:  # noqa: ANN001
    """``check`` of a spec with squareplus: exit 2, one line naming the key."""
    import yaml
    from click.testing import CliRunner

    from yamlllm_export.cli import main

    path = tmp_path / "forge.yaml"
    path.write_text(yaml.safe_dump(case(SOFTMAX, {"type": "squareplus"})))
    result = CliRunner().invoke(main, ["check", str(path)])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "layer.attention.softmax.type" in lines[0], result.output


def test_defaults_are_forges() -> None:
    """Unset options take Forge's CLI defaults (what its checkpoints' model_args hold); the normalised spec shows them."""
    s = load_spec(case(SOFTMAX, {"type": "consmax"}, f"{ATT}.fire", {}, f"{ROPE}.rope_variant", "soap"))
    att, pe = s.layer.attention, s.embedding.positional_encoding
    assert (att.softmax.base, att.softmax.beta_init, att.softmax.gamma_init, att.softmax.divisor) == (E, 2.5, 100.0, None)
    assert (att.fire.mlp_width, att.fire.num_hidden_layers, att.fire.init_c, att.fire.init_L, att.fire.log_bias) == (32, 1, 0.1, 512.0, 1.0)
    assert pe.soap_num_angles == 512 and load_spec(s.to_dict()) == s
    for name in VARIANTS:  # every variant's normalised spec (model.yaml) loads back to the same spec
        s = load_spec(case(SOFTMAX, VARIANTS[name]))
        assert load_spec(s.to_dict()) == s, name


# --- the eager model: left padding exact ------------------------------------------------------------------

PADDED = case(
    f"{ROPE}.rope_layout", "interleaved", f"{ROPE}.rotary_dim", 8, SOFTMAX, VARIANTS["strongermax"], f"{ATT}.fire", {**FIRE, "shared": True}
)


@torch.no_grad()
def test_left_padding_is_exact_in_the_eager_model() -> None:
    """A row left-padded by 3 gives the logits of the row alone (FIRE counts positions from the first token,
    masked keys weigh exactly 0 in the variant), prefill and two cached decode steps."""
    model = build_model(load_spec(PADDED), seed=0)
    ids = torch.randint(1, 256, (1, 9), generator=torch.Generator().manual_seed(0))
    alone, past = model(ids)
    padded_ids = torch.cat([torch.zeros(1, 3, dtype=torch.long), ids], dim=1)
    mask = torch.cat([torch.zeros(1, 3, dtype=torch.long), torch.ones(1, 9, dtype=torch.long)], dim=1)
    padded, padded_past = model(padded_ids, mask)
    torch.testing.assert_close(padded[:, 3:], alone, atol=1e-5, rtol=0)
    for t in (5, 17):
        step = torch.tensor([[t]])
        alone, past = model(step, past_key_values=past)
        mask = torch.cat([mask, torch.ones(1, 1, dtype=torch.long)], dim=1)
        padded, padded_past = model(step, mask, past_key_values=padded_past)
        torch.testing.assert_close(padded, alone, atol=1e-5, rtol=0)


# --- parity: ONNX Runtime vs PyTorch, left-padded prefill + cached decode (validate) --------------------------

GRID = [v for v in VARIANTS if v not in ("consmax_v2", "strongermax", "pfla_softmax")]  # those: tests/test_feature_matrix.py


@pytest.mark.parametrize("name", GRID, ids=[f"softmax-{v}-portable" for v in GRID])
def test_variant_parity(name: str, export_case, tmp_path) -> None:  # noqa: ANN001
    folder = export_case(f"softmax-{name}", case(SOFTMAX, VARIANTS[name]), "portable")
    assert_parity(folder, tmp_path / "parity")


def test_shared_fire_interleaved_variant_parity(export_case, tmp_path) -> None:  # noqa: ANN001
    """Everything at once, FIRE shared by both layers (one set of weights, ``fire.*``), on ort."""
    folder = export_case("forge-shared-fire", PADDED, "ort")
    assert_parity(folder, tmp_path / "parity")
