"""Position encodings: each table against an independent computation of its definition, then the parity
grid (feature × target) through the production path (spec → build → export → ``validate_folder``)."""

from __future__ import annotations

import math

import pytest
import torch

from tests.feature_cases import ROPE, case
from yamlllm_export import load_spec
from yamlllm_export.lowerings import TARGET_NAMES
from yamlllm_export.model.builders import rope_scaling
from yamlllm_export.model.positions import DynamicNTKRotary, LongRopeRotary, RotaryCache, SinusoidalPositions
from yamlllm_export.ops.attention_bias import alibi_slopes
from yamlllm_export.ops.rope_scaling import RopeScaling, dynamic_ntk_inv_freq, yarn_attention_factor
from yamlllm_export.ops.rotary import apply_rotary
from yamlllm_export.validate.runner import ValidateOptions, validate_folder

D, THETA, ORIG = 16, 10000.0, 32  # rotary dim, base, original context


def scaling(kind: str, factor: float, original: int, **given: float) -> RopeScaling:
    """The builder's ``RopeScaling`` for a spec with this ``rope_scaling`` (the schema fills the rest)."""
    spec = load_spec(case(f"{ROPE}.rope_scaling", {"type": kind, "factor": factor, "original_max_position_embeddings": original, **given}))
    return rope_scaling(spec.embedding.positional_encoding.rope_scaling)


def angles(positions: list[float], inv_freq: list[float]) -> torch.Tensor:
    return torch.tensor([[p * f for f in inv_freq] for p in positions], dtype=torch.float64)


