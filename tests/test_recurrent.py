"""Recurrent-state layers (``layer_types``; docs/recurrent.md).

1. Each kind's eager op against a token-by-token recurrence written here (not the chunked / cumsum form),
   with pads on both sides; deliberate breaks (conv state off by one, a pad updating the state, pads zeroed in
   place, the learned scale ignored) must fail the same check; the 1e-3 clamp has its own test.
2. Per kind × target: a batch with a left-padded, a right-padded and a full row, prefilled and decoded
   3 steps through the folder's caches and states on ONNX Runtime, against the eager model and against
   each row run alone (the logits of its real tokens and every state after every step).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests import ort_run
from tests.feature_cases import CASES_BY_ID
from yamlllm_export import build_model
from yamlllm_export.ops.linear_attention import linear_attention
from yamlllm_export.ops.short_conv import short_conv

MASK = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]])  # left-, right-padded, full


@pytest.fixture(autouse=True, scope="module")
def _no_grad():
    """Inference only here; a module-level ``torch.set_grad_enabled(False)`` would leak into every test that an
    xdist worker runs after importing this file (training tests then fail)."""
    with torch.no_grad():
        yield


# ---- 1. token-by-token recurrences -------------------------------------------------------------------------


def conv_recurrence(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, state: torch.Tensor, mask: torch.Tensor):
    """One token at a time: a real token appends its input to the window of the last L − 1 inputs and
    outputs Σ_j w[:, j] · window[j]; a pad outputs nothing (0 here) and leaves the window alone."""
    B, S, C = x.shape
    ys = torch.zeros(B, S, C)
    window = [state[:, :, j].clone() for j in range(state.shape[2])]  # oldest first, per row below
    for row in range(B):
        win = [t[row] for t in window]
        for t in range(S):
            if not mask[row, t]:
                continue
            taps = [*win, x[row, t]]  # L inputs, oldest first
            ys[row, t] = sum(w[:, j] * taps[j] for j in range(w.shape[1])) + (b if b is not None else 0)
            win = taps[1:]
        for j, value in enumerate(win):
            window[j][row] = value
    return ys, torch.stack(window, dim=2)


def linear_recurrence(q, k, v, s: float, kv_sum, k_sum, mask, heads: int):
    """Forge's linear attention, one token at a time: S += φ(k) ⊙ v, z += φ(k), y = φ(q) ⊙ S / max(φ(q)·z, 1e-3)."""
    B, S, _ = q.shape

    def phi(u: torch.Tensor) -> torch.Tensor:
        return torch.where(s * u > 0, s * u, torch.exp(s * u) - 1) + 1

    kv_sum, k_sum = kv_sum.clone(), k_sum.clone()
    ys = torch.zeros(B, S, heads, q.shape[-1] // heads)
    for row in range(B):
        for t in range(S):
            qt, kt, vt = (u[row, t].view(heads, -1) for u in (q, k, v))
            if mask[row, t]:
                kv_sum[row] += phi(kt) * vt
                k_sum[row] += phi(kt)
            den = (phi(qt) * k_sum[row]).sum(-1, keepdim=True)
            ys[row, t] = phi(qt) * kv_sum[row] / torch.maximum(den, torch.tensor(1e-3))
    return ys.view(B, S, -1), kv_sum, k_sum


def _real(y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return y * mask[..., None]


def conv_error(op, *, bias: bool = True) -> float:
    """max |Δ| between ``op`` and the recurrence on a padded batch, from a non-zero state, outputs and state."""
    g = torch.Generator().manual_seed(0)
    C, L = 8, 4
    x, w = torch.randn(3, 6, C, generator=g), torch.randn(C, L, generator=g)
    b = torch.randn(C, generator=g) if bias else None
    state = torch.randn(3, C, L - 1, generator=g)
    y, present = op(x, w, b, state, MASK)
    ref_y, ref_state = conv_recurrence(x, w, b, state, MASK)
    return max((_real(y, MASK) - ref_y).abs().max().item(), (present - ref_state).abs().max().item())


def linear_error(op, *, scale: float = 0.7) -> float:
    g = torch.Generator().manual_seed(0)
    H, D = 2, 4
    q, k, v = (torch.randn(3, 6, H * D, generator=g) for _ in range(3))
    kv_sum, k_sum = torch.randn(3, H, D, generator=g), torch.rand(3, H, D, generator=g)
    y, s_out, z_out = op(q, k, v, torch.tensor(scale), kv_sum, k_sum, MASK, H)
    ref_y, ref_s, ref_z = linear_recurrence(q, k, v, scale, kv_sum, k_sum, MASK, H)
    return max(
        (_real(y, MASK) - _real(ref_y, MASK)).abs().max().item(), (s_out - ref_s).abs().max().item(), (z_out - ref_z).abs().max().item()
    )


def test_short_conv_matches_its_recurrence():
    assert conv_error(short_conv) < 1e-5
    assert conv_error(short_conv, bias=False) < 1e-5


def _state_off_by_one(x, w, b, state, mask):
    y, _ = short_conv(x, w, b, state, mask)
    seq = torch.cat([state, x.transpose(1, 2)], dim=2)  # a state that keeps the window one step early
    n = mask.sum(1)
    return y, torch.stack([seq[r, :, n[r] - 1 : n[r] - 1 + state.shape[2]] for r in range(len(x))])


def _pads_update_state(x, w, b, state, mask):
    return short_conv(x, w, b, state, torch.ones_like(mask))


def _pads_zeroed_in_place(x, w, b, state, mask):
    """What transformers does: pads' inputs set to 0 where they are (a left pad then sits between the state and
    the first real input; a right pad shifts the state)."""
    return short_conv(x * mask[..., None], w, b, state, torch.ones_like(mask))


@pytest.mark.parametrize("broken", [_state_off_by_one, _pads_update_state, _pads_zeroed_in_place], ids=lambda f: f.__name__[1:])
def test_short_conv_breaks_fail(broken):
    assert conv_error(broken) > 1e-2


def test_linear_attention_matches_its_recurrence():
    assert linear_error(linear_attention) < 1e-5


def _scale_ignored(q, k, v, s, kv_sum, k_sum, mask, heads):
    return linear_attention(q, k, v, torch.tensor(1.0), kv_sum, k_sum, mask, heads)


def _pads_add_to_sums(q, k, v, s, kv_sum, k_sum, mask, heads):
    return linear_attention(q, k, v, s, kv_sum, k_sum, torch.ones_like(mask), heads)


@pytest.mark.parametrize("broken", [_scale_ignored, _pads_add_to_sums], ids=lambda f: f.__name__[1:])
def test_linear_attention_breaks_fail(broken):
    assert linear_error(broken) > 1e-2


def test_linear_attention_clamp():
    """A normaliser below 1e-3 is replaced by 1e-3: y = φ(q)·S / 1e-3 (the recurrence above says the same)."""
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, 1, 4, generator=g) for _ in range(3))
    mask = torch.zeros(1, 1, dtype=torch.int64)  # a pad: the sums stay as given
    kv_sum, k_sum = torch.ones(1, 1, 4), torch.full((1, 1, 4), 1e-5)
    y, _, _ = linear_attention(q, k, v, torch.tensor(0.5), kv_sum, k_sum, mask, 1)
    phi_q = torch.nn.functional.elu(0.5 * q) + 1
    assert torch.allclose(y, phi_q * 1.0 / 1e-3, rtol=1e-5)
    assert not torch.allclose(y, phi_q / (phi_q * 1e-5).sum(), rtol=1e-2)  # the unclamped value differs


