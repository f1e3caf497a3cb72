"""The PyTorch model on its own: cache semantics, padding, positions, initialisation, training."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import MODELS, TINY_MODELS
from yamlllm_export import build_model, load_spec
from yamlllm_export.export.provenance import weights_sha256

INITS = ["default", "gpt2", "xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal"]


@pytest.mark.parametrize("name", TINY_MODELS)
@torch.no_grad()
def test_incremental_decode_equals_recompute(name):
    model = build_model(MODELS / f"{name}.yaml", seed=0)
    ids = torch.randint(1, 100, (2, 9))
    full, _ = model(ids)
    logits, past = model(ids[:, :5])
    steps = [logits]
    for t in range(5, 9):
        step, past = model(ids[:, t : t + 1], past_key_values=past)
        steps.append(step)
    assert (torch.cat(steps, dim=1) - full).abs().max() < 1e-5


@pytest.mark.parametrize("name", TINY_MODELS)
@torch.no_grad()
def test_left_padding_does_not_change_a_row(name):
    """A row's logits are the same alone and left-padded in a batch (pads shift no positions)."""
    model = build_model(MODELS / f"{name}.yaml", seed=0)
    row = torch.randint(1, 100, (1, 4))
    alone, _ = model(row)
    batch = torch.cat([torch.cat([torch.zeros(1, 3, dtype=torch.long), row], 1), torch.randint(1, 100, (1, 7))])
    mask = torch.ones(2, 7, dtype=torch.long)
    mask[0, :3] = 0
    padded, _ = model(batch, mask)
    assert (padded[0, 3:] - alone[0]).abs().max() < 1e-5
    assert torch.isfinite(padded).all()


@pytest.mark.parametrize("scheme", INITS)
def test_init_is_reproducible_and_seed_dependent(scheme):
    spec = load_spec({**_tiny_dict(), "initialization": {"type": scheme}})
    a, b, c = build_model(spec, seed=7), build_model(spec, seed=7), build_model(spec, seed=8)
    assert weights_sha256(a) == weights_sha256(b) != weights_sha256(c)


def test_gpt2_init_scales_residual_projections():
    spec = load_spec({**_tiny_dict(num_layers=8, hidden=256), "initialization": {"type": "gpt2", "std": 0.02}})
    model = build_model(spec, seed=0)
    q, o = model.blocks[0].attn.q_proj.weight.std().item(), model.blocks[0].attn.o_proj.weight.std().item()
    assert abs(q - 0.02) < 0.002 and abs(o - 0.02 / 4) < 0.001  # 1/sqrt(2·8) = 1/4


def test_tied_head_shares_the_embedding():
    model = build_model(MODELS / "tiny-gpt2.yaml")
    assert model.lm_head.weight is model.embed.weight


def test_model_trains():
    model = build_model(MODELS / "tiny-llama.yaml").train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    ids = torch.randint(1, 100, (4, 12))
    losses = []
    for _ in range(5):
        logits, _ = model(ids[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def _tiny_dict(num_layers: int = 2, hidden: int = 32) -> dict:
    return {
        "name": "t",
        "embedding": {"vocab_size": 50, "max_position_embeddings": 16, "embedding_dim": hidden},
        "num_layers": num_layers,
        "layer": {"hidden_dim": hidden, "attention": {"num_heads": 4}, "ffn": {"intermediate_size": 2 * hidden}},
    }
