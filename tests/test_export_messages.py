"""Failures and warnings reach the user with their cause: the exporter's known noise is filtered by name,
anything else it warns or prints passes through; a contrib schema ONNX refuses is an error when target
``ort`` emits that op."""

from __future__ import annotations

import logging
import warnings

import onnx
import pytest
from onnxruntime.capi import onnxruntime_pybind11_state as ort_c

from yamlllm_export.errors import BuildError
from yamlllm_export.export import writer
from yamlllm_export.lowerings import contrib_schemas


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def exporter_log():  # noqa: ANN201
    """What the exporter's registry logger lets through (torch's loggers do not propagate to the root)."""
    log, records = logging.getLogger(LOGGER), _Records()
    log.addHandler(records)
    yield records.messages
    log.removeHandler(records)


LOGGER = "torch.onnx._internal.exporter._registration"


def _fake_export(*messages: tuple[str, type[Warning]], printed: str = "", logged: str = ""):  # noqa: ANN202
    def export(*_args: object) -> str:
        for message, category in messages:
            warnings.warn(message, category, stacklevel=1)
        if printed:
            print(printed)
        if logged:
            logging.getLogger(LOGGER).warning(logged)
        return _Program()

    return export


class _Program:
    """What ``_export`` does with the exporter's result before returning it."""

    def optimize(self) -> None:
        pass


def test_known_noise_is_filtered(monkeypatch, capfd, recwarn, exporter_log) -> None:  # noqa: ANN001
    noise = [
        (
            "# The axis name: batch_size will not be used, since it shares the same shape constraints with another axis: batch_size.",
            UserWarning,
        ),
        ("`isinstance(treespec, LeafSpec)` is deprecated, use ...", FutureWarning),
    ]
    monkeypatch.setattr(writer, "_torch_export", _fake_export(*noise, logged="torchvision is not installed. Skipping torchvision::nms"))
    assert isinstance(writer._export(None, None, None, None), _Program)
    assert not recwarn.list and not capfd.readouterr().out and not exporter_log


def test_other_warnings_output_and_logs_pass_through(monkeypatch, capfd, exporter_log) -> None:  # noqa: ANN001
    monkeypatch.setattr(
        writer, "_torch_export", _fake_export(("a real problem", UserWarning), printed="exporter says why", logged="a real note")
    )
    with pytest.warns(UserWarning, match="a real problem"):
        writer._export(None, None, None, None)
    assert "exporter says why" in capfd.readouterr().out
    assert exporter_log == ["a real note"]


def _schema(name: str):  # noqa: ANN202
    return next(s for s in ort_c.get_all_operator_schema() if s.name == name and s.domain == "com.microsoft")


@pytest.mark.parametrize(("op", "emitted"), [("GroupQueryAttention", True), ("FastGelu", False)])
def test_refused_contrib_schema(op: str, emitted: bool, monkeypatch) -> None:  # noqa: ANN001
    def refuse(_schema: object) -> None:
        raise ValueError("DataTypeUtils::FromDataTypeString - Received invalid data type string 'T9'.")

    monkeypatch.setattr(contrib_schemas, "_known", lambda _s: False)
    monkeypatch.setattr(onnx.defs, "register_schema", refuse)
    if emitted:
        with pytest.raises(BuildError, match=rf"com\.microsoft\.{op} .*which target ort emits: .*invalid data type string 'T9'"):
            contrib_schemas.register([_schema(op)])
    else:
        assert contrib_schemas.register([_schema(op)]) == 0
