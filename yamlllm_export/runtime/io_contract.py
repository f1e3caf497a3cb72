"""The graph's inputs and outputs: onnxruntime-genai's decoder convention.

inputs   input_ids            int64 (batch_size, sequence_length)
         attention_mask       int64 (batch_size, total_sequence_length)    1 = token, 0 = pad (either side)
         position_ids         int64 (batch_size, sequence_length)          only for learned / RoPE / sinusoidal positions
         past_key_values.{i}.key / .value   (batch_size, kv_heads, past_sequence_length, head_dim)
outputs  logits               (batch_size, sequence_length, vocab_size)         (batch_size, 1, vocab_size) when
                                                                           built with last-position logits
         present.{i}.key / .value           (batch_size, kv_heads, past_sequence_length + sequence_length, head_dim)

Multi-latent attention (``mechanism: mla``) caches the compressed latent instead of keys and values:
         past_key_values.{i}.latent         (batch_size, 1, past_sequence_length, mla_latent_dim)   RMSNorm(W_dkv·x)
         past_key_values.{i}.rope_key       (batch_size, 1, past_sequence_length, mla_rope_head_dim) RoPE(W_kr·x)
         present.{i}.latent / .rope_key     the same with past_sequence_length + sequence_length
The axis of size 1 is the (single, shared) KV head, so every cache tensor is (batch, heads, length, dim).
MLA without RoPE (learned, sinusoidal or no positions) has no rope key: the cache is ``.latent`` alone.

Plain data, no torch: the export traces its graph to this contract (``export/flat_io.py`` makes the tracing
inputs), and the runtime feeds a built folder by it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from yamlllm_export.spec.types import ModelSpec

T = TypeVar("T")


@dataclass(frozen=True)
class CacheTensor:
    """One of a layer's cache tensors: its name suffix and its (heads, dim); the shape is (B, heads, T, dim)."""

    name: str  # key | value | latent | rope_key
    heads: int
    dim: int


@dataclass(frozen=True)
class IOContract:
    num_layers: int
    vocab_size: int
    has_position_ids: bool
    cache: tuple[CacheTensor, ...]  # per layer, in the order the model's cache tuples hold them
    last_logits: bool = False  # logits of the last position only (generation), not of every position (validation)

    @classmethod
    def for_spec(cls, spec: ModelSpec, *, last_logits: bool = False) -> IOContract:
        att = spec.layer.attention
        if att.mechanism == "mla":  # without RoPE (mla_rope_head_dim 0) the latent alone
            mla = att.mla_dims()
            rope = (CacheTensor("rope_key", 1, mla.rope_head_dim),) if mla.rope_head_dim else ()
            cache = (CacheTensor("latent", 1, mla.latent_dim), *rope)
        else:
            cache = (CacheTensor("key", att.num_kv_heads, att.head_dim), CacheTensor("value", att.num_kv_heads, att.head_dim))
        return cls(
            num_layers=spec.num_layers,
            vocab_size=spec.embedding.vocab_size,
            has_position_ids=spec.embedding.positional_encoding.type in ("learned", "rope", "sinusoidal"),
            cache=cache,
            last_logits=last_logits,
        )

    def past_names(self) -> list[str]:
        return [f"past_key_values.{i}.{c.name}" for i in range(self.num_layers) for c in self.cache]

    def present_names(self) -> list[str]:
        return [f"present.{i}.{c.name}" for i in range(self.num_layers) for c in self.cache]

    def cache_dims(self, name: str) -> tuple[int, int]:
        """(heads, dim) of a past or present tensor, e.g. ``past_key_values.3.latent`` → (1, mla_latent_dim)."""
        suffix = name.rsplit(".", 1)[-1]
        return next((c.heads, c.dim) for c in self.cache if c.name == suffix)

    def cache_shape(self, name: str, batch: T, length: T) -> tuple[T, int, T, int]:
        """(batch, heads, length, dim) of a past or present tensor; batch and length may be dim names."""
        heads, dim = self.cache_dims(name)
        return (batch, heads, length, dim)

    def input_names(self) -> list[str]:
        return ["input_ids", "attention_mask", *(["position_ids"] if self.has_position_ids else []), *self.past_names()]

    def output_names(self) -> list[str]:
        return ["logits", *self.present_names()]
