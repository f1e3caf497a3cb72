"""OLMo-2 (model_type ``olmo2``): LLaMA's attention and SwiGLU with each sub-layer's RMSNorm on its output,
x + N(F(x)) (``norm_placement: output``), and RMSNorm over the whole query and key projections before RoPE
(``qk_norm`` scope ``full``)."""

from __future__ import annotations

from typing import Any

from yamlllm_export.hf.config import HFConfig
from yamlllm_export.hf.families.base import Family, State, renamed, rope_embedding
from yamlllm_export.hf.families.llama import attention_dims, rms_norm, swiglu_ffn

_LAYER = r"model\.layers\.(\d+)\."
RULES = [
    (r"model\.embed_tokens\.weight", "embed.weight"),
    (_LAYER + r"self_attn\.([qkvo])_proj\.(weight|bias)", r"blocks.\1.attn.\2_proj.\3"),
    (_LAYER + r"self_attn\.([qk])_norm\.weight", r"blocks.\1.attn.\2_norm.weight"),
    (_LAYER + r"mlp\.(gate|up|down)_proj\.weight", r"blocks.\1.ffn.\2.weight"),
    (_LAYER + r"post_attention_layernorm\.weight", r"blocks.\1.attn_norms.post.weight"),
    (_LAYER + r"post_feedforward_layernorm\.weight", r"blocks.\1.ffn_norms.post.weight"),
    (r"model\.norm\.weight", "final_norm.weight"),
    (r"lm_head\.weight", "lm_head.weight"),
    (r"model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq", None),  # a buffer old checkpoints saved
]


def olmo2_spec(cfg: HFConfig) -> dict[str, Any]:
    dims = attention_dims(cfg)
    d = cfg.require("hidden_size")
    head_dim = dims.get("head_dim", d // dims["num_heads"])
    norm = rms_norm(cfg)
    return {
        "embedding": rope_embedding(cfg, head_dim),
        "num_layers": cfg.require("num_hidden_layers"),
        "layer": {
            "hidden_dim": d,
            "attention": {**dims, "bias": bool(cfg.get("attention_bias", False)), "qk_norm": {**norm, "scope": "full"}},
            "ffn": swiglu_ffn(cfg, bias=False),
            "layer_norm": norm,
            "norm_placement": "output",
        },
        "final_layer_norm": norm,
        "tie_word_embeddings": bool(cfg.get("tie_word_embeddings", False)),
    }


def olmo2_weights(cfg: HFConfig, state: State) -> State:
    return renamed(cfg, state, RULES)


FAMILY = Family(model_types=("olmo2",), to_spec=olmo2_spec, convert=olmo2_weights)
