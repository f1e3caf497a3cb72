"""FFN, MoE, norm and block-layout modules against independent formulas (no export; see
``test_features_ffn.py`` for the exported-graph parity grid)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.feature_cases import ATT, MLA, case
from yamlllm_export import build_model
from yamlllm_export.model.decoder import Block, ParallelBlock, Residual
from yamlllm_export.model.ffn import ACTIVATIONS, MLP
from yamlllm_export.model.init import init_weights
from yamlllm_export.model.moe import Experts, MoE, route
from yamlllm_export.model.norms import make_norm

torch.manual_seed(0)


@pytest.mark.parametrize(
    ("name", "formula"),
    [
        ("gelu", lambda x: 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))),
        ("gelu_tanh", lambda x: 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))),
        ("relu", lambda x: x.clamp(min=0)),
        ("silu", lambda x: x / (1 + torch.exp(-x))),
        ("squared_relu", lambda x: x.clamp(min=0) ** 2),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_activation_formulas(name, formula):
    x = torch.linspace(-6, 6, 1001, dtype=torch.float64)
    assert (ACTIVATIONS[name](x) - formula(x)).abs().max() < 1e-12


@pytest.mark.parametrize("normalize", [True, False], ids=["normalized", "softmax-probs"])
@pytest.mark.parametrize("shared", [False, True], ids=["no-shared", "shared"])
@pytest.mark.parametrize(("top_k", "gated"), [(1, True), (2, True), (3, True), (2, False)], ids=["k1", "k2", "k3", "k2-plain"])
@torch.no_grad()
def test_moe_equals_a_per_token_loop(top_k, gated, shared, normalize):
    """The MoE equals routing each token by hand through plain Linear experts. Random router weights make
    exact ties between experts practically impossible, so the top-k set is unambiguous."""
    activation = "swiglu" if gated else "gelu"
    experts = Experts(4, 16, 24, gated=gated, bias=True)
    moe = MoE(
        16, experts=experts, activation=activation, top_k=top_k, normalize_top_k=normalize,
        shared=MLP(16, 8, activation="relu", bias=True, dropout=0.0) if shared else None, dropout=0.0,
    )  # fmt: skip
    act = ACTIVATIONS[activation]

    def expert(e: int, t: torch.Tensor) -> torch.Tensor:
        up = F.linear(t, experts.up.weight[e], experts.up.bias[e])
        h = act(F.linear(t, experts.gate.weight[e], experts.gate.bias[e])) * up if gated else act(up)
        return F.linear(h, experts.down.weight[e], experts.down.bias[e])

    x = torch.randn(3, 5, 16)
    got = moe(x)
    want = torch.zeros_like(x)
    for b in range(3):
        for s in range(5):
            t = x[b, s]
            probs = torch.softmax(t @ moe.router.weight.T, dim=-1)
            chosen = sorted(range(4), key=lambda e: -probs[e].item())[:top_k]
            total = sum(probs[e] for e in chosen) if normalize else 1.0
            want[b, s] = sum(probs[e] / total * expert(e, t) for e in chosen)
            if shared:
                want[b, s] += moe.shared(t)
    assert (got - want).abs().max() < 1e-5


def test_stacked_experts_initialise_each_expert_like_a_linear():
    """gpt2 init: every expert matrix N(0, std), down projections residual-scaled; biases 0."""
    model = nn.ModuleDict({"ffn": MoE(
        64, experts=Experts(4, 64, 256, gated=True, bias=True), activation="swiglu", top_k=2, normalize_top_k=True,
        shared=None, dropout=0.0,
    )})  # fmt: skip
    init_weights(model, scheme="gpt2", seed=0, num_layers=8, gain=1.0, std=0.02, residual_scale=None, padding_idx=None)
    experts = model["ffn"].experts
    for e in range(4):
        assert abs(experts.up.weight[e].std().item() - 0.02) < 0.002
        assert abs(experts.down.weight[e].std().item() - 0.005) < 0.001  # 0.02 / sqrt(2 · 8)
    assert (experts.up.bias == 0).all() and not torch.equal(experts.up.weight[0], experts.up.weight[1])
    xavier = Experts(3, 64, 256, gated=False, bias=False)
    init_weights(xavier, scheme="xavier_uniform", seed=0, num_layers=2, gain=1.0, std=0.02, residual_scale=None, padding_idx=None)
    bound = math.sqrt(6 / (64 + 256))  # per-expert fans, not the stacked tensor's
    assert xavier.up.weight.abs().max() <= bound and xavier.up.weight.abs().max() > 0.9 * bound


def test_route_keeps_k_weights_per_token():
    gates = route(torch.randn(2, 7, 6), top_k=2, normalize=True)
    assert ((gates > 0).sum(-1) == 2).all()
    assert torch.allclose(gates.sum(-1), torch.ones(2, 7))
    unnormalized = route(torch.randn(2, 7, 6), top_k=2, normalize=False)
    assert (unnormalized.sum(-1) < 1).all()


def test_group_limited_route_picks_within_the_best_groups():
    """8 experts in 4 groups of 2, top 2 groups: the 3 experts come from the 2 groups whose best expert
    scores highest, even where a third group holds the 2nd-best expert overall."""
    logits = torch.tensor([[[5.0, 0.0, 4.0, 0.0, 1.0, 4.5, 3.0, 3.9]]])  # group maxima 5, 4, 4.5, 3.9 -> groups 0, 2
    gates = route(logits, top_k=3, normalize=False, groups=4, top_groups=2)
    probs = logits.softmax(-1)
    assert gates.nonzero()[:, -1].tolist() == [0, 4, 5]
    torch.testing.assert_close(gates[0, 0, [0, 4, 5]], probs[0, 0, [0, 4, 5]])
    assert route(logits, top_k=3, normalize=False).nonzero()[:, -1].tolist() == [0, 2, 5]  # ungrouped: expert 2


def test_sparsemixer_route_weighs_each_pick_among_its_close_rivals():
    """Scores 2.0, 1.9, 0, -1 with jitter_eps 0.05 (threshold 0.1): the first pass keeps experts 0 and 1
    ((2 - 1.9) / 2 = 0.05), so expert 0 weighs sigmoid(0.1); the second pass, expert 0 gone, keeps expert 1
    alone, which weighs 1. The softmax route would give the two all-expert probabilities instead."""
    logits = torch.tensor([[[2.0, 1.9, 0.0, -1.0]]])
    gates = route(logits, top_k=2, normalize=False, routing="sparsemixer", jitter_eps=0.05)
    torch.testing.assert_close(gates[0, 0], torch.tensor([torch.sigmoid(torch.tensor(0.1)).item(), 1.0, 0.0, 0.0]))
    normalized = route(logits, top_k=2, normalize=True, routing="sparsemixer", jitter_eps=0.05)
    torch.testing.assert_close(normalized[0, 0].sum(), torch.tensor(1.0))


@pytest.mark.parametrize("kind", ["rmsnorm", "layernorm"])
def test_unit_offset_norm_scales_by_one_plus_w(kind):
    norm = make_norm(kind, 16, eps=1e-6, affine=True, unit_offset=True)
    assert (norm.weight == 0).all()  # w starts at 0: the norm starts as the plain normalisation
    with torch.no_grad():
        norm.weight.normal_()
    x = torch.randn(4, 16)
    w = norm.weight.detach()
    if kind == "rmsnorm":
        want = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * (1 + w)
    else:
        want = F.layer_norm(x, (16,), eps=1e-6) * (1 + w) + norm.bias.detach()
    with torch.no_grad():
        assert (norm(x) - want).abs().max() < 1e-5
    # gradients flow through the eager path (the custom op has no backward)
    norm(x).sum().backward()
    assert norm.weight.grad is not None


@pytest.mark.parametrize("scheme", ["default", "gpt2", "xavier_normal"])
def test_init_starts_unit_offset_scales_at_zero(scheme):
    model = nn.ModuleDict({
        "offset": make_norm("rmsnorm", 8, eps=1e-6, affine=True, unit_offset=True),
        "offset_ln": make_norm("layernorm", 8, eps=1e-6, affine=True, unit_offset=True),
        "plain": make_norm("rmsnorm", 8, eps=1e-6, affine=True),
        "embed": nn.Embedding(4, 8),
    })  # fmt: skip
    for p in model.parameters():
        p.data.fill_(5.0)
    init_weights(model, scheme=scheme, seed=0, num_layers=2, gain=1.0, std=0.02, residual_scale=None, padding_idx=None)
    assert (model["offset"].weight == 0).all() and (model["offset_ln"].weight == 0).all()
    assert (model["plain"].weight == 1).all()


class _FakeAttention(nn.Module):
    """(x, ...) → (tanh(x) + 1, k, v): a cheap non-linear stand-in for attention."""

    def forward(self, x, bias, position_ids, k, v, token_mask=None):  # noqa: ANN001, ANN201
        return torch.tanh(x) + 1, k, v


def _n(seed: int) -> nn.Module:
    norm = make_norm("layernorm", 8, eps=1e-5, affine=True)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(8, generator=torch.Generator().manual_seed(seed)))
    return norm


@pytest.mark.parametrize("placement", ["pre", "post", "sandwich", "output", "parallel"])
@torch.no_grad()
def test_block_layout_formulas(placement):
    attn, ffn = _FakeAttention(), MLP(8, 16, activation="relu", bias=True, dropout=0.0)
    A = lambda x: attn(x, None, None, None, None)[0]  # noqa: E731
    n1, n2, n3, n4 = _n(1), _n(2), _n(3), _n(4)
    x = torch.randn(2, 3, 8)
    if placement == "parallel":
        block = ParallelBlock(attn=attn, ffn=ffn, norm=n1, dropout=0.0)
        want = x + A(n1(x)) + ffn(n1(x))
    else:
        slots = {"pre": ("pre",), "post": ("after",), "sandwich": ("pre", "post"), "output": ("post",)}[placement]
        norms = iter([n1, n2, n3, n4])
        attn_norms = Residual(**{s: next(norms) for s in slots}, dropout=0.0)
        ffn_norms = Residual(**{s: next(norms) for s in slots}, dropout=0.0)
        block = Block(attn=attn, ffn=ffn, attn_norms=attn_norms, ffn_norms=ffn_norms)
        if placement == "pre":
            h = x + A(n1(x))
            want = h + ffn(n2(h))
        elif placement == "post":
            h = n1(x + A(x))
            want = n2(h + ffn(h))
        elif placement == "sandwich":
            h = x + n2(A(n1(x)))
            want = h + n4(ffn(n3(h)))
        else:
            h = x + n1(A(x))
            want = h + n2(ffn(h))
    got, _ = block(x, None, None, (None, None))
    assert (got - want).abs().max() < 1e-6


def test_gpt2_init_scales_residual_outputs_by_role() -> None:
    """Residual-scaled (std / sqrt(2 · layers)) are exactly the projections onto the residual stream: MLA's
    o_proj and the FFN's down, not the low-rank query's ``q_proj.down``, which only shares the name."""
    model = build_model(case(*MLA, f"{ATT}.mla_rank", 24), seed=0)  # gpt2 init, std 0.08, 2 layers: residual 0.04
    stds = {n: p.std().item() for n, p in model.named_parameters() if n.startswith("blocks.0.") and p.dim() == 2}
    residual = {"blocks.0.attn.o_proj.weight", "blocks.0.ffn.down.weight"}
    assert residual < stds.keys() and "blocks.0.attn.q_proj.down.weight" in stds
    for name, std in stds.items():
        assert std == pytest.approx(0.04 if name in residual else 0.08, rel=0.1), name
