"""Quantize the ``model.onnx`` of a (temporary) build folder in place and record the bytes it takes."""

from __future__ import annotations

from pathlib import Path

import onnx
from torch import nn

from yamlllm_export.quant.apply import quantize_graph
from yamlllm_export.quant.config import QuantConfig


def quantize_folder(folder: Path, cfg: QuantConfig, target: str, reference: nn.Module, external_data: str) -> dict:
    """Rewrite ``folder/model.onnx`` (+ its external data) quantized; returns build.json's ``quantization``."""
    path, data = folder / "model.onnx", folder / external_data
    float_bytes = path.stat().st_size + data.stat().st_size
    model = onnx.load(str(path))  # external data read in
    model, summary = quantize_graph(model, cfg, target, reference)
    path.unlink()
    data.unlink()  # onnx appends to an existing data file
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location=external_data)
    summary["bytes"] = {"float": float_bytes, "quantized": path.stat().st_size + data.stat().st_size}
    return summary
