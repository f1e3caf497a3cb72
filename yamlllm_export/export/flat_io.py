"""The exported module: ``DecoderLM.forward`` seen through the flat tensor lists of the ONNX I/O contract,
and the example inputs and dynamic dimensions ``torch.export`` traces it with."""

from __future__ import annotations

import torch
from torch import nn

from yamlllm_export.runtime.io_contract import IOContract


class FlatIO(nn.Module):
    """Adapts ``DecoderLM.forward`` to the flat tensor lists of the ONNX contract."""

    def __init__(self, model: nn.Module, contract: IOContract) -> None:
        super().__init__()
        self.model, self.contract = model, contract

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, *rest: torch.Tensor) -> tuple[torch.Tensor, ...]:
        position_ids = rest[0] if self.contract.has_position_ids else None
        flat = rest[1:] if self.contract.has_position_ids else rest
        past: list[tuple[torch.Tensor, ...]] | None = None  # a full-window graph has no cache: the model starts from its own empty one
        if not self.contract.full_window:
            past, start = [], 0
            for cache in self.contract.layer_tensors():  # each layer's own tensors: a KV pair, a state, or none
                past.append(tuple(flat[start : start + len(cache)]))
                start += len(cache)
        logits, presents = self.model(input_ids, attention_mask, position_ids, past, last_logits=self.contract.last_logits)
        if self.contract.full_window:
            return (logits,)
        return (logits, *(t for kv in presents for t in kv if t is not None))  # None: MLA without RoPE has no rope key


def example_inputs(contract: IOContract, dtype: torch.dtype, batch: int = 2, seq: int = 3, past: int = 2) -> tuple[torch.Tensor, ...]:
    """Tracing inputs. past ≥ 2 and seq ≥ 2, else torch.export specialises those dims to 0/1. A full-window
    graph has no past: its mask covers the new tokens alone."""
    past = 0 if contract.full_window else past
    ids = torch.zeros(batch, seq, dtype=torch.int64)
    mask = torch.ones(batch, past + seq, dtype=torch.int64)
    pos = (torch.arange(past, past + seq, dtype=torch.int64)).expand(batch, -1).contiguous()
    cache = [torch.zeros(contract.cache_shape(name, batch, past), dtype=dtype) for name in contract.past_names()]
    return (ids, mask, *([pos] if contract.has_position_ids else []), *cache)


def dynamic_shapes(contract: IOContract) -> tuple[object, ...]:
    """Per ``FlatIO.forward`` argument: input_ids, attention_mask, then the ``*rest`` tuple."""
    batch = torch.export.Dim("batch_size")
    seq = torch.export.Dim("sequence_length")
    total = torch.export.Dim("total_sequence_length")
    past = torch.export.Dim("past_sequence_length")
    caches = ({0: batch} if contract.is_state(name) else {0: batch, 2: past} for name in contract.past_names())
    rest = (*([{0: batch, 1: seq}] if contract.has_position_ids else []), *caches)
    return ({0: batch, 1: seq}, {0: batch, 1: seq if contract.full_window else total}, rest)
