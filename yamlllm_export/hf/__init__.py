"""Hugging Face models in the YAML world: ``config.json`` → our spec (``import-hf``), and an HF folder's
weights → the compiled model's state dict (``build --weights HF_DIR``). One module per family under
``families/``; nothing here downloads or executes code from the checkpoint."""

from yamlllm_export.hf.config import HFConfig, read_config
from yamlllm_export.hf.importer import import_hf, render_yaml
from yamlllm_export.hf.weights import hf_fingerprint, is_hf_folder, load_hf_weights

__all__ = ["HFConfig", "hf_fingerprint", "import_hf", "is_hf_folder", "load_hf_weights", "read_config", "render_yaml"]
