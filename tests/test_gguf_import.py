"""import-gguf + build --weights FILE.gguf on tiny GGUF files written the way llama.cpp writes them, one per
architecture: the ONNX folder against transformers on the HF model the file was written from."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from tests.gguf_fixtures import GGUF_CASES, write_gguf
from tests.hf_fixtures import hf_parity, make_hf_model
from yamlllm_export.cli import main
from yamlllm_export.export.writer import export_onnx

TOL = 1e-4


@pytest.mark.parametrize("case", sorted(GGUF_CASES), ids=str)
def test_gguf_architecture_matches_transformers(case: str, tmp_path) -> None:
    hf = make_hf_model(case, tmp_path / "hf")
    path = write_gguf(hf, GGUF_CASES[case], tmp_path / "model.gguf")
    result = CliRunner().invoke(main, ["import-gguf", str(path), "-o", str(tmp_path / "spec.yaml")])
    assert result.exit_code == 0, result.output
    folder = export_onnx(tmp_path / "spec.yaml", tmp_path / "out", weights=path)
    parity = hf_parity(hf, folder)
    assert parity.prefill <= TOL and parity.decode <= TOL, f"{case}: {parity}"