# ---- 2. exported folders: padded batch + decode through the states, each row alone ----------------------

KINDS = {"short_conv": "short-conv-layer-0", "short_conv_only": "short-conv-only-bias", "linear_attention": "linear-attention-layer-0",
         "identity": "identity-layer-1", "infinite_attention": "infinite-heads-layer-0"}  # fmt: skip
GRID = [pytest.param(kind, target, id=f"{kind}-{target}") for kind in KINDS for target in ("ort", "onnx", "portable")]


def _run(sess, folder, ids, mask, past):
    names = ort_run.contract(folder).present_names()
    out = sess.run(None, ort_run.feeds(folder, ids, mask, past=past))
    return out[0], out[1:], names


@pytest.mark.parametrize(("kind", "target"), GRID)
def test_padded_batch_decodes_like_each_row_alone(export_case, kind, target):
    spec = CASES_BY_ID[KINDS[kind]]
    folder = export_case(KINDS[kind], spec, target)
    model = build_model(spec, seed=0)
    sess = ort_run.session(folder)
    rng = np.random.default_rng(0)
    mask = MASK.numpy().astype(np.int64)
    ids = rng.integers(1, 256, mask.shape) * mask
    steps = rng.integers(1, 256, (3, len(ids), 1))
    # the batch, on ONNX Runtime and eagerly
    logits, past, names = _run(sess, folder, ids, mask, None)
    ref, ref_past = model(torch.from_numpy(ids), torch.from_numpy(mask))
    batch_logits, batch_states, full_mask = [logits], [past], mask
    assert np.abs((logits - ref.numpy()) * mask[..., None]).max() <= 1e-4
    for step in steps:
        full_mask = np.concatenate([full_mask, np.ones((len(ids), 1), np.int64)], axis=1)
        logits, past, _ = _run(sess, folder, step, full_mask, past)
        ref, ref_past = model(torch.from_numpy(step), torch.from_numpy(full_mask), None, ref_past)
        assert np.isfinite(logits).all() and np.abs(logits - ref.numpy()).max() <= 1e-4
        batch_logits.append(logits)
        batch_states.append(past)
    # each row alone, unpadded: the same logits at its real tokens, the same states after every step
    for row in range(len(ids)):
        real = mask[row].astype(bool)
        row_ids, row_mask = ids[row : row + 1, real], np.ones((1, int(real.sum())), np.int64)
        logits, past, _ = _run(sess, folder, row_ids, row_mask, None)
        assert np.abs(logits[0] - batch_logits[0][row, real]).max() <= 1e-4
        for k, step in enumerate(steps, start=1):
            _compare_states(names, past, batch_states[k - 1], row)
            row_mask = np.concatenate([row_mask, np.ones((1, 1), np.int64)], axis=1)
            logits, past, _ = _run(sess, folder, step[row : row + 1], row_mask, past)
            assert np.abs(logits[0] - batch_logits[k][row]).max() <= 1e-4, (row, k)
        _compare_states(names, past, batch_states[-1], row)


