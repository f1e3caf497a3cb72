"""``import-gguf``: a GGUF file's metadata → the YAML spec, through the same family modules as ``import-hf``
(the metadata is read as the config.json it stands for), checked against the tensor shapes and loaded
back through our schema before anything is written."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from yamlllm_export import __version__
from yamlllm_export.errors import BuildError
from yamlllm_export.gguf.archs import arch_for
from yamlllm_export.gguf.reader import GGUFFile, read_gguf
from yamlllm_export.gguf.tensors import Heads, check_types
from yamlllm_export.hf.config import HFConfig
from yamlllm_export.spec import load_spec

TOKEN_KEYS = {
    "bos_token_id": "tokenizer.ggml.bos_token_id",
    "eos_token_id": "tokenizer.ggml.eos_token_id",
    "pad_token_id": "tokenizer.ggml.padding_token_id",
}


def hf_config(f: GGUFFile) -> HFConfig:
    """The config.json the file's metadata stands for (errors name the GGUF file)."""
    arch = arch_for(f)
    raw = {"model_type": arch.model_type, **{k: v for k, v in arch.config(f).items() if v is not None}}  # config may name another
    return HFConfig(f.path.parent, raw, source=f"{f.path} (metadata of architecture {f.arch!r})")


def import_gguf(path: str | Path, out: str | Path = "THIS.yaml") -> tuple[dict[str, Any], str]:
    """(the spec mapping, its header comment) for the GGUF file at ``path``."""
    from yamlllm_export.hf.families import family_for

    f = read_gguf(path)
    cfg = hf_config(f)
    check_shapes(f)
    check_types(f)
    spec = {"name": _name(f), **family_for(cfg).to_spec(cfg)}
    vocab = spec["embedding"]["vocab_size"]
    tokens = {k: int(f.meta[key]) for k, key in TOKEN_KEYS.items() if key in f.meta and 0 <= int(f.meta[key]) < vocab}
    if tokens:
        spec["tokens"] = tokens
    load_spec(spec)  # our schema and rules must accept what we write
    return spec, _header(f, out)


def check_shapes(f: GGUFFile) -> None:
    """The metadata against the tensors it describes: a wrong count would build a model the weights do not fit."""
    embed = f.tensor("token_embd.weight")
    d = int(f.require(".embedding_length"))
    _expect(f, embed.cols, d, "token_embd.weight", "columns", ".embedding_length")
    if f.get(".vocab_size") is not None:
        _expect(f, embed.rows, int(f.get(".vocab_size")), "token_embd.weight", "rows", ".vocab_size")
    layers = {int(m[1]) for name in f.tensors if (m := re.match(r"blk\.(\d+)\.", name))}
    blocks = int(f.require(".block_count"))
    if layers != set(range(blocks)):
        raise BuildError(f"{f.path}: metadata '{f.arch}.block_count' = {blocks} but the file holds blocks {_span(layers)}")
    heads = Heads.of(f)
    if "blk.0.attn_q.weight" in f.tensors:
        _expect(
            f,
            f.tensors["blk.0.attn_q.weight"].rows,
            heads.num_heads * heads.head_dim,
            "blk.0.attn_q.weight",
            "rows",
            ".attention.head_count",
        )
    if "blk.0.attn_k.weight" in f.tensors:
        rows = f.tensors["blk.0.attn_k.weight"].rows
        _expect(f, rows, heads.num_kv_heads * heads.head_dim, "blk.0.attn_k.weight", "rows", ".attention.head_count_kv")
    if "blk.0.ffn_up.weight" in f.tensors and f.get(".feed_forward_length") is not None:
        _expect(
            f,
            f.tensors["blk.0.ffn_up.weight"].rows,
            int(f.get(".feed_forward_length")) * arch_for(f).ffn_up_rows,
            "blk.0.ffn_up.weight",
            "rows",
            ".feed_forward_length",
        )


def _expect(f: GGUFFile, got: int, want: int, tensor: str, what: str, key: str) -> None:
    if got != want:
        raise BuildError(f"{f.path}: metadata '{f.arch}{key}' says {want} {what} for tensor '{tensor}', which has {got}")


def _span(layers: set[int]) -> str:
    return f"{min(layers)}..{max(layers)} ({len(layers)})" if layers else "none"


def _name(f: GGUFFile) -> str:
    source = str(f.meta.get("general.name") or f.path.stem)
    return re.sub(r"[^A-Za-z0-9._-]+", "-", source).strip("-") or f.arch


def _header(f: GGUFFile, out: str | Path) -> str:
    lines = [
        f"Imported from the GGUF file {f.path.resolve()}",
        f"  architecture {f.arch}, {len(f.tensors)} tensors",
        f"by yamlllm-export {__version__} import-gguf. Keys left out take yamlllm-export's defaults",
        "(yamlllm-export schema). Build it with these weights:",
        f"  yamlllm-export build {out} --weights {f.path.resolve()} -o out/",
    ]
    return "".join(f"# {line}\n" for line in lines)
