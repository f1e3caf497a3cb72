"""yamlllm-export: YamlLLM architecture YAML → PyTorch → verified, fast ONNX.

The public API is small: ``load_spec``, ``build_model`` and ``export_onnx``.
"""

from __future__ import annotations

__version__ = "0.1.0"

from yamlllm_export.errors import BuildError, SpecError, YamlllmError
from yamlllm_export.spec import ModelSpec, load_spec


def build_model(spec, *, seed: int = 0, device: str = "cpu"):  # noqa: ANN001, ANN201 - lazy torch import
    """Build the PyTorch ``DecoderLM`` for a spec (path, dict or ``ModelSpec``), initialised from ``seed``."""
    from yamlllm_export.model.builders import build_model as _build

    return _build(load_spec(spec), seed=seed, device=device)


def export_onnx(model_or_spec, out_dir, **kwargs):  # noqa: ANN001, ANN003, ANN201 - lazy torch import
    """Export to an ONNX model folder; see ``yamlllm_export.export.writer.export_onnx`` for options."""
    from yamlllm_export.export.writer import export_onnx as _export

    return _export(model_or_spec, out_dir, **kwargs)


__all__ = ["BuildError", "ModelSpec", "SpecError", "YamlllmError", "build_model", "export_onnx", "load_spec"]
