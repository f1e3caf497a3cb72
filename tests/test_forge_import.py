"""``import-forge`` + ``build --weights CKPT.pt`` against ReaLLM-Forge.

tests/data/forge holds checkpoints written by Forge's own code and the logits its sampler computed
(README there): the ONNX folders on ``ort`` and ``portable`` must equal them to 1e-4, decoded token by token
through the cache, or recomputed per window for the full-window (KAN) folder. Checkpoints written here in
Forge's layout (no Forge code: the inverse name map is written in this file) cover the layouts the Forge-made
ones do not (``peri_ln_*`` of later revisions, post-LN, factorized embeddings, summed down projections).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner

from yamlllm_export.cli import main
from yamlllm_export.errors import BuildError
from yamlllm_export.forge import forge_spec
from yamlllm_export.forge.table import ADDED_KEYS, ROWS, defaults, family_for, row_for

DATA = Path(__file__).parent / "data" / "forge"
CASES = (
    "default",
    "rope_gqa_swiglu_peri",
    "parallel_partial_rope_window",
    "kan",
    "consmax_fire_ropelen",
    "polymax_prmsnorm_dualpath",
    "infinite_soap_lsv",
    "dyt_hsnorm_gelugate_qlinear_factorized",
    "list_linear_identity_strongermax_krms_prelu",
    "bitlinear_mlp",
    "steering_vector",
    "sharedfire_spline_lsvmlp_sigsoftmax",
)
TOL = 1e-4  # the acceptance bound of issue 23


def _forge_logits(case: str) -> tuple[np.ndarray, np.ndarray]:
    return np.load(DATA / f"{case}.tokens.npy"), np.load(DATA / f"{case}.logits.npy")


def _import(ckpt: Path, out: Path) -> Path:
    result = CliRunner().invoke(main, ["import-forge", str(ckpt), "-o", str(out), "--overwrite"])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="session")
def forge_folder(tmp_path_factory: pytest.TempPathFactory):
    """forge_folder(case, target) -> the folder of import-forge + build --weights, built once per session."""
    cache: dict[tuple[str, str], Path] = {}

    def get(case: str, target: str) -> Path:
        if (case, target) not in cache:
            tmp = tmp_path_factory.mktemp("forge")
            cwd = os.getcwd()
            os.chdir(DATA)  # a relative apply_vector_file is read from the working directory, as Forge's sampler does
            try:
                spec = _import(DATA / f"{case}.pt", tmp / f"{case}.yaml")
            finally:
                os.chdir(cwd)
            out = tmp / f"{case}-{target}"
            result = CliRunner().invoke(
                main, ["build", str(spec), "--weights", str(DATA / f"{case}.pt"), "-o", str(out), "--target", target]
            )
            assert result.exit_code == 0, result.output
            assert ("full-window graph, no KV cache (layer.ffn.kan" in result.output) == (case == "kan")
            cache[case, target] = out
        return cache[case, target]

    return get


def _sampler_logits(step: object, tokens: np.ndarray, n: int) -> np.ndarray:
    """Row t: the logits after tokens 0..t, fed one token per step through ``step(ids, mask, past)``."""
    past, rows = None, []
    for t in range(n):
        logits, past = step(tokens[None, t : t + 1], np.ones((1, t + 1), np.int64), past)
        rows.append(np.asarray(logits)[0, -1])
    return np.stack(rows)


@pytest.mark.parametrize("target", ["ort", "portable"])
@pytest.mark.parametrize("case", CASES)
def test_onnx_equals_forges_sampler(forge_folder, case: str, target: str) -> None:
    from yamlllm_export.runtime.io_contract import IOContract
    from yamlllm_export.runtime.stepper import GraphStepper
    from yamlllm_export.spec import load_spec

    folder = forge_folder(case, target)
    spec = load_spec(folder / "model.yaml")
    contract = IOContract.for_spec(spec)
    stepper = GraphStepper.for_session(ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"]), contract)
    tokens, want = _forge_logits(case)
    # with a cache the positions end at the context; the full-window folder crops and goes on, as Forge does
    n = len(tokens) if contract.full_window else spec.embedding.max_position_embeddings
    assert contract.full_window == (case == "kan")
    got = _sampler_logits(lambda ids, mask, past: stepper.step(ids, mask, past or stepper.empty_past(1)), tokens, n)
    delta = float(np.abs(got - want[:n]).max())
    print(f"forge parity {case} {target}: max|Δ| {delta:.3g}")
    assert delta <= TOL


def _eager(ckpt: Path, tmp: Path) -> torch.nn.Module:
    from yamlllm_export import build_model
    from yamlllm_export.export.weights_source import load_weights_from

    model = build_model(_import(ckpt, tmp / f"{ckpt.stem}.yaml"), seed=0).eval()
    load_weights_from(model, ckpt)
    return model


def _window_logits(model: torch.nn.Module, tokens: np.ndarray, window: int) -> np.ndarray:
    """Forge's sampler in PyTorch: the last ``window`` tokens, the whole window run, its last logits."""
    rows = []
    with torch.no_grad():
        for t in range(len(tokens)):
            rows.append(model(torch.from_numpy(tokens[None, max(0, t + 1 - window) : t + 1]))[0][0, -1].numpy())
    return np.stack(rows)


