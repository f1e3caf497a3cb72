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

Full-window graphs (``full_window``): a spec with an option whose output at a position depends on later
tokens of the window (``spec.features.needs_full_window``: the KAN FFN, ...) has no exact cache. Its graph
takes the whole window and has no cache inputs or outputs; it is what ReaLLM-Forge's sampler runs:
         input_ids            int64 (batch_size, sequence_length)
         attention_mask       int64 (batch_size, sequence_length)
         position_ids         int64 (batch_size, sequence_length)          as above
outputs  logits               (batch_size, sequence_length | 1, vocab_size)
The runtime recomputes the window at every step (``runtime/stepper.py``), cropped to the last ``window``
tokens (``max_position_embeddings``), as Forge crops to its block_size.
Layers that are not attention (``layer_types``) carry a recurrent state of a fixed size instead, whatever the
context length (docs/recurrent.md); an ``identity`` layer carries nothing:
         past.{i}.conv       (batch_size, hidden_dim, L_cache − 1)   short_conv: the last L_cache − 1 inputs of its
                                                                      conv (genai's LFM2 name and layout)
         past.{i}.kv_sum     (batch_size, heads, head_dim)          linear_attention: S = Σ φ(k) ⊙ v
         past.{i}.k_sum      (batch_size, heads, head_dim)          linear_attention: z = Σ φ(k)
         present.{i}.conv / .kv_sum / .k_sum                        the same shapes, after the new tokens
An ``infinite_attention`` layer has a KV cache of its own head sizes, named as above: keys (batch_size, kv_heads,
length, qk_head_dim), values (batch_size, kv_heads, length, v_head_dim). A pad (attention_mask 0) never changes a
state. ``attention_mask`` still spans past + new tokens; a state layer reads only its last sequence_length columns.

Plain data, no torch: the export traces its graph to this contract (``export/flat_io.py`` makes the tracing
inputs), and the runtime feeds a built folder by it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from yamlllm_export.spec.features import needs_full_window
from yamlllm_export.spec.types import ModelSpec

T = TypeVar("T")


@dataclass(frozen=True)
class CacheTensor:
    """One of a layer's cache tensors: its name suffix and its (heads, dim). A KV cache tensor is
    (B, heads, T, dim) and grows with the context; a recurrent state (``state``) is (B, heads, dim) and does not."""

    name: str  # key | value | latent | rope_key | conv | kv_sum | k_sum
    heads: int
    dim: int
    state: bool = False  # a recurrent state: past.{i}.<name>, (B, heads, dim)

    def past_name(self, layer: int) -> str:
        return f"past.{layer}.{self.name}" if self.state else f"past_key_values.{layer}.{self.name}"

    def present_name(self, layer: int) -> str:
        return f"present.{layer}.{self.name}"


# each kind's cache: what every layer of that kind carries (attention's comes from the spec's mechanism)
def layer_cache(spec: ModelSpec, kind: str) -> tuple[CacheTensor, ...]:
    """The cache tensors of one layer of ``kind`` (``ModelSpec.mixers()``), in the order its module holds them."""
    att, layer = spec.layer.attention, spec.layer
    if kind == "identity":
        return ()
    if kind == "short_conv":
        assert layer.short_conv is not None  # spec/load.py fills it for every spec with a short_conv layer
        return (CacheTensor("conv", layer.hidden_dim, layer.short_conv.L_cache - 1, state=True),)
    if kind == "linear_attention":
        assert layer.linear_attention is not None
        heads = layer.linear_attention.num_heads
        return tuple(CacheTensor(name, heads, layer.hidden_dim // heads, state=True) for name in ("kv_sum", "k_sum"))
    if kind == "infinite_attention":  # keys and values of their own head sizes
        inf = layer.infinite_attention
        assert inf is not None
        return (CacheTensor("key", inf.num_kv_heads, inf.qk_head_dim), CacheTensor("value", inf.num_kv_heads, inf.v_head_dim))
    if att.mechanism == "mla":  # without RoPE (mla_rope_head_dim 0) the latent alone
        mla = att.mla_dims()
        rope = (CacheTensor("rope_key", 1, mla.rope_head_dim),) if mla.rope_head_dim else ()
        return (CacheTensor("latent", 1, mla.latent_dim), *rope)
    return (CacheTensor("key", att.num_kv_heads, att.head_dim), CacheTensor("value", att.num_kv_heads, att.head_dim))


@dataclass(frozen=True)
class IOContract:
    num_layers: int
    vocab_size: int
    has_position_ids: bool
    cache: tuple[CacheTensor, ...]  # an attention layer's cache tensors, in the order the model's cache tuples hold them
    last_logits: bool = False  # logits of the last position only (generation), not of every position (validation)
    full_window: bool = False  # no cache: the graph takes the whole window (module docstring); ``cache`` is then ()
    window: int = 0  # full-window graphs: the most tokens a window holds (max_position_embeddings); older ones are cropped
    layers: tuple[tuple[CacheTensor, ...], ...] | None = None  # each layer's tensors; None: every layer has ``cache``

    @classmethod
    def for_spec(cls, spec: ModelSpec, *, last_logits: bool = False) -> IOContract:
        kinds = spec.mixers()
        full_window = needs_full_window(spec)
        layers = None if set(kinds) == {"attention"} else tuple(() if full_window else layer_cache(spec, kind) for kind in kinds)
        return cls(
            num_layers=spec.num_layers,
            vocab_size=spec.embedding.vocab_size,
            has_position_ids=spec.embedding.positional_encoding.type in ("learned", "rope", "sinusoidal"),
            cache=() if full_window else layer_cache(spec, "attention"),
            last_logits=last_logits,
            full_window=full_window,
            window=spec.embedding.max_position_embeddings if full_window else 0,
            layers=layers,
        )

    def layer_tensors(self) -> tuple[tuple[CacheTensor, ...], ...]:
        """Each layer's cache tensors (empty for an identity layer)."""
        return self.layers if self.layers is not None else (self.cache,) * self.num_layers

    def _tensors(self) -> list[tuple[int, CacheTensor]]:
        return [(i, c) for i, cache in enumerate(self.layer_tensors()) for c in cache]

    def past_names(self) -> list[str]:
        return [c.past_name(i) for i, c in self._tensors()]

    def present_names(self) -> list[str]:
        return [c.present_name(i) for i, c in self._tensors()]

    def _tensor(self, name: str) -> CacheTensor:
        _, layer, suffix = name.split(".")
        return next(c for c in self.layer_tensors()[int(layer)] if c.name == suffix)

    def is_state(self, name: str) -> bool:
        """Whether a past or present tensor is a recurrent state (fixed size) rather than a KV cache."""
        return self._tensor(name).state

    def cache_dims(self, name: str) -> tuple[int, int]:
        """(heads, dim) of a past or present tensor, e.g. ``past_key_values.3.latent`` → (1, mla_latent_dim)."""
        c = self._tensor(name)
        return (c.heads, c.dim)

    def cache_shape(self, name: str, batch: T, length: T) -> tuple[T | int, ...]:
        """(batch, heads, length, dim) of a past or present KV tensor, (batch, heads, dim) of a state;
        batch and length may be dim names."""
        c = self._tensor(name)
        return (batch, c.heads, c.dim) if c.state else (batch, c.heads, length, c.dim)

    @property
    def mask_length(self) -> str:
        """The attention mask's second dim: the new tokens alone in a full-window graph, past + new otherwise."""
        return "sequence_length" if self.full_window else "total_sequence_length"

    def input_names(self) -> list[str]:
        return ["input_ids", "attention_mask", *(["position_ids"] if self.has_position_ids else []), *self.past_names()]

    def output_names(self) -> list[str]:
        return ["logits", *self.present_names()]