def plain_freqs(d: int = D, theta: float = THETA) -> list[float]:
    return [theta ** (-2 * i / d) for i in range(d // 2)]


def freqs_of(cache: RotaryCache) -> torch.Tensor:
    """θ_i recovered from the table's row at position 1 (angle = θ_i there); YaRN's scale divided out."""
    scale = torch.sqrt(cache.cos[0].double() ** 2 + cache.sin[0].double() ** 2)
    return torch.atan2(cache.sin[1].double() / scale, cache.cos[1].double() / scale)


# --- tables ------------------------------------------------------------------------------------------


def test_plain_rope_table() -> None:
    cache = RotaryCache(64, D, theta=THETA)
    expected = angles(list(range(64)), plain_freqs())
    torch.testing.assert_close(cache.cos.double(), expected.cos(), atol=1e-6, rtol=0)
    torch.testing.assert_close(cache.sin.double(), expected.sin(), atol=1e-6, rtol=0)


def test_linear_scaling_is_position_interpolation() -> None:
    """Linear scaling at position p is plain RoPE at position p / factor."""
    factor = 4.0
    cache = RotaryCache(64, D, theta=THETA, scaling=scaling("linear", factor, ORIG))
    expected = angles([p / factor for p in range(64)], plain_freqs())
    torch.testing.assert_close(cache.cos.double(), expected.cos(), atol=1e-6, rtol=0)
    torch.testing.assert_close(cache.sin.double(), expected.sin(), atol=1e-6, rtol=0)


def test_llama3_limits() -> None:
    """Wavelengths below L_orig/high_freq_factor keep θ, above L_orig/low_freq_factor get θ/factor, between
    lies strictly between the two, with the smooth factor s = (L_orig/λ − low)/(high − low)."""
    factor, low, high = 8.0, 1.0, 4.0
    s = scaling("llama3", factor, ORIG, low_freq_factor=low, high_freq_factor=high)
    got = freqs_of(RotaryCache(64, D, theta=THETA, scaling=s))
    kinds = set()
    for i, theta_i in enumerate(plain_freqs()):
        wavelength = 2 * math.pi / theta_i
        if wavelength < ORIG / high:
            kinds.add("high")
            assert got[i].item() == pytest.approx(theta_i, rel=1e-6)
        elif wavelength > ORIG / low:
            kinds.add("low")
            assert got[i].item() == pytest.approx(theta_i / factor, rel=1e-6)
        else:
            kinds.add("mid")
            smooth = (ORIG / wavelength - low) / (high - low)
            assert theta_i / factor < got[i].item() < theta_i
            assert got[i].item() == pytest.approx((1 - smooth) * theta_i / factor + smooth * theta_i, rel=1e-6)
    assert kinds == {"high", "mid", "low"}  # the test dims exercise all three bands


def test_yarn_ramp_and_attention_factor() -> None:
    """Dims rotating more than beta_fast times over L_orig keep θ, fewer than beta_slow get θ/factor; cos and
    sin are scaled by 0.1·ln(factor) + 1."""
    factor, beta_fast, beta_slow = 4.0, 32.0, 1.0
    cache = RotaryCache(64, D, theta=THETA, scaling=scaling("yarn", factor, 4096, beta_fast=beta_fast, beta_slow=beta_slow))
    scale = torch.sqrt(cache.cos.double() ** 2 + cache.sin.double() ** 2)
    torch.testing.assert_close(scale, torch.full_like(scale, 0.1 * math.log(factor) + 1), atol=1e-6, rtol=0)
    got = freqs_of(cache)
    kinds = set()
    for i, theta_i in enumerate(plain_freqs()):
        rotations = 4096 * theta_i / (2 * math.pi)
        if rotations > beta_fast * 1.5:  # clear of the floor/ceil at the ramp's ends
            kinds.add("fast")
            assert got[i].item() == pytest.approx(theta_i, rel=1e-6)
        elif rotations < beta_slow / 1.5:
            kinds.add("slow")
            assert got[i].item() == pytest.approx(theta_i / factor, rel=1e-6)
        else:
            assert theta_i / factor * (1 - 1e-6) <= got[i].item() <= theta_i * (1 + 1e-6)
    assert kinds == {"fast", "slow"}


@pytest.mark.parametrize("truncate", [True, False], ids=["truncated", "fractional-bounds"])
def test_yarn_matches_transformers(truncate: bool) -> None:
    """GPT-OSS's YaRN (head_dim 64, base 150 000, factor 32 over 4096) against transformers' own table, with the
    ramp's bounds rounded outward (HF's default) and left fractional (``truncate: false``, GPT-OSS's)."""
    transformers = pytest.importorskip("transformers")
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    params = {"factor": 32.0, "original_max_position_embeddings": 4096, "beta_fast": 32.0, "beta_slow": 1.0}
    config = transformers.GptOssConfig(
        head_dim=64, rope_parameters={"rope_type": "yarn", "rope_theta": 150000.0, "truncate": truncate, **params}
    )
    expected, attention_factor = ROPE_INIT_FUNCTIONS["yarn"](config, None)
    cache = RotaryCache(8, 64, theta=150000.0, scaling=scaling("yarn", 32.0, 4096, beta_fast=32.0, beta_slow=1.0, truncate=truncate))
    torch.testing.assert_close(freqs_of(cache), expected.double(), rtol=1e-5, atol=0)
    torch.testing.assert_close(cache.cos[0].double(), torch.full((32,), attention_factor, dtype=torch.float64), rtol=1e-6, atol=0)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"attention_factor": None, "mscale": None, "mscale_all_dim": None}, 0.1 * math.log(8) + 1),
        ({"attention_factor": 1.25, "mscale": None, "mscale_all_dim": None}, 1.25),
        ({"attention_factor": None, "mscale": 0.707, "mscale_all_dim": 0.707}, 1.0),  # DeepSeek-V2
        ({"attention_factor": None, "mscale": 1.0, "mscale_all_dim": 0.5}, (0.1 * math.log(8) + 1) / (0.05 * math.log(8) + 1)),
    ],
    ids=["default", "given", "deepseek-equal", "ratio"],
)
def test_yarn_attention_factor(kwargs: dict, expected: float) -> None:
    assert yarn_attention_factor(8.0, **kwargs) == pytest.approx(expected)


