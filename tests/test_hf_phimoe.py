"""Phi-3.5-MoE's SparseMixer routing: our op against transformers' own ``sparsemixer``, and an import whose
routing is swapped for a plain softmax top-2 must miss transformers' logits by far more than the tolerance
(tests/test_hf_import.py checks the unmutated import on ort and portable)."""

from __future__ import annotations

import onnx
import pytest
import torch
import yaml

from tests.feature_cases import CASES_BY_ID
from tests.hf_fixtures import hf_parity, make_hf_model
from yamlllm_export import export_onnx
from yamlllm_export.hf import import_hf, render_yaml
from yamlllm_export.ops.moe import sparsemixer

pytest.importorskip("transformers")
TOLERANCE = 1e-4  # test_hf_import's


@pytest.mark.parametrize("eps", [0.01, 0.3, 1.0], ids=["eps-0.01", "eps-0.3", "eps-1"])
def test_sparsemixer_equals_transformers(eps):
    from transformers.models.phimoe.modeling_phimoe import sparsemixer as hf_sparsemixer

    scores = torch.randn(400, 6, generator=torch.Generator().manual_seed(0))
    want_weights, want_experts = hf_sparsemixer(scores, jitter_eps=eps, training=False)
    weights, experts = sparsemixer(scores, 2, eps)
    assert torch.equal(experts, want_experts)
    torch.testing.assert_close(weights, want_weights, rtol=0, atol=0)
    assert (weights < 0.99).any()  # the threshold masks some experts, keeps others: the softmax matters


@pytest.mark.parametrize("routing", [{"routing": "softmax"}, {"routing": "sparsemixer", "jitter_eps": 0.01}], ids=["softmax", "wrong-eps"])
def test_a_wrong_routing_misses_transformers(routing, tmp_path):
    model = make_hf_model("phimoe", tmp_path / "hf")  # router_jitter_noise 0.3
    spec, header = import_hf(tmp_path / "hf")
    d = yaml.safe_load(render_yaml(spec, header))
    moe = d["layer"]["ffn"]["moe"]
    assert moe["routing"] == "sparsemixer" and moe["jitter_eps"] == 0.3
    moe.pop("jitter_eps")
    moe.update(routing)
    (tmp_path / "model.yaml").write_text(yaml.safe_dump(d))
    parity = hf_parity(model, export_onnx(tmp_path / "model.yaml", tmp_path / "out", target="portable", weights=tmp_path / "hf"))
    assert min(parity.prefill, parity.decode) > 100 * TOLERANCE, parity


@pytest.mark.parametrize(
    ("cid", "sparse"), [("sparsemixer-top2", True), ("sparsemixer-top3-normalized-geglu", False)], ids=["swiglu", "geglu"]
)
@pytest.mark.xdist_group(name="sparsemixer")
def test_ort_runs_sparsemixer_in_the_moe_kernel_where_it_has_the_activation(export_case, cid, sparse):
    """SwiGLU experts go through com.microsoft.MoE (gates in as log w, output × Σw); GeGLU, which the kernel
    lacks, stays dense. Parity of both is the feature grid's (tests/test_feature_matrix.py)."""
    folder = export_case(cid, CASES_BY_ID[cid], "ort")
    ops = {n.op_type for n in onnx.load(folder / "model.onnx", load_external_data=False).graph.node}
    assert ("MoE" in ops) == sparse and ("Log" in ops) == sparse, sorted(ops)
