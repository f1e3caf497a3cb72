"""GGUF architectures we map: each one's Hugging Face ``model_type`` and the config.json it stands for (so
the HF family modules turn it into our spec), and its tensor names → our weight names.

GGUF metadata keys are llama.cpp's (``<arch>.block_count``, ``<arch>.attention.head_count``, ...); the
tensor layouts are what llama.cpp's ``convert_hf_to_gguf.py`` writes: LLaMA's q/k rows permuted for its
RoPE kernel, fused QKV as [q; k; v] (BLOOM, GPT-NeoX and Falcon are re-laid out so), Gemma's norm weights
stored plus one, GPT-2's Conv1D weights transposed to (out, in)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from yamlllm_export.errors import BuildError
from yamlllm_export.gguf.reader import GGUFFile

L = r"blk\.(\d+)\."
# (regex over the GGUF name, our name as a re.sub template, row selection: see tensors.py; "config": no weight,
# the config reads it); {p} is q/k/v
Rule = tuple[str, str, str]

COMMON: list[Rule] = [
    (r"token_embd\.weight", "embed.weight", "all"),
    (r"output_norm\.(weight|bias)", r"final_norm.\1", "all"),
    (r"output\.(weight|bias)", r"lm_head.\1", "all"),
    (L + r"attn_([qkv])\.(weight|bias)", r"blocks.\1.attn.\2_proj.\3", "all"),
    (L + r"attn_qkv\.(weight|bias)", r"blocks.\1.attn.{p}_proj.\2", "qkv"),
    (L + r"attn_output\.(weight|bias)", r"blocks.\1.attn.o_proj.\2", "all"),
    (L + r"ffn_(gate|up|down)\.(weight|bias)", r"blocks.\1.ffn.\2.\3", "all"),
]
SEQUENTIAL_NORMS: list[Rule] = [
    (L + r"attn_norm\.(weight|bias)", r"blocks.\1.attn_norms.pre.\2", "all"),
    (L + r"ffn_norm\.(weight|bias)", r"blocks.\1.ffn_norms.pre.\2", "all"),
]
LLAMA_QK: list[Rule] = [(L + r"attn_([qk])\.(weight|bias)", r"blocks.\1.attn.\2_proj.\3", "unpermute")]  # before COMMON's q/k rule


@dataclass(frozen=True)
class Arch:
    """``config``: the GGUF file → the config.json (a dict) of ``model_type``; ``rules``: first match wins."""

    model_type: str
    config: Callable[[GGUFFile], dict[str, Any]]
    rules: Callable[[GGUFFile], list[Rule]]
    norm_plus_one: bool = False  # Gemma: llama.cpp stores norm weights + 1
    ffn_up_rows: int = 1  # feed_forward_length multiples in ffn_up (Phi-3 stores [gate; up] there)


def _base(f: GGUFFile) -> dict[str, Any]:
    """The keys most architectures share, under transformers' LLaMA-style names."""
    nh = int(f.require(".attention.head_count"))
    d = int(f.require(".embedding_length"))
    cfg: dict[str, Any] = {
        "vocab_size": vocab_size(f),
        "hidden_size": d,
        "num_hidden_layers": int(f.require(".block_count")),
        "num_attention_heads": nh,
        "num_key_value_heads": int(f.get(".attention.head_count_kv", nh)),
        "max_position_embeddings": int(f.require(".context_length")),
        "tie_word_embeddings": "output.weight" not in f.tensors,
    }
    if f.get(".feed_forward_length") is not None:
        cfg["intermediate_size"] = int(f.get(".feed_forward_length"))
    if f.get(".attention.key_length") is not None and int(f.get(".attention.key_length")) != d // nh:
        cfg["head_dim"] = int(f.get(".attention.key_length"))
    if f.get(".rope.freq_base") is not None:
        cfg["rope_theta"] = float(f.get(".rope.freq_base"))
    scaling = _rope_scaling(f)
    if scaling:
        cfg["rope_scaling"] = scaling
    return cfg


def vocab_size(f: GGUFFile) -> int:
    if f.get(".vocab_size") is not None:
        return int(f.get(".vocab_size"))
    return f.tensor("token_embd.weight").rows


def _rope_scaling(f: GGUFFile) -> dict[str, Any] | None:
    kind = f.get(".rope.scaling.type")
    if "rope_freqs.weight" in f.tensors:  # Llama 3.1+ bakes its frequency factors into a tensor
        raise BuildError(
            f"{f.path}: tensor 'rope_freqs.weight' (RoPE frequency factors) is not supported; it stands for a rope scaling we cannot read back"
        )
    if kind in (None, "none"):
        return None
    if kind not in ("linear", "yarn"):
        raise BuildError(f"{f.path}: metadata '{f.arch}.rope.scaling.type' = {kind!r} is not supported (supported: linear, yarn)")
    out: dict[str, Any] = {"rope_type": kind, "factor": float(f.require(".rope.scaling.factor"))}
    if kind == "yarn":
        out["original_max_position_embeddings"] = int(f.require(".rope.scaling.original_context_length"))
    return out


