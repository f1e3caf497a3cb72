"""The parity matrix of issue 4: every feature of the schema's feature table, on every target the table says
can express it, exported once and validated on ONNX Runtime's CPU provider against the PyTorch model
(left-padded prefill, 8 KV-cache decode steps, incremental vs recompute, long context, greedy tokens;
fp32 max|Δ|/σ within validate's limit). A target the table excludes must refuse the feature at ``check`` time."""

from __future__ import annotations

import pytest
import torch

from tests.feature_cases import BASE, CASES_BY_ID, FEATURES, LIVE_BASELINE, NO_EFFECT_IN_EVAL, NOT_INCREMENTAL
from tests.validate_fixtures import assert_parity
from yamlllm_export import SpecError, build_model, load_spec
from yamlllm_export.spec.features import TARGETS, check_target, features

TABLE = {f.name: f for f in features()}
GRID = [
    pytest.param(cid, spec, target, id=f"{cid}-{target}", marks=pytest.mark.xdist_group(name=cid))
    for name, cases in FEATURES.items()
    for cid, spec in cases.items()
    for target in TABLE[name].targets
]


def test_every_feature_of_the_table_has_a_case():
    assert set(FEATURES) == set(TABLE), set(FEATURES) ^ set(TABLE)


@pytest.mark.parametrize(("cid", "spec", "target"), GRID)
def test_feature_parity(export_case, tmp_path, cid, spec, target):
    folder = export_case(cid, spec, target)
    assert_parity(folder, tmp_path / "parity", skip=("incremental",) if cid in NOT_INCREMENTAL else ())


def test_check_accepts_or_refuses_as_the_table_says():
    """Every case on every target: ``check`` accepts it where its feature's table row says yes and refuses it
    naming the target elsewhere (the refusal itself is tested in test_features_table.py with a feature marked
    one target's only; today every target expresses every feature, so every case must be accepted)."""
    checked = 0
    for name, cases in FEATURES.items():
        for spec in cases.values():
            loaded = load_spec(spec)
            for target in TARGETS:
                if target in TABLE[name].targets:
                    check_target(loaded, target)
                else:
                    with pytest.raises(SpecError, match=f"not available on target '{target}'"):
                        check_target(loaded, target)
                checked += 1
    assert checked == len(TARGETS) * sum(len(cases) for cases in FEATURES.values()) > 0


CASES = CASES_BY_ID
LIVE = [
    pytest.param(spec, CASES[LIVE_BASELINE[cid]] if cid in LIVE_BASELINE else BASE, id=cid)
    for cid, spec in CASES.items()
    if spec != BASE and cid not in NO_EFFECT_IN_EVAL
]


@pytest.mark.parametrize(("spec", "baseline"), LIVE)
def test_feature_changes_the_model(spec, baseline):
    """A feature that the model silently ignored would pass parity on both sides: each case's logits must
    differ from its baseline's (BASE, or a neighbour differing only in that feature; same seed and tokens).
    Parameters are redrawn at random (biases start at 0 and unit-offset scales at 0, which would hide
    them), and the prompt (48 tokens) passes the cases' original RoPE context (32)."""
    ids = torch.randint(1, 256, (2, 48), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        base, _ = _randomized(build_model(load_spec(baseline), seed=0))(ids)
        got, _ = _randomized(build_model(load_spec(spec), seed=0))(ids)
    assert got.shape == base.shape and (got - base).abs().max() > 1e-5


POSITIVE = (".c", ".init_L", ".L_multiplier")  # FIRE's scales: log(c·(|i − j| + ε) + b) is NaN for c < 0, upstream too


def _randomized(model: torch.nn.Module) -> torch.nn.Module:
    g = torch.Generator().manual_seed(1)
    for name, p in model.named_parameters():
        p.copy_(torch.randn(p.shape, generator=g) * 0.3)
        if name.endswith(POSITIVE):
            p.abs_()
    return model
