"""Generation on ONNX Runtime from a built folder (no torch): our own loop, and onnxruntime-genai's config."""

from __future__ import annotations

from yamlllm_export.runtime.generator import Generation, Generator
from yamlllm_export.runtime.sampling import SamplingOptions

__all__ = ["Generation", "Generator", "SamplingOptions"]
