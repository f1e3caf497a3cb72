"""Full-window graphs (no cache) and their first option, ReaLLM-Forge's KAN FFN.

The KAN formula is checked against an independent numpy version written here from FORGE.md §3 (numpy's own
Legendre basis, ``legvander``), with deliberate mutations shown to fail (the basis's feature-major order, pads
in the min/max). The exported graph is checked on every target for a left-padded batch against eager, and
through the runtime: ``generate`` recomputes the window per step (cropped to the context, as Forge's sampler
does), ``validate`` compares windows, ``bench`` reports the cache kind, and ``build`` refuses a cache.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner
from conftest import MODELS
from numpy.polynomial import legendre

from yamlllm_export.cli import main
from yamlllm_export.model.kan import KANLayer
from yamlllm_export.spec import load_spec
from yamlllm_export.spec.features import full_window_options, needs_full_window

KAN = "forge-kan-window"
KAN_YAML = MODELS / f"{KAN}.yaml"


def _numpy_kan_layer(x: np.ndarray, valid: np.ndarray, layer: KANLayer, *, feature_major: bool = True) -> np.ndarray:
    """FORGE.md §3 kan, in float64: x (B, S, in), valid (B, S) bool → (B, S, out)."""
    silu = lambda v: v / (1 + np.exp(-v))  # noqa: E731
    wb, wp = layer.base_weight.detach().double().numpy(), layer.poly_weight.detach().double().numpy()
    g, b, eps = layer.norm.weight.detach().double().numpy(), layer.norm.bias.detach().double().numpy(), layer.norm.eps
    lo = np.where(valid[..., None], x, np.inf).min(1, keepdims=True)  # min/max over the real tokens of each row
    hi = np.where(valid[..., None], x, -np.inf).max(1, keepdims=True)
    x_hat = 2 * (x - lo) / np.maximum(hi - lo, 1e-6) - 1
    basis = legendre.legvander(x_hat, layer.order)  # (B, S, in, P+1): P_0..P_P
    if not feature_major:
        basis = np.swapaxes(basis, -1, -2)
    h = silu(x) @ wb.T + basis.reshape(*x.shape[:2], -1) @ wp.T
    mu, var = h.mean(-1, keepdims=True), h.var(-1, keepdims=True)
    return silu((h - mu) / np.sqrt(var + eps) * g + b)


@pytest.fixture(scope="module")
def kan_layer() -> KANLayer:
    torch.manual_seed(0)
    layer = KANLayer(12, 10, order=3, activation="silu", eps=1e-5)
    with torch.no_grad():
        layer.norm.weight.uniform_(0.5, 1.5)
        layer.norm.bias.normal_(0, 0.1)
    return layer.double()


def test_kan_layer_equals_the_formula(kan_layer: KANLayer) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 7, 12))
    valid = np.ones((2, 7), dtype=bool)
    valid[1, :3] = False  # a left-padded row
    got = kan_layer(torch.from_numpy(x), torch.from_numpy(valid)[..., None]).detach().numpy()
    want = _numpy_kan_layer(x, valid, kan_layer)
    assert np.abs(got - want)[valid].max() < 1e-10
    mutated = _numpy_kan_layer(x, valid, kan_layer, feature_major=False)  # Forge flattens (in, P+1), feature-major
    assert np.abs(mutated - want)[valid].max() > 1e-3


def test_kan_model_left_padded_row_equals_row_alone_and_pads_matter() -> None:
    from yamlllm_export import build_model

    model = build_model(KAN_YAML, seed=0).eval()
    ids = torch.randint(1, 256, (1, 9), generator=torch.Generator().manual_seed(0))
    padded = torch.cat([torch.zeros(1, 4, dtype=torch.long), ids], 1)
    mask = torch.cat([torch.zeros(1, 4, dtype=torch.long), torch.ones(1, 9, dtype=torch.long)], 1)
    with torch.no_grad():
        alone, _ = model(ids)
        left, _ = model(padded, mask)
        no_mask, _ = model(padded, torch.ones_like(mask), torch.clamp(torch.cumsum(mask, 1) - 1, min=0))  # mutation: pads in min/max
    assert (left[:, 4:] - alone).abs().max() < 1e-5
    assert (no_mask[:, 4:] - alone).abs().max() > 1e-3
    with torch.no_grad():  # and it is not causal: an earlier position changes when the window grows
        shorter, _ = model(ids[:, :5])
    assert (shorter - alone[:, :5]).abs().max() > 1e-3


def test_full_window_is_one_predicate_read_from_the_schema() -> None:
    spec = load_spec(KAN_YAML)
    (path, why), *rest = full_window_options(spec)
    assert path == "layer.ffn.kan" and "window" in why and not rest
    assert needs_full_window(spec)
    assert not needs_full_window(load_spec(MODELS / "tiny-llama.yaml"))


@pytest.mark.parametrize("target", ["ort", "onnx", "portable"])
def test_full_window_graph_matches_eager(built, reference, target: str) -> None:
    folder = built(KAN, target)
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input_ids", "attention_mask", "position_ids"]
    assert [o.name for o in session.get_outputs()] == ["logits"]
    info = json.loads((folder / "build.json").read_text())
    assert info["cache"] == "none (full window)" and info["kv_cache_bytes_per_token"] == 0
    assert not (folder / "genai_config.json").exists() and "layer.ffn.kan" in info["genai"]["unsupported"]
    rng = np.random.default_rng(1)
    ids = rng.integers(1, 256, (3, 11))
    mask = np.ones_like(ids)
    mask[1, :4] = 0  # left padding
    mask[2, 8:] = 0  # right padding
    pos = np.maximum(np.cumsum(mask, 1) - 1, 0)
    got = session.run(None, {"input_ids": ids, "attention_mask": mask, "position_ids": pos})[0]
    with torch.no_grad():
        want = reference(KAN)(torch.from_numpy(ids), torch.from_numpy(mask))[0].numpy()
        alone = reference(KAN)(torch.from_numpy(ids[1:2, 4:]))[0].numpy()
    assert np.isfinite(got).all()
    assert np.abs(got - want)[mask.astype(bool)].max() < 1e-4
    assert np.abs(got[1, 4:] - alone[0]).max() < 1e-4


def test_generate_recomputes_the_window_cropped_to_the_context(built, reference) -> None:
    from yamlllm_export.runtime import Generator

    generator = Generator(built(KAN, "ort"))
    assert generator.contract.full_window and generator.contract.window == 64
    prompts = [list(range(3, 63)), [11, 12]]  # 60 tokens: the 8 new ones run 4 past the context of 64
    out = generator.generate(prompts, max_new_tokens=8, stop_tokens=())
    model = reference(KAN)
    for row, prompt in enumerate(prompts):
        seq = list(prompt)
        with torch.no_grad():
            for _ in range(8):  # Forge's sampler: crop to block_size, run the window, take the last logits
                seq.append(int(model(torch.tensor([seq[-64:]]))[0][0, -1].argmax()))
        assert list(out.tokens[row]) == seq[len(prompt) :]


def test_validate_compares_windows(built) -> None:
    from yamlllm_export.validate.runner import ValidateOptions, validate_folder

    report = validate_folder(built(KAN, "portable"), ValidateOptions(eps=("cpu",), steps=3, prompt_len=8, long_context=12))
    rows = {r.check: r for r in report.results}
    assert rows["incremental"].status == "n/a" and "full-window" in rows["incremental"].detail
    assert all(r.status in ("pass", "n/a") for r in report.results), [r for r in report.results if r.status not in ("pass", "n/a")]


def test_bench_reports_the_window_and_refuses_a_static_cache(built) -> None:
    from yamlllm_export.bench.runner import BenchOptions, folder_info, systems_for
    from yamlllm_export.errors import BuildError

    folder = built(KAN, "ort")
    assert folder_info(folder).cache == "window"
    with pytest.raises(BuildError, match="full-window folder has none"):
        systems_for([("kan", folder)], BenchOptions(backends=("ort", "compile"), bandwidth=False))


def test_build_writes_the_full_window_graph_and_refuses_a_cache(tmp_path: Path) -> None:
    runner = CliRunner()
    refused = runner.invoke(main, ["build", str(KAN_YAML), "-o", str(tmp_path / "kv"), "--cache", "kv"])
    assert refused.exit_code == 2 and not (tmp_path / "kv").exists()
    line = refused.output.strip()
    assert line.startswith("error: --cache kv:") and "layer.ffn.kan" in line and "\n" not in line
    causal = runner.invoke(main, ["build", str(MODELS / "tiny-llama.yaml"), "-o", str(tmp_path / "none"), "--cache", "none"])
    assert causal.exit_code == 2 and "causal" in causal.output and not (tmp_path / "none").exists()


def test_rmsnorm_without_epsilon_is_forges() -> None:
    from yamlllm_export import ops

    x, g = torch.randn(3, 5, 16), torch.rand(16) + 0.5
    forge = x * 16**0.5 / x.norm(dim=-1, keepdim=True) * g  # FORGE.md §0: x·sqrt(C)/‖x‖₂·g
    assert (ops.rms_norm(x, g, 0.0) - forge).abs().max() < 2e-6  # float32 rounding: the same function
    assert load_spec({**_minimal(), "layer": {**_minimal()["layer"], "layer_norm": {"type": "rmsnorm", "eps": 0}}})


def _minimal() -> dict:
    return {
        "name": "m",
        "embedding": {"vocab_size": 16, "max_position_embeddings": 8, "embedding_dim": 8},
        "num_layers": 1,
        "layer": {"hidden_dim": 8, "attention": {"num_heads": 2}, "ffn": {"intermediate_size": 16}},
    }


def test_kan_with_moe_is_refused() -> None:
    from yamlllm_export.errors import SpecError

    ffn = {"intermediate_size": 16, "kan": {}, "moe": {"num_experts": 2, "top_k": 1}}
    with pytest.raises(SpecError, match=r"layer\.ffn\.kan"):
        load_spec({**_minimal(), "layer": {**_minimal()["layer"], "ffn": ffn}})


def test_an_enum_value_joins_the_predicate_by_its_annotation(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the other full-window options (div_by_seq_len, krmsnorm int8) will do: annotate, nothing else."""
    import copy

    from yamlllm_export.spec import features, schema

    patched = copy.deepcopy(schema.schema())
    placement = patched["$defs"]["layer"]["properties"]["norm_placement"]
    placement["x-values"]["post"]["full_window"] = "a stand-in reason"
    monkeypatch.setattr(features, "schema", lambda: patched)
    post = {**_minimal(), "layer": {**_minimal()["layer"], "norm_placement": "post"}}
    assert features._full_window(load_spec(post).to_dict()) == (("layer.norm_placement=post", "a stand-in reason"),)
    assert features._full_window(load_spec(_minimal()).to_dict()) == ()