def _compare_states(names: list[str], alone: list[np.ndarray], batch: list[np.ndarray], row: int) -> None:
    """Every recurrent state of the row alone equals the row's state in the padded batch (KV caches differ in
    length by the pads, so only states compare directly)."""
    compared = 0
    for name, a, b in zip(names, alone, batch, strict=True):
        if name.rsplit(".", 1)[-1] in ("conv", "kv_sum", "k_sum"):
            assert np.abs(a[0] - b[row]).max() <= 1e-5, name
            compared += 1
    assert compared == sum(n.rsplit(".", 1)[-1] in ("conv", "kv_sum", "k_sum") for n in names)


# ---- infinite heads: the module against the formula, written per head ---------------------------------------


def infinite_heads_formula(x, wq, wk, wv, cproj_w, cproj_b, *, heads: int, groups: int, group_of):
    """Forge's infinite heads per head: o_h = softmax(q_h k_g(h)ᵀ / sqrt(d_qk) + causal) v_g(h), s = Σ_h o_h,
    y = Σ_i (W_i s + b_i) over the n_cproj projections."""
    S = x.shape[0]
    q, k, v = (x @ w.T for w in (wq, wk, wv))
    dqk = q.shape[-1] // heads
    q, k, v = q.view(S, heads, -1), k.view(S, groups, -1), v.view(S, groups, -1)
    s = 0
    for h in range(heads):
        g = group_of(h)
        scores = q[:, h] @ k[:, g].T / dqk**0.5 + torch.full((S, S), float("-inf")).triu(1)
        s = s + torch.softmax(scores, -1) @ v[:, g]
    return sum(w @ s.T for w in cproj_w).T + sum(cproj_b)


def _infinite_error(group_of) -> float:
    from yamlllm_export.model.infinite_attention import InfiniteHeadAttention

    g = torch.Generator().manual_seed(0)
    H, G, dqk, dv, d, S, n_cproj = 6, 2, 12, 5, 16, 7, 3
    attn = InfiniteHeadAttention(d, num_heads=H, num_kv_heads=G, qk_head_dim=dqk, v_head_dim=dv, bias=True, rotary=None)
    cproj_w = [torch.randn(d, dv, generator=g) * 0.3 for _ in range(n_cproj)]
    cproj_b = [torch.randn(d, generator=g) * 0.3 for _ in range(n_cproj)]
    for p in attn.parameters():
        p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    attn.q_proj.bias.zero_(), attn.k_proj.bias.zero_(), attn.v_proj.bias.zero_()  # the formula's projections have none
    attn.o_proj.weight.copy_(sum(cproj_w)), attn.o_proj.bias.copy_(sum(cproj_b))  # n_cproj projections summed into one
    x = torch.randn(1, S, d, generator=g)
    bias = torch.zeros(1, 1, S, S)
    y, k, v = attn(x, bias, torch.arange(S)[None], torch.zeros(1, G, 0, dqk), torch.zeros(1, G, 0, dv))
    assert k.shape == (1, G, S, dqk) and v.shape == (1, G, S, dv)
    ref = infinite_heads_formula(
        x[0], attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight, cproj_w, cproj_b, heads=H, groups=G, group_of=group_of
    )
    return (y[0] - ref).abs().max().item()


