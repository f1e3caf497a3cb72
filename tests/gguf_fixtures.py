"""Tiny GGUF files written in tests the way llama.cpp's ``convert_hf_to_gguf.py`` writes them, from the tiny
Hugging Face models of hf_fixtures.py: tensor names from the ``gguf`` package's own HF → GGUF name map, and
llama.cpp's layouts (LLaMA q/k rows permuted, fused QKV as [q; k; v], Gemma norms + 1, GPT-2's Conv1D
transposed). The import must undo all of it to match transformers on the same weights."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import torch

from tests.hf_fixtures import HF_CASES, LLAMA

# GGUF has no sliding-window key for Qwen2: its case attends fully
HF_CASES["qwen2-full-attention"] = ("Qwen2Config", {**LLAMA, "num_key_value_heads": 1})
# hf_fixtures case → GGUF architecture
GGUF_CASES = {
    "llama": "llama",
    "qwen2-full-attention": "qwen2",
    "gemma-mqa-head-dim": "gemma",
    "gemma2": "gemma2",
    "phi": "phi2",
    "phi3": "phi3",
    "phi4-mini-longrope-partial-tied": "phi3",
    "gpt2": "gpt2",
    "bloom-6-heads": "bloom",
    "falcon-multi-query": "falcon",
    "falcon-new-arch-gqa": "falcon",
    "gpt-neox-parallel": "gptneox",
}


def _llama_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _per_head_to_qkv(w: np.ndarray, n_head: int) -> np.ndarray:
    """BLOOM / GPT-NeoX fused rows (nh, 3, hd) → [q; k; v], as convert_hf_to_gguf.py does."""
    g = w.reshape(n_head, 3, -1, *w.shape[1:])
    return np.concatenate([g[:, i].reshape(-1, *w.shape[1:]) for i in range(3)])


def _grouped_to_qkv(w: np.ndarray, n_kv: int, n_head: int) -> np.ndarray:
    """Falcon's groups of [q × nh/nkv, k, v] → [q; k; v]."""
    g = w.reshape(n_kv, n_head // n_kv + 2, -1, *w.shape[1:])
    rest = w.shape[1:]
    return np.concatenate([g[:, :-2].reshape(-1, *rest), g[:, -2].reshape(-1, *rest), g[:, -1].reshape(-1, *rest)])


def write_gguf(hf_model: torch.nn.Module, arch: str, path: Path, *, quant: str | None = None) -> Path:
    """Write ``hf_model`` as llama.cpp would; ``quant``: store the 2-D projection weights in this type."""
    c = hf_model.config
    nh = c.num_attention_heads
    nkv = getattr(c, "num_key_value_heads", None) or getattr(c, "num_kv_heads", None) or nh
    if arch == "falcon" and not c.new_decoder_architecture:
        nkv = 1 if c.multi_query else nh
    d = c.hidden_size
    head_dim = getattr(c, "head_dim", None) or d // nh
    layers = c.num_hidden_layers
    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(layers)
    w.add_context_length(getattr(c, "max_position_embeddings", None) or getattr(c, "n_positions", None) or 64)
    w.add_embedding_length(d)
    w.add_feed_forward_length(
        getattr(c, "intermediate_size", None) or getattr(c, "n_inner", None) or getattr(c, "ffn_hidden_size", None) or 4 * d
    )
    w.add_head_count(nh)
    w.add_head_count_kv(nkv)
    w.add_vocab_size(c.vocab_size)
    if head_dim != d // nh:
        w.add_key_length(head_dim)
        w.add_value_length(head_dim)
    eps = getattr(c, "rms_norm_eps", None)
    if eps is not None and arch in ("llama", "qwen2", "gemma", "gemma2", "phi3"):
        w.add_layer_norm_rms_eps(eps)
    else:
        w.add_layer_norm_eps(getattr(c, "layer_norm_eps", None) or getattr(c, "layer_norm_epsilon", None) or 1e-5)
    rope = getattr(c, "rope_parameters", None) or {}
    if "rope_theta" in rope:
        w.add_rope_freq_base(rope["rope_theta"])
    factor = rope.get("partial_rotary_factor")
    if factor:
        w.add_rope_dimension_count(int(head_dim * factor))
    if rope.get("rope_type") == "longrope":  # convert_hf_to_gguf.py's Phi3MiniModel
        orig, scale = c.original_max_position_embeddings, c.max_position_embeddings / c.original_max_position_embeddings
        w.add_rope_scaling_orig_ctx_len(orig)
        w.add_rope_scaling_attn_factors(math.sqrt(1 + math.log(scale) / math.log(orig)) if scale > 1 else 1.0)
        for kind in ("long", "short"):
            w.add_tensor(f"rope_factors_{kind}.weight", np.array(rope[f"{kind}_factor"], np.float32))
    if arch == "gptneox":
        w.add_parallel_residual(c.use_parallel_residual)
    if arch == "gemma2":
        w.add_sliding_window(c.sliding_window)
        w.add_attn_logit_softcapping(c.attn_logit_softcapping)
        w.add_final_logit_softcapping(c.final_logit_softcapping)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH[{v: k for k, v in gguf.MODEL_ARCH_NAMES.items()}[arch].name], layers)
    state = hf_model.state_dict()
    tied = getattr(c, "tie_word_embeddings", False)
    for hf_name, t in state.items():
        if tied and hf_name == "lm_head.weight":
            continue
        base, _, suffix = hf_name.rpartition(".")
        name = names.get_name(base) or names.get_name(base.removeprefix("transformer."))
        if name is None:  # masks and buffers
            continue
        a = t.detach().float().numpy().copy()
        a = _layout(arch, name, a, nh=nh, nkv=nkv, hf_name=hf_name)
        _add(w, f"{name}.{suffix}", a, quant)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def _layout(arch: str, name: str, a: np.ndarray, *, nh: int, nkv: int, hf_name: str) -> np.ndarray:
    if arch == "gpt2" and a.ndim == 2 and not name.startswith(("token_embd", "position_embd", "output")):
        a = a.T.copy()  # Conv1D (in, out) → (out, in)
    if arch == "llama" and name.endswith("attn_q"):
        a = _llama_permute(a, nh)
    if arch == "llama" and name.endswith("attn_k"):
        a = _llama_permute(a, nkv)
    if arch in ("bloom", "gptneox") and name.endswith("attn_qkv"):
        a = _per_head_to_qkv(a, nh)
    if arch == "falcon" and name.endswith("attn_qkv"):
        a = _grouped_to_qkv(a, nkv, nh)
    if arch in ("gemma", "gemma2") and name.endswith("norm") and hf_name.endswith("weight"):
        a = a + 1
    return a


def _add(w: Any, name: str, a: np.ndarray, quant: str | None) -> None:
    proj = a.ndim == 2 and name.startswith("blk.") and a.shape[1] % 32 == 0
    if quant and proj:
        qtype = gguf.GGMLQuantizationType[quant]
        w.add_tensor(name, gguf.quants.quantize(a, qtype), raw_dtype=qtype)
    else:
        w.add_tensor(name, a.astype(np.float32))