def _rms(f: GGUFFile) -> dict[str, Any]:
    return {"rms_norm_eps": float(f.require(".attention.layer_norm_rms_epsilon"))}


def _has(f: GGUFFile, suffix: str) -> bool:
    return any(name.endswith(suffix) for name in f.tensors)


def _llama(f: GGUFFile) -> dict[str, Any]:
    return {**_base(f), **_rms(f), "attention_bias": _has(f, "attn_q.bias"), "mlp_bias": _has(f, "ffn_up.bias")}


def _qwen2(f: GGUFFile) -> dict[str, Any]:
    return {**_base(f), **_rms(f)}


def _gemma(f: GGUFFile) -> dict[str, Any]:
    cfg = {**_base(f), **_rms(f), "attention_bias": _has(f, "attn_q.bias"), "hidden_act": "gelu_pytorch_tanh"}
    cfg.setdefault("head_dim", cfg["hidden_size"] // cfg["num_attention_heads"])
    return cfg


def _gemma2(f: GGUFFile) -> dict[str, Any]:
    cfg = _gemma(f)
    head_dim = cfg["head_dim"]
    cfg.update(query_pre_attn_scalar=head_dim, sliding_window=f.get(".attention.sliding_window"))
    cfg["attn_logit_softcapping"] = f.get(".attn_logit_softcapping")
    cfg["final_logit_softcapping"] = f.get(".final_logit_softcapping")
    return cfg


def _phi3(f: GGUFFile) -> dict[str, Any]:
    """Phi-3 is LLaMA's architecture with fused projections (and a sliding window when the file has one).
    LongRoPE (Phi-3 128k, Phi-4-mini) maps to transformers' phi3: the factor tensors and llama.cpp's attention
    factor become its rope_scaling, and the switch follows transformers (by the current length; llama.cpp
    switches by the configured context size)."""
    window = f.get(".attention.sliding_window")
    if "rope_factors_long.weight" not in f.tensors:
        if f.get(".rope.scaling.attn_factor") is not None:
            raise BuildError(
                f"{f.path}: metadata '{f.arch}.rope.scaling.attn_factor' without tensor 'rope_factors_long.weight' is not supported"
            )
        return {**_llama(f), **({"model_type": "mistral", "sliding_window": int(window)} if window else {})}
    cfg = _llama(f)
    factors = {f"{kind}_factor": f.tensor(f"rope_factors_{kind}.weight").data.astype(float).tolist() for kind in ("short", "long")}
    return {
        **cfg,
        "model_type": "phi3",
        "sliding_window": int(window) if window else None,
        "partial_rotary_factor": _partial_rotary(f, cfg),
        "original_max_position_embeddings": int(f.require(".rope.scaling.original_context_length")),
        "rope_scaling": {"rope_type": "longrope", **factors, "attention_factor": float(f.require(".rope.scaling.attn_factor"))},
    }


def _partial_rotary(f: GGUFFile, cfg: dict[str, Any]) -> float:
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    return int(f.get(".rope.dimension_count", head_dim)) / head_dim


def _layer_eps(f: GGUFFile) -> float:
    return float(f.require(".attention.layer_norm_epsilon"))


def _phi2(f: GGUFFile) -> dict[str, Any]:
    cfg = _base(f)
    # llama.cpp runs phi2 with the tanh GELU, as transformers' gelu_new
    return {**cfg, "partial_rotary_factor": _partial_rotary(f, cfg), "layer_norm_eps": _layer_eps(f), "hidden_act": "gelu_new"}


def _gpt2(f: GGUFFile) -> dict[str, Any]:
    b = _base(f)
    return {
        "vocab_size": b["vocab_size"],
        "n_embd": b["hidden_size"],
        "n_layer": b["num_hidden_layers"],
        "n_head": b["num_attention_heads"],
        "n_positions": b["max_position_embeddings"],
        "n_inner": b.get("intermediate_size"),
        "layer_norm_epsilon": _layer_eps(f),
        "activation_function": "gelu_new",
        "tie_word_embeddings": b["tie_word_embeddings"],
    }


def _bloom(f: GGUFFile) -> dict[str, Any]:
    b = _base(f)
    return {
        "vocab_size": b["vocab_size"],
        "hidden_size": b["hidden_size"],
        "n_layer": b["num_hidden_layers"],
        "n_head": b["num_attention_heads"],
        "seq_length": b["max_position_embeddings"],
        "layer_norm_epsilon": _layer_eps(f),
        "tie_word_embeddings": b["tie_word_embeddings"],
    }


def _falcon(f: GGUFFile) -> dict[str, Any]:
    """llama.cpp reads the layout from the tensors: a second attention norm is the new architecture's
    ln_attn (its ``attn_norm`` is then ln_mlp); otherwise one norm, grouped or multi-query."""
    b = _base(f)
    nkv = b["num_key_value_heads"]
    if _has(f, "attn_norm_2.weight"):
        layout = {"new_decoder_architecture": True, "num_kv_heads": nkv}
    elif nkv == 1:
        layout = {"multi_query": True, "parallel_attn": True}
    else:
        layout = {"new_decoder_architecture": True, "num_kv_heads": nkv, "num_ln_in_parallel_attn": 1}
    return {
        **{k: b[k] for k in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "max_position_embeddings")},
        **({"rope_theta": b["rope_theta"]} if "rope_theta" in b else {}),
        **layout,
        "ffn_hidden_size": b.get("intermediate_size", 4 * b["hidden_size"]),
        "layer_norm_epsilon": _layer_eps(f),
        "bias": _has(f, "attn_qkv.bias"),
        "tie_word_embeddings": b["tie_word_embeddings"],
    }


