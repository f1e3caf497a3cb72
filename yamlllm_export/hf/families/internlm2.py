"""InternLM2 / InternLM2.5 (model_type ``internlm2``, trust_remote_code: transformers ships no class for it):
LLaMA's architecture under other names (``tok_embeddings``, ``attention.wqkv`` / ``wo``,
``feed_forward.w1`` / ``w3`` / ``w2``, ``attention_norm``, ``ffn_norm``, ``output``), ``bias`` on wqkv and wo
(the remote config's default is true), and one fused ``wqkv`` laid out per key/value group: for each of the
nkv groups, its nh/nkv query heads, then its key head, then its value head (the remote code's
``rearrange(qkv, "b q (h gs d) -> b q h gs d", gs=2 + nh/nkv)``), split at import.

RoPE scaling: the remote config accepts ``linear`` (positions ÷ factor) and ``dynamic`` NTK, both the maths
of transformers' LLaMA (the base grows with the length past ``max_position_embeddings``, recomputed per
call in a fresh generation); anything else is refused."""

from __future__ import annotations

from typing import Any

from yamlllm_export.hf.config import HFConfig
from yamlllm_export.hf.families.base import Family, State, grouped_qkv, renamed, unfused
from yamlllm_export.hf.families.llama import llama_spec

_LAYER = r"model\.layers\.(\d+)\."
RULES = [
    (r"model\.tok_embeddings\.weight", "embed.weight"),
    (_LAYER + r"attention\.wqkv\.([qkv])\.(weight|bias)", r"blocks.\1.attn.\2_proj.\3"),  # split by unfused
    (_LAYER + r"attention\.wo\.(weight|bias)", r"blocks.\1.attn.o_proj.\2"),
    (_LAYER + r"feed_forward\.w1\.weight", r"blocks.\1.ffn.gate.weight"),
    (_LAYER + r"feed_forward\.w3\.weight", r"blocks.\1.ffn.up.weight"),
    (_LAYER + r"feed_forward\.w2\.weight", r"blocks.\1.ffn.down.weight"),
    (_LAYER + r"attention_norm\.weight", r"blocks.\1.attn_norms.pre.weight"),
    (_LAYER + r"ffn_norm\.weight", r"blocks.\1.ffn_norms.pre.weight"),
    (r"model\.norm\.weight", "final_norm.weight"),
    (r"output\.weight", "lm_head.weight"),
    (r"model\.layers\.\d+\.attention\.rotary_emb\.inv_freq", None),  # a buffer old checkpoints saved
]
SCALING = ("linear", "dynamic")


def internlm2_spec(cfg: HFConfig) -> dict[str, Any]:
    _, scaling = cfg.rope()
    if scaling is not None and scaling.get("rope_type", scaling.get("type")) not in SCALING:
        raise cfg.refuse(
            "rope_parameters" if cfg.get("rope_parameters") else "rope_scaling", f"InternLM2 scales RoPE by {' or '.join(SCALING)}"
        )
    spec = llama_spec(cfg)
    spec["layer"]["attention"]["bias"] = bool(cfg.get("bias", True))
    return spec


def _heads(cfg: HFConfig) -> tuple[int, int, int]:
    nh = cfg.require("num_attention_heads")
    return nh, cfg.get("num_key_value_heads", nh), cfg.require("hidden_size") // nh


def internlm2_weights(cfg: HFConfig, state: State) -> State:
    nh, nkv, head_dim = _heads(cfg)
    split = unfused(
        state,
        _LAYER + r"attention\.wqkv\.(weight|bias)",
        lambda t: grouped_qkv(t, groups=nkv, q_per_group=nh // nkv, head_dim=head_dim),
    )
    return renamed(cfg, split, RULES)


FAMILY = Family(model_types=("internlm2",), to_spec=internlm2_spec, convert=internlm2_weights)
