"""The frozen, typed spec tree. Built only by ``spec.load``; every default is already filled in."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PositionalEncodingSpec:
    type: str  # learned | rope | alibi
    rope_theta: float


@dataclass(frozen=True)
class EmbeddingSpec:
    vocab_size: int
    max_position_embeddings: int
    embedding_dim: int
    padding_idx: int | None
    dropout: float
    positional_encoding: PositionalEncodingSpec


@dataclass(frozen=True)
class AttentionSpec:
    num_heads: int
    num_kv_heads: int
    head_dim: int
    bias: bool
    dropout: float
    mechanism: str  # standard | alibi
    alibi_max_positions: int | None
    use_flash_attention: bool
    mla_latent_dim: int | None
    mla_rank: int | None


@dataclass(frozen=True)
class FFNSpec:
    intermediate_size: int
    activation: str
    use_gated_activation: bool
    bias: bool
    dropout: float


@dataclass(frozen=True)
class NormSpec:
    type: str  # layernorm | rmsnorm
    eps: float
    elementwise_affine: bool


@dataclass(frozen=True)
class LayerSpec:
    hidden_dim: int
    attention: AttentionSpec
    ffn: FFNSpec
    layer_norm: NormSpec
    norm_placement: str  # pre | post
    residual_dropout: float


@dataclass(frozen=True)
class InitSpec:
    type: str
    gain: float
    std: float
    gpt2_residual_scale: float | None


@dataclass(frozen=True)
class ModelSpec:
    name: str
    embedding: EmbeddingSpec
    num_layers: int
    layer: LayerSpec
    final_layer_norm: NormSpec | None
    tie_word_embeddings: bool
    initialization: InitSpec

    def to_dict(self) -> dict[str, Any]:
        """The normalized spec as plain data (what ``model.yaml`` holds); loads back to an equal spec."""
        return dataclasses.asdict(self)

    def parameter_count(self) -> int:
        """Parameters of the PyTorch model ``build_model`` makes from this spec, without building it."""
        from yamlllm_export.spec.sizes import parameter_count

        return parameter_count(self)