def test_dynamic_ntk_base() -> None:
    """Up to L_orig the base is theta; beyond, theta · (factor·L/L_orig − (factor − 1))^(d/(d−2))."""
    factor = 2.0
    for length in (1, 20, ORIG):
        got = dynamic_ntk_inv_freq(
            torch.tensor([float(length)], dtype=torch.float64), rotary_dim=D, theta=THETA, factor=factor, original_max=ORIG
        )
        torch.testing.assert_close(got, torch.tensor(plain_freqs(), dtype=torch.float64))
    length = 48
    base = THETA * (factor * length / ORIG - (factor - 1)) ** (D / (D - 2))
    got = dynamic_ntk_inv_freq(
        torch.tensor([float(length)], dtype=torch.float64), rotary_dim=D, theta=THETA, factor=factor, original_max=ORIG
    )
    torch.testing.assert_close(got, torch.tensor(plain_freqs(theta=base), dtype=torch.float64))
    # one base per row, from that row's max(position) + 1: row 0 is 48 long, row 1 is 20 (below L_orig)
    positions = torch.tensor([[46, 47], [18, 19]])
    cos, sin, index = DynamicNTKRotary(D, theta=THETA, factor=factor, original_max=ORIG).tables(positions, torch.float64)
    assert cos.shape == (4, D // 2)
    torch.testing.assert_close(cos[index[0]], angles([46, 47], plain_freqs(theta=base)).cos())
    torch.testing.assert_close(sin[index[1]], angles([18, 19], plain_freqs()).sin())


def test_longrope_tables_switch_over_the_whole_batch() -> None:
    """θ_i / r_i with r the short factors while max(position_ids) + 1 <= L_orig, the long ones past it, decided
    once for the batch (transformers' rule): a short row beside a long one turns with the long factors too.
    cos and sin carry sqrt(1 + ln(factor)/ln(L_orig)) on both sides of the switch."""
    short, long = [1.0 + 0.1 * i for i in range(D // 2)], [1.0 + 3.0 * i for i in range(D // 2)]
    s = scaling("longrope", 4.0, ORIG, short_factor=short, long_factor=long)
    rotary = LongRopeRotary(128, D, theta=THETA, scaling=s)
    scale = math.sqrt(1 + math.log(4.0) / math.log(ORIG))

    def want(rows: list[list[int]], factors: list[float]) -> torch.Tensor:
        return torch.cat([angles(r, [f / r_i for f, r_i in zip(plain_freqs(), factors, strict=True)]).cos() * scale for r in rows])

    for rows, factors in (
        ([[ORIG - 2, ORIG - 1]], short),  # max + 1 == L_orig: still short
        ([[ORIG - 1, ORIG]], long),  # one past
        ([[3, 4], [ORIG, ORIG + 1]], long),  # row 0 alone would be short
        ([[3, 4], [20, 21]], short),
    ):
        cos, _, index = rotary.tables(torch.tensor(rows), torch.float64)
        assert index.tolist() == [[2 * b, 2 * b + 1] for b in range(len(rows))]
        torch.testing.assert_close(cos, want(rows, factors), atol=1e-6, rtol=0)


@torch.no_grad()
def test_dynamic_ntk_cache_differs_from_recompute() -> None:
    """Why the grid skips the incremental check for dynamic NTK: below the original context, decoding with a
    cache equals recomputing the sequence; past it, the cached keys were rotated with the smaller base of their
    own step, so the cache differs from a recompute (as in Hugging Face), while plain RoPE agrees."""
    from yamlllm_export import build_model

    def keys(feature: str, total: int) -> tuple[torch.Tensor, torch.Tensor]:
        model = build_model(spec_for(feature), seed=0)
        ids = torch.randint(1, 256, (1, total), generator=torch.Generator().manual_seed(0))
        _, past = model(ids[:, : total - 4])
        for t in range(total - 4, total):  # 4 cached decode steps
            _, past = model(ids[:, t : t + 1], past_key_values=past)
        _, full = model(ids)
        return past[0][0], full[0][0]  # layer 0 keys (1, nkv, total, hs)

    for total in (ORIG_CTX - 8, ORIG_CTX + 16):
        cached, full = keys("rope", total)
        torch.testing.assert_close(cached, full, atol=1e-5, rtol=0)
    cached, full = keys("rope-dynamic", ORIG_CTX)
    torch.testing.assert_close(cached, full, atol=1e-5, rtol=0)
    cached, full = keys("rope-dynamic", ORIG_CTX + 16)
    assert (cached - full).abs().max() > 1e-3


def test_sinusoidal_table_and_not_a_weight() -> None:
    d = 10
    module = SinusoidalPositions(64, d)
    for p in (0, 1, 7, 63):
        for i in range(d // 2):
            assert module.table[p, 2 * i].item() == pytest.approx(math.sin(p / 10000 ** (2 * i / d)), abs=1e-6)
            assert module.table[p, 2 * i + 1].item() == pytest.approx(math.cos(p / 10000 ** (2 * i / d)), abs=1e-6)
    assert module.state_dict() == {}
    x = torch.zeros(1, 2, d)
    torch.testing.assert_close(module(x, torch.tensor([[5, 9]])), module.table[[5, 9]][None])


def test_partial_rotary_rotates_only_the_first_dims() -> None:
    """rotary_dim 8 of head 16: features 8.. pass through; the first 8 turn as complex numbers
    (x_j + i·x_{j+4})·e^{i·p·θ_j} (half-rotation layout)."""
    cache = RotaryCache(16, 8, theta=THETA)
    x = torch.randn(1, 3, 2, 16, dtype=torch.float64)
    pos = torch.tensor([[0, 5, 11]])
    y = apply_rotary(x, pos, cache.cos.double(), cache.sin.double())
    torch.testing.assert_close(y[..., 8:], x[..., 8:])
    z = (
        torch.complex(x[..., :4], x[..., 4:8])
        * torch.polar(torch.ones(3, 4, dtype=torch.float64), angles([0, 5, 11], plain_freqs(8)))[None, :, None]
    )
    torch.testing.assert_close(y[..., :4], z.real, atol=1e-6, rtol=0)
    torch.testing.assert_close(y[..., 4:8], z.imag, atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    ("heads", "exponents"),
    [
        (4, [2, 4, 6, 8]),
        # 6 = 4 + 2: the 4-head slopes 2^-2k, then every other of the 8-head slopes 2^-k: 2^-1, 2^-3
        (6, [2, 4, 6, 8, 1, 3]),
        (8, [1, 2, 3, 4, 5, 6, 7, 8]),
        # 12 = 8 + 4: the 8-head slopes, then every other of the 16-head slopes 2^-k/2: 2^-0.5, 2^-1.5, ...
        (12, [1, 2, 3, 4, 5, 6, 7, 8, 0.5, 1.5, 2.5, 3.5]),
    ],
    ids=["4", "6", "8", "12"],
)
def test_alibi_slopes_paper_recipe(heads: int, exponents: list[float]) -> None:
    """Press et al. 2022: for n a power of two, slopes 2^(-8k/n), k = 1..n; otherwise the closest power of two
    below, then the odd-indexed slopes of twice that many heads."""
    torch.testing.assert_close(alibi_slopes(heads), torch.tensor([2.0**-e for e in exponents]))


# --- parity grid: spec → build → export → validate_folder (ORT CPU vs PyTorch, fp32) ---------------------

MAX_POS, ORIG_CTX = 64, 32  # long context (prompt up to MAX_POS) crosses the original context of the scalings
# YaRN's scale s is the context ratio MAX_POS / ORIG_CTX = 2 (Hugging Face derives it so when both are given)
PE = "embedding.positional_encoding"


def _scaled(kind: str, factor: float, **extra: float) -> dict:
    return {"type": kind, "factor": factor, "original_max_position_embeddings": ORIG_CTX, **extra}


def _alibi(num_kv_heads: int) -> tuple:
    return (
        f"{PE}.type", "alibi", "layer.attention.mechanism", "alibi", "embedding.embedding_dim", 48, "layer.hidden_dim", 48,
        "layer.attention.num_heads", 6, "layer.attention.num_kv_heads", num_kv_heads,
    )  # fmt: skip


FEATURES: dict[str, tuple] = {
    "learned": (f"{PE}.type", "learned"),
    "sinusoidal": (f"{PE}.type", "sinusoidal"),
    "none": (f"{PE}.type", "none"),
    "rope-partial": (f"{PE}.partial_rotary_factor", 0.5),  # of head_dim 16: rotary_dim 8
    "rope-linear": (f"{PE}.rope_scaling", _scaled("linear", 2.0)),
    "rope-dynamic": (f"{PE}.rope_scaling", _scaled("dynamic", 2.0)),
    "rope-llama3": (f"{PE}.rope_scaling", _scaled("llama3", 8.0, low_freq_factor=1.0, high_freq_factor=4.0)),
    "rope-yarn": (f"{PE}.rope_scaling", _scaled("yarn", 2.0)),
    "rope-yarn-partial": (f"{PE}.rope_scaling", _scaled("yarn", 2.0, beta_fast=8.0), f"{PE}.rotary_dim", 8),
    "alibi-6-heads": _alibi(6),
    "alibi-gqa": _alibi(2),
}  # plain RoPE: tests/test_parity.py (tiny-llama)
# prompts of 40/27/14 tokens (left padded) + 8 decode steps: the longest row passes ORIG_CTX during prefill
VALIDATE = {"steps": 8, "batch": 3, "prompt_len": 40}


def spec_for(feature: str) -> dict:
    plain = feature == "rope"
    return case("name", f"tiny-{feature}", "embedding.max_position_embeddings", MAX_POS, *(() if plain else FEATURES[feature]))


def test_position_ids_input_only_where_positions_are_read() -> None:
    from yamlllm_export import load_spec
    from yamlllm_export.runtime.io_contract import IOContract

    has = {f: IOContract.for_spec(load_spec(spec_for(f))).has_position_ids for f in ("learned", "sinusoidal", "none", "rope", "alibi-gqa")}
    assert has == {"learned": True, "sinusoidal": True, "none": False, "rope": True, "alibi-gqa": False}


GRID = [(f, t) for f in FEATURES for t in TARGET_NAMES]


@pytest.mark.parametrize(("feature", "target"), GRID, ids=[f"{f}-{t}" for f, t in GRID])
def test_parity(feature: str, target: str, export_case, tmp_path) -> None:  # noqa: ANN001
    folder = export_case(f"positions-{feature}", spec_for(feature), target)
    report = validate_folder(folder, ValidateOptions(eps=("cpu",), report_dir=tmp_path, **VALIDATE))
    rows = {r.check: r for r in report.results}
    print(f"\n{feature}-{target}: " + ", ".join(f"{c} {r.measured}" for c, r in rows.items()))
    if feature == "rope-dynamic":
        # The cached keys of a dynamic-NTK model keep the rotation (base) of the step that wrote them, so decoding
        # past the original context with a cache legitimately differs from recomputing the whole sequence with
        # the final base (see test_dynamic_ntk_cache_differs_from_recompute; the issue: test dynamic NTK on
        # prefill). PyTorch and ONNX do the same, so prefill, decode, long context and tokens stay exact.
        rows.pop("incremental")
    failed = {c: f"{r.measured} ({r.detail})" for c, r in rows.items() if r.status != "pass"}
    assert not failed, failed
