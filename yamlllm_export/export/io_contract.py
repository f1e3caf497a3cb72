"""The graph's inputs and outputs: onnxruntime-genai's decoder convention.

inputs   input_ids            int64 (batch_size, sequence_length)
         attention_mask       int64 (batch_size, total_sequence_length)    1 = token, 0 = pad (either side)
         position_ids         int64 (batch_size, sequence_length)          only for learned / RoPE / sinusoidal positions
         past_key_values.{i}.key / .value   (batch_size, kv_heads, past_sequence_length, head_dim)
outputs  logits               (batch_size, sequence_length, vocab_size)
         present.{i}.key / .value           (batch_size, kv_heads, past_sequence_length + sequence_length, head_dim)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from yamlllm_export.spec.types import ModelSpec


@dataclass(frozen=True)
class IOContract:
    num_layers: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    has_position_ids: bool

    @classmethod
    def for_spec(cls, spec: ModelSpec) -> IOContract:
        att = spec.layer.attention
        return cls(
            num_layers=spec.num_layers,
            num_kv_heads=att.num_kv_heads,
            head_dim=att.head_dim,
            vocab_size=spec.embedding.vocab_size,
            has_position_ids=spec.embedding.positional_encoding.type in ("learned", "rope", "sinusoidal"),
        )

    def past_names(self) -> list[str]:
        return [f"past_key_values.{i}.{kv}" for i in range(self.num_layers) for kv in ("key", "value")]

    def present_names(self) -> list[str]:
        return [f"present.{i}.{kv}" for i in range(self.num_layers) for kv in ("key", "value")]

    def input_names(self) -> list[str]:
        return ["input_ids", "attention_mask", *(["position_ids"] if self.has_position_ids else []), *self.past_names()]

    def output_names(self) -> list[str]:
        return ["logits", *self.present_names()]

    def example_inputs(self, dtype: torch.dtype, batch: int = 2, seq: int = 3, past: int = 2) -> tuple[torch.Tensor, ...]:
        """Tracing inputs. past ≥ 2 and seq ≥ 2, else torch.export specialises those dims to 0/1."""
        ids = torch.zeros(batch, seq, dtype=torch.int64)
        mask = torch.ones(batch, past + seq, dtype=torch.int64)
        pos = (torch.arange(past, past + seq, dtype=torch.int64)).expand(batch, -1).contiguous()
        cache = [torch.zeros(batch, self.num_kv_heads, past, self.head_dim, dtype=dtype) for _ in self.past_names()]
        return (ids, mask, *([pos] if self.has_position_ids else []), *cache)

    def dynamic_shapes(self) -> tuple[object, ...]:
        """Per ``FlatIO.forward`` argument: input_ids, attention_mask, then the ``*rest`` tuple."""
        batch = torch.export.Dim("batch_size")
        seq = torch.export.Dim("sequence_length")
        total = torch.export.Dim("total_sequence_length")
        past = torch.export.Dim("past_sequence_length")
        rest = (*([{0: batch, 1: seq}] if self.has_position_ids else []), *({0: batch, 2: past} for _ in self.past_names()))
        return ({0: batch, 1: seq}, {0: batch, 1: total}, rest)


class FlatIO(nn.Module):
    """Adapts ``DecoderLM.forward`` to the flat tensor lists of the ONNX contract."""

    def __init__(self, model: nn.Module, contract: IOContract) -> None:
        super().__init__()
        self.model, self.contract = model, contract

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, *rest: torch.Tensor) -> tuple[torch.Tensor, ...]:
        position_ids = rest[0] if self.contract.has_position_ids else None
        flat = rest[1:] if self.contract.has_position_ids else rest
        past = [(flat[2 * i], flat[2 * i + 1]) for i in range(self.contract.num_layers)]
        logits, presents = self.model(input_ids, attention_mask, position_ids, past)
        return (logits, *(t for kv in presents for t in kv))
