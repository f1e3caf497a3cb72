"""Every build opens in ONNX Runtime without a warning: a graph we write carries nothing ORT has to clean up
(e.g. an initializer no node reads), which a user would see in yellow on every session."""

from __future__ import annotations

import onnxruntime as ort
import pytest

from tests.conftest import TARGETS, TINY_MODELS

GRID = [pytest.param(m, t, id=f"{m}-{t}", marks=pytest.mark.xdist_group(name=m)) for m in TINY_MODELS for t in TARGETS]


@pytest.mark.parametrize(("model", "target"), GRID)
def test_session_opens_without_warnings(model: str, target: str, built, capfd) -> None:  # noqa: ANN001
    folder = built(model, target)
    capfd.readouterr()
    opts = ort.SessionOptions()
    opts.log_severity_level = 1  # info and up: ORT logs its warnings to stderr
    ort.InferenceSession(str(folder / "model.onnx"), opts, providers=["CPUExecutionProvider"])
    err = capfd.readouterr().err
    warnings = [line for line in err.splitlines() if " [W:onnxruntime" in line or " [E:onnxruntime" in line]
    assert not warnings, "\n".join(warnings)
