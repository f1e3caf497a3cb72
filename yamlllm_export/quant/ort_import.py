"""Import ORT's weight-only quantizer without its side effect: the module calls ``logging.basicConfig(level=INFO)``
at import, after which every library's INFO logs (the exporter's passes among them) reach the terminal."""

from __future__ import annotations

import logging
from types import ModuleType


def matmul_nbits_quantizer() -> ModuleType:
    """``onnxruntime.quantization.matmul_nbits_quantizer``, with the root logger left as it was."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        from onnxruntime.quantization import matmul_nbits_quantizer as module
    finally:
        for h in root.handlers[:]:
            if h not in handlers:
                root.removeHandler(h)
        root.setLevel(level)
    return module
