"""The YamlLLM spec: JSON Schema, semantic rules and the frozen typed tree. Knows nothing of torch or ONNX."""

from __future__ import annotations

from yamlllm_export.spec.load import load_spec, validate_dict
from yamlllm_export.spec.types import ModelSpec

__all__ = ["ModelSpec", "load_spec", "validate_dict"]