def test_infinite_heads_match_the_formula():
    assert _infinite_error(lambda h: h // 3) < 1e-5  # head h reads group ⌊h / (H/G)⌋ (Forge's repeat_interleave)
    assert _infinite_error(lambda h: h % 2) > 1e-2  # the other grouping (repeat) must not pass


# ---- generate: the torch-free runtime carries the states ----------------------------------------------------


@pytest.mark.parametrize("kind", ["short_conv", "linear_attention"])
def test_generate_batch_equals_each_prompt_alone_and_pytorch(export_case, kind):
    from yamlllm_export.runtime import Generator

    spec = CASES_BY_ID[KINDS[kind]]
    gen = Generator(export_case(KINDS[kind], spec, "ort"))
    prompts = [[5, 9, 200, 31, 2, 77, 13], [8], [150, 151, 152]]
    batch = gen.generate(prompts, max_new_tokens=6).tokens
    model = build_model(spec, seed=0)
    for prompt, got in zip(prompts, batch, strict=True):
        ids = list(prompt)
        for _ in range(6):
            ids.append(int(model(torch.tensor([ids]))[0][0, -1].argmax()))
        assert list(got) == ids[len(prompt) :] == list(gen.generate([prompt], max_new_tokens=6).tokens[0])


# ---- the contract and the sizes -----------------------------------------------------------------------------


def test_contract_names_shapes_and_sizes():
    from tests.feature_cases import case
    from yamlllm_export import load_spec
    from yamlllm_export.runtime.io_contract import IOContract
    from yamlllm_export.spec.sizes import kv_cache_bytes_per_token, state_bytes

    spec = load_spec(
        case(
            "num_layers", 5, "layer_types", ["short_conv", "attention", "linear_attention", "identity", "infinite_attention"],
            "layer.infinite_attention", {"num_kv_heads": 2, "qk_head_dim": 24, "v_head_dim": 8},
        )
    )  # fmt: skip
    io = IOContract.for_spec(spec)
    assert io.past_names() == [
        "past.0.conv", "past_key_values.1.key", "past_key_values.1.value", "past.2.kv_sum", "past.2.k_sum",
        "past_key_values.4.key", "past_key_values.4.value",
    ]  # fmt: skip
    assert io.present_names()[0] == "present.0.conv" and io.present_names()[3] == "present.2.kv_sum"
    assert io.cache_shape("past.0.conv", "B", "T") == ("B", 64, 2)  # (batch, hidden, L_cache - 1): no length axis
    assert io.cache_shape("past.2.k_sum", "B", "T") == ("B", 4, 16)
    assert io.cache_shape("past_key_values.4.key", "B", "T") == ("B", 2, "T", 24)
    assert io.cache_shape("present.4.value", "B", "T") == ("B", 2, "T", 8)
    assert spec.to_dict()["layer_types"] == list(spec.mixers())  # model.yaml records each layer's kind
    assert kv_cache_bytes_per_token(spec) == (2 * 2 * 16 + 2 * (24 + 8)) * 4  # the attention and infinite layers only
    assert state_bytes(spec) == (64 * 2 + 2 * 64) * 4  # constant in the context length


def test_bench_runs_a_hybrid_folder_with_its_states(export_case, tmp_path):
    """``bench`` drives the folder's states like caches: ORT and the eager PyTorch loop, sane numbers."""
    import json

    from click.testing import CliRunner

    from yamlllm_export.cli import main

    folder = export_case(KINDS["short_conv"], CASES_BY_ID[KINDS["short_conv"]], "ort")
    out = tmp_path / "rep"
    args = ["bench", str(folder), "--prompt-len", "8", "--gen-len", "4", "--rounds", "2", "--warmup", "1", "--no-bandwidth"]
    result = CliRunner().invoke(main, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = json.loads((out / "bench.json").read_text())["rows"]
    assert [r["kind"] for r in rows] == ["ort", "eager"] and all(r["error"] == "" and r["decode_tok_s"] > 0 for r in rows)
