"""The exported module: ``DecoderLM.forward`` seen through the flat tensor lists of the ONNX I/O contract."""

from __future__ import annotations

import torch
from torch import nn

from yamlllm_export.export.io_contract import IOContract


class FlatIO(nn.Module):
    """Adapts ``DecoderLM.forward`` to the flat tensor lists of the ONNX contract."""

    def __init__(self, model: nn.Module, contract: IOContract) -> None:
        super().__init__()
        self.model, self.contract = model, contract

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, *rest: torch.Tensor) -> tuple[torch.Tensor, ...]:
        position_ids = rest[0] if self.contract.has_position_ids else None
        flat = rest[1:] if self.contract.has_position_ids else rest
        n = len(self.contract.cache)
        past = [tuple(flat[n * i : n * (i + 1)]) for i in range(self.contract.num_layers)]
        logits, presents = self.model(input_ids, attention_mask, position_ids, past, last_logits=self.contract.last_logits)
        return (logits, *(t for kv in presents for t in kv if t is not None))  # None: MLA without RoPE has no rope key
