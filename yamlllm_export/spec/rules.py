"""Semantic rules the JSON Schema cannot say. Each rule yields ``(key_path, message)``; all are collected."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

GATED = {"swiglu", "geglu", "reglu"}

Problem = tuple[str, str]


def _attention(d: dict[str, Any]) -> Iterator[Problem]:
    layer, att = d["layer"], d["layer"]["attention"]
    heads, kv = att["num_heads"], att["num_kv_heads"]
    if kv is not None:
        if kv > heads:
            yield "layer.attention.num_kv_heads", f"{kv} exceeds num_heads {heads}"
        elif heads % kv:
            yield "layer.attention.num_kv_heads", f"{kv} does not divide num_heads {heads}"
    if att["head_dim"] is None and layer["hidden_dim"] % heads:
        yield (
            "layer.hidden_dim",
            f"{layer['hidden_dim']} is not divisible by num_heads {heads}; set layer.attention.head_dim",
        )
    if att["mechanism"] == "mla":
        yield (
            "layer.attention.mechanism",
            "'mla' (multi-latent attention) is not supported by this version of yamlllm-export",
        )
    for key in ("mla_latent_dim", "mla_rank"):
        if att[key] is not None and att["mechanism"] != "mla":
            yield f"layer.attention.{key}", f"is set but attention.mechanism is '{att['mechanism']}', not 'mla'"


def _positions(d: dict[str, Any]) -> Iterator[Problem]:
    emb = d["embedding"]
    pe, mech = emb["positional_encoding"], d["layer"]["attention"]["mechanism"]
    if pe["type"] == "alibi" and mech != "alibi":
        yield (
            "layer.attention.mechanism",
            f"'{mech}' with positional_encoding.type 'alibi'; ALiBi requires attention.mechanism: alibi",
        )
    if mech == "alibi" and pe["type"] != "alibi":
        yield (
            "embedding.positional_encoding.type",
            f"'{pe['type']}' with attention.mechanism 'alibi'; ALiBi requires positional_encoding.type: alibi",
        )
    pe_max = pe.get("max_position_embeddings")
    if pe_max is not None and pe_max != emb["max_position_embeddings"]:
        yield (
            "embedding.positional_encoding.max_position_embeddings",
            f"{pe_max} disagrees with embedding.max_position_embeddings {emb['max_position_embeddings']}",
        )
    if pe["type"] == "rope":
        head_dim = d["layer"]["attention"]["head_dim"] or d["layer"]["hidden_dim"] // d["layer"]["attention"]["num_heads"]
        if head_dim % 2:
            yield "layer.attention.head_dim", f"{head_dim} is odd; RoPE rotates pairs of dimensions"
    if emb["padding_idx"] is not None and emb["padding_idx"] >= emb["vocab_size"]:
        yield "embedding.padding_idx", f"{emb['padding_idx']} is outside vocab_size {emb['vocab_size']}"


def _ffn_and_model(d: dict[str, Any]) -> Iterator[Problem]:
    ffn = d["layer"]["ffn"]
    act, gated = ffn["activation"], ffn["use_gated_activation"]
    if act in GATED and not gated:
        yield "layer.ffn.use_gated_activation", f"'{act}' is a gated activation and requires use_gated_activation: true"
    if gated and act not in GATED:
        yield (
            "layer.ffn.use_gated_activation",
            f"true with non-gated activation '{act}'; use one of {sorted(GATED)}",
        )
    emb_dim, hidden = d["embedding"]["embedding_dim"], d["layer"]["hidden_dim"]
    if emb_dim != hidden:
        yield "embedding.embedding_dim", f"{emb_dim} must equal layer.hidden_dim {hidden}"


RULES = (_attention, _positions, _ffn_and_model)


def problems(filled: dict[str, Any]) -> list[Problem]:
    """All semantic problems of a schema-valid, default-filled spec dict, in rule order."""
    return [p for rule in RULES for p in rule(filled)]