def _gptneox(f: GGUFFile) -> dict[str, Any]:
    b = _base(f)
    return {
        **{k: b[k] for k in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "max_position_embeddings")},
        "intermediate_size": b.get("intermediate_size", 4 * b["hidden_size"]),
        "rotary_pct": _partial_rotary(f, b),
        "rotary_emb_base": b.get("rope_theta", 10000.0),
        "use_parallel_residual": bool(f.get(".use_parallel_residual", True)),
        "layer_norm_eps": _layer_eps(f),
        "attention_bias": _has(f, "attn_qkv.bias"),
        "tie_word_embeddings": b["tie_word_embeddings"],
    }


def _falcon_rules(f: GGUFFile) -> list[Rule]:
    two = _has(f, "attn_norm_2.weight")
    return [
        (L + r"attn_norm_2\.(weight|bias)", r"blocks.\1.norm.\2", "all"),
        (L + r"attn_norm\.(weight|bias)", r"blocks.\1.ffn_norm.\2" if two else r"blocks.\1.norm.\2", "all"),
        *COMMON,
    ]


def _neox_rules(f: GGUFFile) -> list[Rule]:
    if not bool(f.get(".use_parallel_residual", True)):
        return [*SEQUENTIAL_NORMS, *COMMON]
    return [
        (L + r"attn_norm\.(weight|bias)", r"blocks.\1.norm.\2", "all"),
        (L + r"ffn_norm\.(weight|bias)", r"blocks.\1.ffn_norm.\2", "all"),
        *COMMON,
    ]


ARCHS: dict[str, Arch] = {
    "llama": Arch("llama", _llama, lambda f: [*LLAMA_QK, *SEQUENTIAL_NORMS, *COMMON]),
    "qwen2": Arch("qwen2", _qwen2, lambda f: [*SEQUENTIAL_NORMS, *COMMON]),
    "gemma": Arch("gemma", _gemma, lambda f: [*SEQUENTIAL_NORMS, *COMMON], norm_plus_one=True),
    "gemma2": Arch(
        "gemma2",
        _gemma2,
        lambda f: [
            (L + r"post_attention_norm\.weight", r"blocks.\1.attn_norms.post.weight", "all"),
            (L + r"post_ffw_norm\.weight", r"blocks.\1.ffn_norms.post.weight", "all"),
            *SEQUENTIAL_NORMS,
            *COMMON,
        ],
        norm_plus_one=True,
    ),
    "phi3": Arch(
        "llama",
        _phi3,
        lambda f: [
            (r"rope_factors_(long|short)\.weight", "", "config"),  # LongRoPE: read into the config by _phi3
            (L + r"ffn_up\.(weight|bias)", r"blocks.\1.ffn.{p}.\2", "gate_up"),
            *SEQUENTIAL_NORMS,
            *COMMON,
        ],
        ffn_up_rows=2,
    ),
    "phi2": Arch("phi", _phi2, lambda f: [(L + r"attn_norm\.(weight|bias)", r"blocks.\1.norm.\2", "all"), *COMMON]),
    "gpt2": Arch("gpt2", _gpt2, lambda f: [(r"position_embd\.weight", "positions.embedding.weight", "all"), *SEQUENTIAL_NORMS, *COMMON]),
    "bloom": Arch("bloom", _bloom, lambda f: [(r"token_embd_norm\.(weight|bias)", r"embed_norm.\1", "all"), *SEQUENTIAL_NORMS, *COMMON]),
    "falcon": Arch("falcon", _falcon, _falcon_rules),
    "gptneox": Arch("gpt_neox", _gptneox, _neox_rules),
}


def arch_for(f: GGUFFile) -> Arch:
    arch = ARCHS.get(f.arch)
    if arch is None:
        raise BuildError(f"{f.path}: metadata 'general.architecture' = {f.arch!r} is not supported (supported: {', '.join(sorted(ARCHS))})")
    return arch
