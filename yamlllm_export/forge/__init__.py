"""ReaLLM-Forge checkpoints: ``import-forge`` (``model_args`` → our spec, table-driven: forge/table.py) and
``build --weights CKPT.pt`` (Forge's state dict under our names: forge/weights.py). docs/forge-import.md
lists what is mapped, ignored and refused."""

from __future__ import annotations

from yamlllm_export.forge.checkpoint import ForgeCheckpoint, forge_checkpoint, is_forge_dict, load_pickle
from yamlllm_export.forge.importer import forge_spec, import_forge
from yamlllm_export.forge.weights import forge_state, load_forge_weights

__all__ = [
    "ForgeCheckpoint",
    "forge_checkpoint",
    "forge_spec",
    "forge_state",
    "import_forge",
    "is_forge_dict",
    "load_forge_weights",
    "load_pickle",
]