def test_later_revisions_peri_ln_names_and_the_rope_permutation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ``peri_ln_*`` layout (block_variations.py after 04ef67f) loads like ``out_ln_*``; without the q/k row
    permutation (interleaved pairs → halves) the logits move far off."""
    ckpt = torch.load(DATA / "rope_gqa_swiglu_peri.pt", weights_only=True)
    ckpt["model"] = {k.replace(".out_ln_", ".peri_ln_"): v for k, v in ckpt["model"].items()}
    assert any(".peri_ln_attn." in k for k in ckpt["model"])
    renamed = tmp_path / "peri.pt"
    torch.save(ckpt, renamed)
    tokens, want = _forge_logits("rope_gqa_swiglu_peri")
    assert np.abs(_window_logits(_eager(renamed, tmp_path), tokens, 24) - want).max() <= TOL
    import yamlllm_export.forge.weights as fw

    monkeypatch.setattr(fw, "rope_permutation", lambda hs, rotary: torch.arange(hs))  # mutation: Forge's pairs kept
    assert np.abs(_window_logits(_eager(renamed, tmp_path), tokens, 24) - want).max() > 1e-2


# ---- checkpoints written here in Forge's layout --------------------------------------------------------------

LAYOUTS = {
    "post_factorized_down_projs": dict(
        use_pre_ln=False,
        use_post_ln=True,
        norm_variant_attn="layernorm",
        norm_variant_output="layernorm",
        bias=True,
        n_embd_wte=8,
        mlp_down_projs=2,
        use_rotary_embeddings=True,
        use_abs_pos_embeddings=False,
        rope_length=2,
        wte_weight_tying=False,
    ),
    "output_peri_kan": dict(use_pre_ln=False, use_peri_ln=True, mlp_variant="kan", kan_middle_layers=[12], kan_poly_order=2),
    "parallel_swiglu_gelu": dict(use_parallel_mlp=True, mlp_variant="swiglu", mlp_size=24, n_kv_group=2),
}
TINY = dict(n_layer=2, n_head=4, n_embd=16, block_size=16, vocab_size=32)


def _forge_name(ours: str, args: dict) -> str:
    """Our state-dict name → Forge's (written here from Forge's model, independently of forge/weights.py)."""
    peri = "peri_ln" if args["mlp_variant"] == "kan" else "out_ln"
    parts = ours.split(".")
    if parts[0] == "blocks":
        i, rest = parts[1], ".".join(parts[2:])
        norm_param = "gain" if args["norm_variant_attn"] == "rmsnorm" and rest.endswith("weight") else parts[-1]
        for our_slot, forge_slot in (("attn_norms.pre", "pre_ln_attn"), ("ffn_norms.pre", "pre_ln_mlp"), ("attn_norms.post", f"{peri}_attn"),
                                     ("ffn_norms.post", f"{peri}_mlp"), ("attn_norms.after", "post_ln_attn"), ("ffn_norms.after", "post_ln_mlp"),
                                     ("norm", "pre_ln")):  # fmt: skip
            if rest in (f"{our_slot}.weight", f"{our_slot}.bias"):
                return f"transformer.h.{i}.{forge_slot}.{norm_param}"
        for our, forge in (("attn.q_proj", "attn.c_attn_q"), ("attn.k_proj", "attn.c_attn_k"), ("attn.v_proj", "attn.c_attn_v"),
                           ("attn.o_proj", "attn.c_proj")):  # fmt: skip
            if rest.startswith(our + "."):
                return f"transformer.h.{i}.{forge}.{parts[-1]}"
        swiglu = args["mlp_variant"] == "swiglu"
        for our, forge in (
            ("ffn.gate", "c_fc_in1"),
            ("ffn.up", "c_fc_in2" if swiglu else "c_fc"),
            ("ffn.down", "c_fc_out" if swiglu else "c_proj"),
        ):
            if rest.startswith(our + "."):
                return f"transformer.h.{i}.mlp.{forge}.{parts[-1]}"
        if rest.startswith("ffn.layers."):  # ffn.layers.k.base_weight | poly_weight | norm.weight | norm.bias
            k, what = parts[4], ".".join(parts[5:])
            kan = {"base_weight": f"base_weights.{k}", "poly_weight": f"poly_weights.{k}", "norm.weight": f"layer_norms.{k}.weight",
                   "norm.bias": f"layer_norms.{k}.bias"}  # fmt: skip
            return f"transformer.h.{i}.mlp.kan.{kan[what]}"
    if ours.startswith("final_norm."):
        return "transformer.ln_f." + ("gain" if args["norm_variant_output"] == "rmsnorm" and ours.endswith("weight") else parts[-1])
    return {"embed.weight": "transformer.wte.weight", "positions.embedding.weight": "transformer.wpe.weight", "lm_head.weight": "lm_head.weight",
            "embed_proj.weight": "transformer.scale_up.weight", "head_proj.weight": "transformer.scale_down.weight"}[ours]  # fmt: skip


def _to_forge(state: dict[str, torch.Tensor], args: dict) -> dict[str, torch.Tensor]:
    hs = args["n_embd"] // args["n_head"]
    rotary = args["rope_length"] or hs
    pairs = torch.cat([torch.arange(0, rotary, 2), torch.arange(1, rotary, 2), torch.arange(rotary, hs)])
    out = {}
    for name, t in state.items():
        if args["use_rotary_embeddings"] and (".q_proj." in name or ".k_proj." in name):
            heads = t.reshape(-1, hs, *t.shape[1:])
            forge = torch.empty_like(heads)
            forge[:, pairs] = heads  # our dim j is Forge's dim pairs[j]
            t = forge.reshape(t.shape)
        if name == "head_proj.weight":
            t = t.t()  # Forge's scale_down.weight is (n_embd, n_embd_wte)
        if name.endswith("ffn.down.weight") and args["mlp_down_projs"] > 1:
            first = torch.randn_like(t)
            t = torch.cat([first, t - first])  # two blocks whose sum is ours
        if name.endswith("ffn.down.bias") and args["mlp_down_projs"] > 1:
            t = torch.cat([t / 2, t / 2])
        out[_forge_name(name, args)] = t.clone()
    for i in range(args["n_layer"]):  # what Forge saves besides parameters
        out[f"transformer.h.{i}.attn.bias"] = torch.tril(torch.ones(1, 1, args["block_size"], args["block_size"]))
        if args["mlp_variant"] != "kan":
            out[f"transformer.h.{i}.mlp.activation_x_offset"] = torch.tensor(0.0)
    return out


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_checkpoints_in_forges_layout_load_exactly(tmp_path: Path, layout: str) -> None:
    from yamlllm_export import build_model

    args = {**defaults(), **TINY, **LAYOUTS[layout]}
    spec, _ = forge_spec(args)
    truth = build_model({"name": layout, **spec}, seed=1)
    ckpt = tmp_path / f"{layout}.pt"
    torch.save({"model": _to_forge(truth.state_dict(), args), "model_args": args, "iter_num": 7, "config": {}}, ckpt)
    loaded = _eager(ckpt, tmp_path)
    for name, tensor in truth.state_dict().items():
        assert torch.allclose(loaded.state_dict()[name], tensor, atol=1e-6), name


# ---- the table and bad input ---------------------------------------------------------------------------------


def test_every_model_args_key_is_read() -> None:
    keys = defaults()
    assert not [k for k in keys if row_for(k) is None and family_for(k) is None]
    assert not [r.key for r in ROWS if r.key not in keys and r.key not in ADDED_KEYS], "a row for a key Forge does not have (a typo?)"


def test_docs_show_the_table() -> None:
    from yamlllm_export.forge.table import markdown

    assert markdown() in (Path(__file__).parents[1] / "docs" / "forge-import.md").read_text()


def test_header_names_the_source_and_notes_training_only_keys(tmp_path: Path) -> None:
    ckpt = torch.load(DATA / "default.pt", weights_only=True)
    ckpt["model_args"].update(dropout=0.2, consmax_initial_beta=3.0)  # training only; a parameter of an option that is off
    path = tmp_path / "trained.pt"
    torch.save(ckpt, path)
    out = tmp_path / "m.yaml"
    result = CliRunner().invoke(main, ["import-forge", str(path), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "note: model_args.dropout = 0.2 ignored: training only" in result.output
    assert "note: model_args.consmax_initial_beta = 3.0 ignored: no effect without softmax_variant_attn" in result.output
    text = out.read_text()
    assert text.startswith(f"# Imported from the ReaLLM-Forge checkpoint {path.resolve()}")
    assert "rmsnorm" in text and "eps: 0" in text


def _save(tmp_path: Path, obj: object) -> Path:
    path = tmp_path / "bad.pt"
    torch.save(obj, path)
    return path


def _args(**changes: object) -> dict:
    ckpt = torch.load(DATA / "default.pt", weights_only=True)
    return {**ckpt, "model_args": {**ckpt["model_args"], **changes}}


class Opaque:  # a pickled class: refused by weights_only loading
    pass


BAD = {
    "not-a-dict": (lambda: torch.zeros(3), "not a ReaLLM-Forge checkpoint (a Tensor"),
    "no-model-args": (lambda: {"model": {}}, "no 'model_args'"),
    "state-dict-only": (lambda: {"w": torch.zeros(2)}, "no 'model_args' and no 'model'"),
    "code-in-pickle": (lambda: {"model": {}, "model_args": {"x": Opaque()}}, "refused: the pickle holds more than tensors"),
    "gate": (lambda: _args(gate=True), "model_args.gate = True: builds a fresh random Linear"),
    "ssm": (lambda: _args(attention_variant="ssm"), "model_args.attention_variant = 'ssm': 'ssm' is not constructible upstream"),
    "mlp-identity": (lambda: _args(mlp_variant="identity"), "model_args.mlp_variant = 'identity': 'identity' is broken upstream"),
    "squareplus": (
        lambda: _args(softmax_variant_attn="squareplus"),
        "softmax_variant_attn = 'squareplus': 'squareplus' is NaN at a masked",
    ),
    "div-by-seq-len": (lambda: _args(softmax_variant_attn="relumax", div_by_seq_len=True), "with div_by_seq_len: every row divided"),
    "fire-init-c": (lambda: _args(use_fire_embeddings=True, fire_init_c=0.0), "use_fire_embeddings = True: fire_init_c 0.0 must be > 0"),
    "fire-log-bias": (lambda: _args(use_fire_embeddings=True, fire_log_bias=0.5), "fire_log_bias 0.5 must be >= 1"),
    "mixed-linears": (lambda: _args(linear_variant_q="bitlinear_1p58"), "linear_variant_attn = 'linear': different linear variants"),
    "concat-heads": (lambda: _args(attention_variant="infinite", use_concat_heads=True), "use_concat_heads: concatenated infinite"),
    "krmsnorm-int8": (
        lambda: _args(norm_variant_output="krmsnorm", krmsnorm_quantize_type="int8"),
        "norm_variant_output = 'krmsnorm': krmsnorm_quantize_type 'int8'",
    ),
    "polymax-divisor-0": (
        lambda: _args(softmax_variant_attn="polymax", polymax_divisor=0.0),
        "model_args.polymax_divisor = 0.0: outside yamlllm-export's bounds (layer.attention.softmax.divisor: 0.0",
    ),
    "prmsnorm-pct": (lambda: _args(norm_variant_attn="prmsnorm", prmsnorm_pct=2.0), "model_args.prmsnorm_pct = 2.0: outside"),
    "offset-overflow": (lambda: _args(mlp_x_offset=1e300), "model_args.mlp_x_offset = 1e+300: outside yamlllm-export's bounds"),
    "krmsnorm-random": (lambda: _args(norm_variant_attn="krmsnorm", krmsnorm_selection_type="random"), "a fresh random subset"),
    "lsv-linear-comb": (lambda: _args(use_lsv=True, lsv_variant="linear_comb", lsv_dataset_num=2, apply_lsv_at_layer_idx=1), "linear_comb"),
    "vector-at-0": (lambda: _args(apply_vector_at_layer_idx=0, apply_vector_file="v.npy"), "Forge's 0 never fires"),
    "nan-arg": (lambda: _args(fire_init_L=float("nan")), "bad.pt: model_args.fire_init_L = nan is not a finite number"),
    "inf-arg-nested": (lambda: _args(kan_middle_layers=[4.0, float("inf")]), "model_args.kan_middle_layers[1] = inf is not a finite"),
    "nan-tensor": (
        lambda: {**(c := _args()), "model": {**c["model"], "transformer.ln_f.gain": torch.full((32,), float("nan"))}},
        "bad.pt: tensor 'transformer.ln_f.gain' holds 32 NaN and 0 infinite values",
    ),
    "unknown-key": (lambda: _args(brand_new_option=3), "model_args.brand_new_option = 3: not read by yamlllm-export"),
    "abs-and-rope": (lambda: _args(use_rotary_embeddings=True), "model_args.use_abs_pos_embeddings = True: True together with use_rotary"),
    "no-vocab": (lambda: _args(vocab_size=None), "model_args.vocab_size = None: is not set"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_checkpoint_is_one_line_exit_2_nothing_written(tmp_path: Path, case: str) -> None:
    make, expected = BAD[case]
    out = tmp_path / "out.yaml"
    result = CliRunner().invoke(main, ["import-forge", str(_save(tmp_path, make())), "-o", str(out)])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: ") and result.output.count("\n") == 1 and expected in result.output, result.output
    assert not out.exists() and not list(tmp_path.glob(".*partial"))


def test_build_with_a_nonzero_activation_offset_is_refused(tmp_path: Path) -> None:
    ckpt = torch.load(DATA / "default.pt", weights_only=True)
    ckpt["model"]["transformer.h.0.mlp.activation_x_offset"] = torch.tensor(0.5)
    path = _save(tmp_path, ckpt)
    spec = _import(path, tmp_path / "m.yaml")
    result = CliRunner().invoke(main, ["build", str(spec), "--weights", str(path), "-o", str(tmp_path / "out")])
    assert result.exit_code == 2 and "activation_x_offset is 0.5 while model_args' mlp_x/y_offset are 0" in result.output
    assert not (tmp_path / "out").exists()
    with pytest.raises(BuildError):
        _eager(path, tmp_path)
