"""GPT-OSS (model_type ``gpt_oss``): LLaMA's block with bias on all four attention projections, attention
sinks (``attention.sinks``: a learned logit per head in the softmax's denominator), a sliding window on the
layers ``layer_types`` names (every other one by default), YaRN RoPE without truncation of the ramp's bounds
(``rope_scaling.truncate: false``), and a sparse mixture of experts in every layer: a router with a bias, a
softmax over each token's top-k logits (= our renormalised top-k, ``normalize_top_k``), and experts with
biases computing the clamped SwiGLU (``moe.clamped_swiglu``: (clamp(up, ±7) + 1) · g·σ(1.702·g), g = min(gate, 7)).

The experts are stored fused: ``gate_up_proj`` (E, d, 2h) with the gate and up columns interleaved (gate at
even, up at odd indices) and ``down_proj`` (E, h, d), both applied as x @ W, so ours are their transposes.
The MXFP4 checkpoints the hub ships (``quantization_config``) are refused: dequantize them first.
"""

from __future__ import annotations

from typing import Any

from yamlllm_export.hf.config import HFConfig
from yamlllm_export.hf.families.base import Family, State, renamed, window_overrides
from yamlllm_export.hf.families.llama import RULES as LLAMA_RULES
from yamlllm_export.hf.families.llama import llama_spec

_LAYER = r"model\.layers\.(\d+)\."
RULES = [
    (_LAYER + r"self_attn\.sinks", r"blocks.\1.attn.sinks"),
    (_LAYER + r"mlp\.router\.(weight|bias)", r"blocks.\1.ffn.router.\2"),
    (r"blocks\.\d+\.ffn\.experts\.(gate|up|down)\.(weight|bias)", r"\g<0>"),  # unfused by _experts
    *LLAMA_RULES,
]
# GptOssConfig's defaults for what a config.json may leave out (its head_dim is 64, not hidden / heads)
DEFAULTS = {"head_dim": 64, "rope_theta": 150000.0, "attention_bias": True, "sliding_window": 128, "num_experts_per_tok": 4}
DEFAULT_ROPE = {
    "rope_type": "yarn",
    "factor": 32.0,
    "beta_fast": 32.0,
    "beta_slow": 1.0,
    "truncate": False,
    "original_max_position_embeddings": 4096,
}
# transformers' GptOssExperts hard-codes the clamp (and alpha 1.702): a config.json's other swiglu_limit is not what it runs
LIMIT = 7.0
KINDS = ("sliding_attention", "full_attention")


def _config(cfg: HFConfig) -> HFConfig:
    """``cfg`` with GptOssConfig's defaults filled in, and the options we cannot map refused."""
    quant = cfg.get("quantization_config")
    if quant is not None and not (isinstance(quant, dict) and quant.get("dequantize")):
        raise cfg.refuse("quantization_config", "MXFP4 experts; load with Mxfp4Config(dequantize=True) and save_pretrained the float model")
    if cfg.get("swiglu_limit", LIMIT) != LIMIT:
        raise cfg.refuse("swiglu_limit", f"transformers' GptOssExperts clamps at {LIMIT} whatever the config says")
    raw = {**DEFAULTS, **{k: v for k, v in cfg.raw.items() if v is not None}}
    if "rope_parameters" not in raw and "rope_scaling" not in raw:
        raw["rope_parameters"] = DEFAULT_ROPE
    raw.pop("hidden_act", None)  # the experts' activation is fixed (transformers ignores hidden_act): not a SwiGLU check
    return HFConfig(cfg.folder, raw, cfg.source)


def _layer_types(cfg: HFConfig, num_layers: int) -> list[str]:
    kinds = cfg.get("layer_types")
    if kinds is None:  # GptOssConfig's default: even layers slide
        return ["sliding_attention" if (i + 1) % 2 else "full_attention" for i in range(num_layers)]
    if len(kinds) < num_layers or any(k not in KINDS for k in kinds[:num_layers]):
        raise cfg.refuse("layer_types", f"one of {', '.join(KINDS)} per layer is mapped")
    return list(kinds)


def gpt_oss_spec(cfg: HFConfig) -> dict[str, Any]:
    cfg = _config(cfg)
    spec = llama_spec(cfg)
    layers, layer = spec["num_layers"], spec["layer"]
    kinds = _layer_types(cfg, layers)
    window, overrides = window_overrides(cfg, cfg.get("sliding_window"), layers, kinds)
    layer["attention"].update(sinks=True, **({"window_size": window} if window else {}))
    if overrides:
        spec["layer_overrides"] = overrides
    layer["ffn"] = {
        "intermediate_size": cfg.require("intermediate_size"),
        "activation": "swiglu",
        "use_gated_activation": True,
        "bias": True,  # the experts' (no layer keeps a dense MLP)
        "moe": {
            "num_experts": cfg.get("num_local_experts") or cfg.require("num_experts"),
            "top_k": cfg.get("num_experts_per_tok"),
            "router_bias": True,
            "clamped_swiglu": {"limit": LIMIT},  # our alpha and beta defaults are GPT-OSS's (1.702, 1)
        },
    }
    return spec


def _experts(state: State) -> State:
    """The fused expert tensors → our stacked gate / up / down weights (E, out, in) and biases (E, out)."""
    out: State = {}
    for name, t in state.items():
        stem, _, leaf = name.rpartition(".experts.")
        if not stem:
            out[name] = t
            continue
        ours = "blocks." + stem.removeprefix("model.layers.").removesuffix(".mlp") + ".ffn.experts"
        if leaf == "gate_up_proj":  # (E, d, 2h), x @ W: gate columns at even indices, up at odd
            out[f"{ours}.gate.weight"], out[f"{ours}.up.weight"] = (t[..., k::2].transpose(1, 2).contiguous() for k in (0, 1))
        elif leaf == "gate_up_proj_bias":  # (E, 2h)
            out[f"{ours}.gate.bias"], out[f"{ours}.up.bias"] = (t[:, k::2].contiguous() for k in (0, 1))
        elif leaf == "down_proj":  # (E, h, d)
            out[f"{ours}.down.weight"] = t.transpose(1, 2).contiguous()
        elif leaf == "down_proj_bias":
            out[f"{ours}.down.bias"] = t
        else:  # e.g. MXFP4's *_blocks / *_scales: left for renamed() to name as unknown
            out[name] = t
    return out


def gpt_oss_weights(cfg: HFConfig, state: State) -> State:
    return renamed(cfg, _experts(state), RULES)


FAMILY = Family(model_types=("gpt_oss",), to_spec=gpt_oss_spec, convert=gpt_oss_weights)
