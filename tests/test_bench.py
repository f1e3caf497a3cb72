"""``bench``: report structure and sanity (positive, finite numbers) on tiny models, never speed; the
last-position-logits build against the all-positions one; bad input. CUDA cases carry the ``cuda`` marker."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from yamlllm_export.cli import main
from yamlllm_export.runtime.session import availability

MODELS = Path(__file__).resolve().parents[1] / "models"
FAST = ["--prompt-len", "8", "--gen-len", "4", "--rounds", "2", "--warmup", "1"]
SPEED = ("prefill_ms", "prompt_tok_s", "decode_tok_s", "achieved_gbs", "peak_rss_mib")
CUDA = availability("cuda")
pytestmark = pytest.mark.xdist_group("tiny-llama")


def _bench(*args):
    result = CliRunner().invoke(main, ["bench", *map(str, args)])
    return result


def _positive_finite(row: dict) -> None:
    for key in SPEED:
        assert isinstance(row[key], float) and math.isfinite(row[key]) and row[key] > 0, (row["label"], key, row[key])


def test_yaml_inputs_are_built_and_compared_with_eager(tmp_path):
    out = tmp_path / "rep"
    result = _bench(MODELS / "tiny-llama.yaml", MODELS / "tiny-gpt2.yaml", *FAST, "--out", out)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "bench.json").read_text())
    assert [r["label"] for r in report["rows"]] == ["tiny-llama ort", "tiny-llama eager", "tiny-gpt2 ort", "tiny-gpt2 eager"]
    for row in report["rows"]:
        assert row["error"] == ""
        _positive_finite(row)
        assert row["parameter_count"] > 0 and row["kv_cache_bytes_per_token"] > 0
        assert row["logits"] == "last"  # like with like: the build's --logits and the PyTorch loop's
        assert (row["build_s"] > 0) if row["kind"] == "ort" else row["build_s"] is None  # the ONNX build is ort's
    assert report["bandwidth_gbs"] > 0 and math.isfinite(report["bandwidth_gbs"])
    assert all(len(rounds) == 2 for rounds in report["raw_rounds"].values())
    assert report["workload"] == {"prompt_len": 8, "gen_len": 4, "batch": 1, "seed": 0}
    assert {"date", "cpu", "cpu_count", "onnxruntime"} <= set(report["machine"])
    md = (out / "bench.md").read_text()
    assert "| tiny-gpt2 eager |" in md and "decode tok/s" in md
    eager_line = next(line for line in md.splitlines() if line.startswith("| tiny-gpt2 eager |"))
    assert eager_line.rstrip(" |").endswith("| -")  # the build-time cell of a PyTorch row is empty
    assert (out / "decode_tok_s.png").stat().st_size > 0 and (out / "prefill_ms.png").stat().st_size > 0
    assert "tiny-llama ort" in result.output and f"report in {out}" in result.output


def test_built_folder_ort_only_batch_2(built):
    folder = built("tiny-llama", "ort")
    result = _bench(folder, *FAST, "--batch", "2", "--backend", "ort", "--no-bandwidth")
    assert result.exit_code == 0, result.output
    report = json.loads((folder / "bench" / "bench.json").read_text())
    (row,) = report["rows"]
    assert row["label"] == "tiny-llama-ort" and row["kind"] == "ort" and row["build_s"] > 0
    _positive_finite(row)
    assert report["bandwidth_gbs"] is None


def test_fresh_sessions_measure_every_round_in_a_new_worker(built, tmp_path):
    folder = built("tiny-llama", "ort")
    out = tmp_path / "rep"
    result = _bench(folder, *FAST, "--backend", "ort", "--fresh-sessions", "--out", out)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "bench.json").read_text())
    assert report["fresh_sessions"] is True and all(len(r) == 2 for r in report["raw_rounds"].values())
    (row,) = report["rows"]
    _positive_finite(row)
    assert row["model_rss_mib"] > 0 and report["bandwidth_gbs"] > 0
    assert "each in a new session" in (out / "bench.md").read_text()


def test_last_position_logits_equal_the_last_of_all_positions(tmp_path):
    from yamlllm_export import export_onnx
    from yamlllm_export.runtime.io_contract import IOContract
    from yamlllm_export.runtime.session import cpu_session
    from yamlllm_export.runtime.stepper import GraphStepper
    from yamlllm_export.spec import load_spec

    spec = load_spec(MODELS / "tiny-llama.yaml")
    contract = IOContract.for_spec(spec)
    outs = {}
    ids = np.random.default_rng(0).integers(0, spec.embedding.vocab_size, (2, 7))
    mask = np.ones((2, 7), np.int64)
    mask[0, :3] = 0  # left padding
    for logits in ("all", "last"):
        folder = export_onnx(MODELS / "tiny-llama.yaml", tmp_path / logits, logits=logits)
        assert json.loads((folder / "build.json").read_text())["logits"] == logits
        stepper = GraphStepper.for_session(cpu_session(folder), contract)
        first, past = stepper.step(ids, mask, stepper.empty_past(2))
        second, _ = stepper.step(ids[:, :1], np.concatenate([mask, np.ones((2, 1), np.int64)], 1), past)
        outs[logits] = first, second
    assert outs["last"][0].shape == (2, 1, spec.embedding.vocab_size)
    for last, every in ((outs["last"][0], outs["all"][0][:, -1:]), (outs["last"][1], outs["all"][1])):
        assert np.isfinite(every).all()  # NaN on both sides would agree: assert_allclose's default equal_nan=True
        np.testing.assert_allclose(last, every, atol=1e-5, equal_nan=False)
    result = CliRunner().invoke(main, ["validate", str(tmp_path / "last")])
    assert result.exit_code == 2 and "built with --logits last" in result.output


def _greedy_logits(model, step, batch: int = 2, prompt: int = 7, steps: int = 4) -> list:
    """Logits of a prompt then ``steps`` greedy tokens; ``step(model, ids, mask, length, presents)``."""
    import torch

    ids = torch.randint(3, model.embed.num_embeddings, (batch, prompt), generator=torch.Generator().manual_seed(0))
    mask = torch.ones(batch, prompt + steps, dtype=torch.int64)
    out, presents, length = [], model.empty_cache(batch), 0
    with torch.inference_mode():
        for _ in range(steps + 1):
            logits, presents = step(model, ids, mask[:, : length + ids.shape[1]], length, presents)
            out.append(logits)
            length, ids = length + ids.shape[1], logits[:, -1:].argmax(-1)
    return out


@pytest.mark.parametrize("model", ["tiny-llama", "tiny-gpt2", "tiny-mistral", "tiny-alibi", "tiny-forge-consmax-fire"])
def test_static_cache_computes_what_the_exported_cache_does(model):
    """The compile row's static cache (RoPE, learned positions, sliding window, ALiBi, a Forge softmax variant
    with FIRE) against the module as
    exported, whose cache is past ++ new: the same logits at every step."""
    from yamlllm_export import build_model, load_spec
    from yamlllm_export.bench.static_cache import StaticCache, StaticKV

    spec = load_spec(MODELS / f"{model}.yaml")
    eager = _greedy_logits(build_model(spec, seed=0).eval(), lambda m, ids, mask, n, past: m(ids, mask, None, past, last_logits=True))
    static_model = build_model(spec, seed=0).eval()
    cache = StaticCache(static_model, 2, 7 + 4)
    assert all(isinstance(block.attn.kernel, StaticKV) for block in static_model.blocks)
    static = _greedy_logits(static_model, lambda m, ids, mask, n, _: m(ids, mask, None, cache.past(n), last_logits=True))
    for step, (a, b) in enumerate(zip(eager, static, strict=True)):
        assert a.shape == (2, 1, spec.embedding.vocab_size), step
        np.testing.assert_allclose(b.numpy(), a.numpy(), atol=1e-5, rtol=0, equal_nan=False, err_msg=f"step {step}")


def test_static_cache_refuses_latent_attention():
    from yamlllm_export import build_model, load_spec
    from yamlllm_export.bench.static_cache import StaticCache
    from yamlllm_export.errors import BuildError

    with pytest.raises(BuildError, match="--backend compile: the static cache covers"):
        StaticCache(build_model(load_spec(MODELS / "tiny-mla.yaml"), seed=0), 1, 8)


@pytest.mark.parametrize("kind", ["eager", "compile"])
def test_torch_rows_compute_last_position_logits(built, monkeypatch, kind):
    """Both PyTorch rows ask the model for the last position's logits only; ``compile`` runs on the static
    cache (torch.compile itself is replaced by the identity here: compiling takes minutes on this CI)."""
    import torch

    from yamlllm_export.bench.static_cache import StaticKV
    from yamlllm_export.bench.torch_loop import TorchRunner
    from yamlllm_export.bench.types import System, Workload

    monkeypatch.setattr(torch, "compile", lambda model, **_: model)
    runner = TorchRunner(System("x", kind, str(built("tiny-llama", "ort"))), Workload(prompt_len=6, gen_len=3, batch=2))
    shapes = []
    model = runner.model
    runner.model = lambda *args, **kwargs: (lambda out: (shapes.append(tuple(out[0].shape)), out)[1])(model(*args, **kwargs))
    measured = runner.round()
    assert math.isfinite(measured.prefill_s) and measured.prefill_s > 0 and measured.decode_s > 0
    assert shapes == [(2, 1, model.embed.num_embeddings)] * 4
    assert all(isinstance(block.attn.kernel, StaticKV) for block in model.blocks) == (kind == "compile")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["nowhere.yaml"], "no such model folder or YAML file"),
        ([MODELS / "tiny-llama.yaml", "--gen-len", "0"], "--gen-len: 0 is less than 1"),
        ([MODELS / "tiny-llama.yaml", "--prompt-len", "4000"], "does not fit max_position_embeddings"),
    ],
    ids=["missing", "gen-len-0", "too-long"],
)
def test_bad_input_exits_2_with_one_line(tmp_path, args, expected):
    result = _bench(*args, "--out", tmp_path / "rep")
    assert result.exit_code == 2 and expected in result.output, result.output
    assert not (tmp_path / "rep").exists()


@pytest.mark.skipif(CUDA.usable, reason="a GPU is present")
def test_cuda_without_gpu_is_bad_input(tmp_path):
    result = _bench(MODELS / "tiny-llama.yaml", "--ep", "cuda", "--out", tmp_path / "rep")
    assert result.exit_code == 2 and "--ep cuda: not usable" in result.output


@pytest.mark.cuda
@pytest.mark.skipif(not CUDA.usable, reason=f"CUDA EP not usable: {CUDA.reason}")
def test_cuda_fp16_bench(tmp_path):
    out = tmp_path / "rep"
    result = _bench(MODELS / "tiny-llama.yaml", *FAST, "--ep", "cuda", "--out", out)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "bench.json").read_text())
    for row in report["rows"]:
        assert row["ep"] == "cuda" and row["error"] == ""
        _positive_finite(row)
        assert row["device_mib"] is None or row["device_mib"] > 0


@pytest.mark.parametrize(("fresh", "workers_per_system"), [(False, 1), (True, 3)])
def test_fresh_sessions_start_one_worker_per_round_and_drop_warmups_inside(monkeypatch, fresh, workers_per_system):
    """The measuring loop with a stand-in worker: how many sessions each system gets, and which runs count."""
    from yamlllm_export.bench import measure as bench_measure
    from yamlllm_export.bench.types import System, Workload

    started: list[str] = []

    class FakeWorker:
        def __init__(self, system, workload):
            self.label, self.runs = system.label, 0
            started.append(system.label)

        def ask(self, line=None):
            if line is None:
                return {"baseline_rss": 1}
            if line == "exit":
                return {"peak_rss": 5, "device_bytes": None}
            self.runs += 1  # the n-th run of this session takes n seconds: warm-ups must not be kept
            return {"prefill_s": float(self.runs), "decode_s": float(self.runs)}

        def close(self):
            pass

    monkeypatch.setattr(bench_measure, "Worker", FakeWorker)
    monkeypatch.setattr(bench_measure, "SETTLE_S", 0.0)
    systems = [System("a", "ort"), System("b", "ort")]
    measured = bench_measure.measure(systems, Workload(), rounds=3, warmup=1, fresh=fresh)
    assert sorted(started) == sorted(["a", "b"] * workers_per_system)
    for m in measured:
        # long-lived: runs 2, 3, 4 of one session; fresh: run 2 of each of three sessions
        assert [r.prefill_s for r in m.rounds] == ([2.0, 2.0, 2.0] if fresh else [2.0, 3.0, 4.0])
        assert m.peak_rss == 5 and m.baseline_rss == 1 and m.error == ""
