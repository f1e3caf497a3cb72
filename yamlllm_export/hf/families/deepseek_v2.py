"""DeepSeek-V2 (and V2-Lite): multi-head latent attention, DeepSeekMoE (softmax router, greedy or
group-limited top-k, shared experts, the first ``first_k_dense_replace`` layers dense), YaRN with DeepSeek's mscale.

Mapped at import time rather than by spec features:
- DeepSeek's RoPE rotates interleaved pairs (x[2i], x[2i+1]) (complex multiplication); ours rotates halves
  (x[i], x[i + dr/2]). The rows of the rope part of the query and of the shared rope key are permuted
  (even features first, then odd), which turns one into the other: both q and k get the same permutation,
  so q·k is unchanged and each pair meets its own frequency.
- ``kv_b_proj`` holds per head [W_uk; W_uv]; it is split into our k_up and v_up.
- ``routed_scaling_factor`` multiplies the routed experts' weights; it is folded into their down projections.
"""

from __future__ import annotations

from typing import Any

import torch

from yamlllm_export.hf.config import HFConfig
from yamlllm_export.hf.families import llama
from yamlllm_export.hf.families.base import Family, State, drop_empty, renamed, rope_positions, stacked_experts

_LAYER = r"model\.layers\.(\d+)\."
_ATTN = _LAYER + r"self_attn\."
RULES = [
    (_ATTN + r"q_a_proj\.(weight|bias)", r"blocks.\1.attn.q_proj.down.\2"),
    (_ATTN + r"q_a_layernorm\.weight", r"blocks.\1.attn.q_proj.norm.weight"),
    (_ATTN + r"q_b_proj\.weight", r"blocks.\1.attn.q_proj.up.weight"),
    (_ATTN + r"kv_a_proj_with_mqa\.(weight|bias)", r"blocks.\1.attn.kv_down.\2"),
    (_ATTN + r"kv_a_layernorm\.weight", r"blocks.\1.attn.kv_norm.weight"),
    (_ATTN + r"kv_b_proj\.(k|v)_up", r"blocks.\1.attn.\2_up.weight"),  # split by _split_kv_b
    (_LAYER + r"mlp\.gate\.weight", r"blocks.\1.ffn.router.weight"),
    (_LAYER + r"mlp\.shared_experts\.(gate|up|down)_proj\.weight", r"blocks.\1.ffn.shared.\2.weight"),
    (r"blocks\.\d+\.ffn\.experts\.(gate|up|down)\.weight", r"\g<0>"),  # stacked by stacked_experts
    *llama.RULES,
]
ROUTING = ("greedy", "group_limited_greedy")
# the 5.17 config's own defaults, where config.json may leave a key out
DEFAULTS = {"kv_lora_rank": 512, "q_lora_rank": 1536, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128}


def _dims(cfg: HFConfig) -> dict[str, Any]:
    return {k: cfg.raw.get(k, v) for k, v in DEFAULTS.items()}


def _refusals(cfg: HFConfig) -> None:
    nh = cfg.require("num_attention_heads")
    checks = [
        ("num_key_value_heads", cfg.get("num_key_value_heads", nh) == nh, "MLA decompresses keys and values for every head"),
        ("topk_method", cfg.get("topk_method", "greedy") in ROUTING, f"supported: {', '.join(ROUTING)}"),
        ("scoring_func", cfg.get("scoring_func", "softmax") == "softmax", "only a softmax router is supported"),
        ("norm_topk_prob", not cfg.get("norm_topk_prob", False), "transformers' DeepSeek-V2 never renormalises the top-k weights"),
        ("moe_layer_freq", cfg.get("moe_layer_freq", 1) == 1, "transformers' DeepSeek-V2 makes every layer after the dense ones MoE"),
        ("mlp_bias", not cfg.get("mlp_bias", False), "DeepSeek's experts have no bias"),
        ("rms_norm_eps", cfg.get("rms_norm_eps", 1e-6) == 1e-6, "the latent norms use 1e-6 and ours take the layer's eps"),
        ("qk_rope_head_dim", _dims(cfg)["qk_rope_head_dim"] > 0, "MLA here needs a decoupled RoPE part"),
        (
            "attention_bias",
            not (cfg.get("attention_bias", False) and _dims(cfg)["q_lora_rank"] is None),
            "a full-rank q_proj has no bias in DeepSeek-V2 but would in our mapping of attention_bias",
        ),
    ]
    for key, ok, why in checks:
        if not ok:
            raise cfg.refuse(key, why)


