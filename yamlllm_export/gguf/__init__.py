"""GGUF files (llama.cpp, Ollama, LM Studio) in the YAML world: metadata → our spec (``import-gguf``),
tensors → the compiled model's state dict (``build --weights FILE.gguf``), the tokenizer → tokenizer.json,
and ``--keep-quantized``: llama.cpp blocks that ``com.microsoft.MatMulNBits`` expresses exactly become its
initializers. Read with the ``gguf`` package (an optional extra)."""

from yamlllm_export.gguf.importer import import_gguf
from yamlllm_export.gguf.reader import is_gguf, read_gguf
from yamlllm_export.gguf.tensors import load_gguf_weights

__all__ = ["import_gguf", "is_gguf", "load_gguf_weights", "read_gguf"]