def _moe(cfg: HFConfig, layers: int) -> dict[str, Any] | None:
    dense = cfg.get("first_k_dense_replace", 0)
    if dense >= layers:
        return None
    size, shared = cfg.get("moe_intermediate_size", 1407), cfg.get("n_shared_experts", 2)  # HF defaults
    return drop_empty(
        {
            "num_experts": cfg.require("n_routed_experts"),
            "top_k": cfg.require("num_experts_per_tok"),
            "intermediate_size": size,
            "shared_expert_intermediate_size": shared * size or None,
            "normalize_top_k": False,
            "first_dense_layers": dense or None,
            **_groups(cfg),
        }
    )


def _groups(cfg: HFConfig) -> dict[str, Any]:
    """group_limited_greedy: top-k among the experts of the topk_group best of n_group groups."""
    if cfg.get("topk_method", "greedy") != "group_limited_greedy":
        return {}
    return {"num_groups": cfg.require("n_group"), "top_groups": cfg.require("topk_group")}


def deepseek_v2_spec(cfg: HFConfig) -> dict[str, Any]:
    _refusals(cfg)
    dims = _dims(cfg)
    d, layers, nh = cfg.require("hidden_size"), cfg.require("num_hidden_layers"), cfg.require("num_attention_heads")
    dn, dr, dv = dims["qk_nope_head_dim"], dims["qk_rope_head_dim"], dims["v_head_dim"]
    attention = {
        "num_heads": nh,
        "head_dim": dn if dn != d // nh else None,
        "bias": bool(cfg.get("attention_bias", False)),
        "mechanism": "mla",
        "mla_latent_dim": dims["kv_lora_rank"],
        "mla_rank": dims["q_lora_rank"],
        "mla_rope_head_dim": dr if dr != dn // 2 else None,
        "mla_v_head_dim": dv if dv != dn else None,
    }
    ffn = {**llama.swiglu_ffn(cfg, bias=False), "moe": _moe(cfg, layers)}
    return {
        "embedding": {
            "vocab_size": cfg.require("vocab_size"),
            "max_position_embeddings": cfg.require("max_position_embeddings"),
            "embedding_dim": d,
            "positional_encoding": rope_positions(cfg, head_dim=dr),
        },
        "num_layers": layers,
        "layer": {"hidden_dim": d, "attention": drop_empty(attention), "ffn": drop_empty(ffn), "layer_norm": llama.rms_norm(cfg)},
        "final_layer_norm": llama.rms_norm(cfg),
        "tie_word_embeddings": bool(cfg.get("tie_word_embeddings", False)),
    }


def _halves(t: torch.Tensor, block: int, start: int, width: int) -> torch.Tensor:
    """``t`` with the rows [start, start + width) of every ``block`` rows reordered even-first: the interleaved
    RoPE pairs (2i, 2i+1) become our half-rotation pairs (i, i + width/2)."""
    order = torch.cat([torch.arange(0, width, 2), torch.arange(1, width, 2)]) + start
    index = torch.arange(block).index_copy(0, torch.arange(start, start + width), order)
    return t.reshape(-1, block, *t.shape[1:])[:, index].reshape(t.shape)


def _attention_tensors(cfg: HFConfig, name: str, t: torch.Tensor) -> State:
    dims = _dims(cfg)
    dn, dr, dv, L = dims["qk_nope_head_dim"], dims["qk_rope_head_dim"], dims["v_head_dim"], dims["kv_lora_rank"]
    if name.endswith(("self_attn.q_proj.weight", "self_attn.q_b_proj.weight")):
        return {name: _halves(t, dn + dr, dn, dr)}
    if ".self_attn.kv_a_proj_with_mqa." in name:
        return {name: _halves(t, L + dr, L, dr)}
    if name.endswith("self_attn.kv_b_proj.weight"):  # (nh·(dn + dv), L): per head [W_uk; W_uv]
        k_up, v_up = t.reshape(-1, dn + dv, t.shape[-1]).split([dn, dv], dim=1)
        prefix = name.removesuffix("weight")
        return {prefix + "k_up": k_up.reshape(-1, t.shape[-1]), prefix + "v_up": v_up.reshape(-1, t.shape[-1])}
    return {name: t}


def deepseek_v2_weights(cfg: HFConfig, state: State) -> State:
    out: State = {}
    for name, t in state.items():
        out.update(_attention_tensors(cfg, name, t))
    stacked = stacked_experts(cfg, out, _LAYER + r"mlp\.", {"gate_proj": "gate", "up_proj": "up", "down_proj": "down"})
    scale = float(cfg.get("routed_scaling_factor", 1.0))
    if scale != 1.0:  # w·down(h)·s = w·(s·down)(h)
        for name in [n for n in stacked if n.endswith("ffn.experts.down.weight")]:
            stacked[name] = (stacked[name].float() * scale).to(stacked[name].dtype)
    return renamed(cfg, stacked, RULES)


FAMILY = Family(model_types=("deepseek_v2",), to_spec=deepseek_v2_spec, convert=deepseek_v2_weights)
