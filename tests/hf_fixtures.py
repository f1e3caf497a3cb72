"""Tiny random Hugging Face models built in code (no downloads), and the parity check of an export of
one against ``transformers`` itself: a left-padded batch prefill, then decode steps with teacher forcing.

Every case is a config class name from ``transformers`` and its keyword arguments. After HF's own
initialisation every parameter gets noise, so norm weights are not all one and biases not all zero:
a norm or bias mapped to the wrong place then shows in the logits.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from yamlllm_export.runtime.io_contract import IOContract
from yamlllm_export.runtime.session import cpu_session
from yamlllm_export.runtime.stepper import GraphStepper
from yamlllm_export.spec import load_spec

VOCAB = 96
SMALL = {"vocab_size": VOCAB, "hidden_size": 64, "num_hidden_layers": 2, "max_position_embeddings": 64}
LLAMA = {**SMALL, "intermediate_size": 96, "num_attention_heads": 4, "num_key_value_heads": 2}
DEEPSEEK = {  # MLA with distinct nope / rope / value head sizes, 4 routed experts
    **LLAMA, "num_key_value_heads": 4, "kv_lora_rank": 16, "qk_nope_head_dim": 16, "qk_rope_head_dim": 8, "v_head_dim": 12,
    "n_routed_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 32,
}  # fmt: skip
PHIMOE = {**LLAMA, "intermediate_size": 32, "num_local_experts": 4, "attention_bias": True, "lm_head_bias": True}
# GptOssConfig's YaRN, with a training context that puts the ramp's bounds between dims (1.56 and 3.88 of 8 with
# head_dim 16 and theta 150 000): truncation would move them, so a truncated table fails parity
GPT_OSS_YARN = {
    "rope_type": "yarn",
    "factor": 4.0,
    "beta_fast": 32.0,
    "beta_slow": 1.0,
    "truncate": False,
    "original_max_position_embeddings": 2048,
}
# LongRoPE: context 128 from an original 32 (attention factor sqrt(1 + ln 4 / ln 32)); head_dim 16 rotates 8 pairs,
# Phi-4-mini's partial rotary 0.75 rotates 6; long factors as spread as Phi-3's own (1 to ~60)
PHI3_LONGROPE = {
    "max_position_embeddings": 128,
    "original_max_position_embeddings": 32,
    "rope_scaling": {
        "rope_type": "longrope",
        "short_factor": [1.0, 1.02, 1.05, 1.1, 1.2, 1.4, 1.7, 2.0],
        "long_factor": [1.0, 1.6, 2.5, 4.0, 7.0, 13.0, 27.0, 58.0],
    },
}
PHI4_MINI_LONGROPE = {
    "max_position_embeddings": 128,
    "original_max_position_embeddings": 32,
    "partial_rotary_factor": 0.75,
    "rope_scaling": {
        "rope_type": "longrope",
        "short_factor": [1.0, 1.03, 1.1, 1.3, 1.6, 2.1],
        "long_factor": [1.0, 2.0, 4.5, 9.0, 20.0, 45.0],
    },
}
SMOL_TOKENS = {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0}  # SmolLM3Config's defaults lie outside VOCAB

# case id → (config class, keyword arguments); family modules' tests add theirs here
HF_CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "llama": ("LlamaConfig", LLAMA),
    "llama3": (
        "LlamaConfig",
        {
            **LLAMA,
            "attention_bias": True,
            "mlp_bias": True,
            "tie_word_embeddings": True,
            "rope_theta": 50000.0,
            "rope_scaling": {
                "rope_type": "llama3",
                "factor": 4.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 16,
            },
        },
    ),
    "mistral": ("MistralConfig", {**LLAMA, "sliding_window": 5, "head_dim": 24}),
    "qwen2": ("Qwen2Config", {**LLAMA, "use_sliding_window": True, "sliding_window": 5, "max_window_layers": 1, "num_key_value_heads": 1}),
    # GPT-2, BLOOM, Falcon, GPT-NeoX (hf/families/gpt2.py, bloom.py, falcon.py, gpt_neox.py)
    "gpt2": ("GPT2Config", {"vocab_size": VOCAB, "n_embd": 64, "n_layer": 2, "n_head": 4, "n_positions": 64}),
    "gpt2-untied-gelu": (
        "GPT2Config",
        {
            "vocab_size": VOCAB,
            "n_embd": 64,
            "n_layer": 2,
            "n_head": 4,
            "n_positions": 64,
            "n_inner": 96,
            "activation_function": "gelu",
            "tie_word_embeddings": False,
        },
    ),
    "bloom-6-heads": (
        "BloomConfig",
        {"vocab_size": VOCAB, "hidden_size": 96, "n_layer": 2, "n_head": 6},
    ),  # ALiBi slopes for a non-power of 2
    "gpt-neox-parallel": ("GPTNeoXConfig", {**SMALL, "num_attention_heads": 4, "intermediate_size": 96, "rotary_pct": 0.25}),
    "gpt-neox-sequential-nobias": (
        "GPTNeoXConfig",
        {
            **SMALL,
            "num_attention_heads": 4,
            "intermediate_size": 96,
            "rotary_pct": 0.5,
            "use_parallel_residual": False,
            "attention_bias": False,
        },
    ),
    "falcon-multi-query": ("FalconConfig", {**SMALL, "num_attention_heads": 4, "ffn_hidden_size": 96}),
    "falcon-new-arch-gqa": ("FalconConfig", {**SMALL, "num_attention_heads": 4, "num_kv_heads": 2, "new_decoder_architecture": True}),
    "falcon-new-arch-one-norm-bias": (
        "FalconConfig",
        {
            **SMALL,
            "num_attention_heads": 4,
            "num_kv_heads": 1,
            "new_decoder_architecture": True,
            "num_ln_in_parallel_attn": 1,
            "bias": True,
        },
    ),
    "falcon-per-head-sequential-bias": (
        "FalconConfig",
        {**SMALL, "num_attention_heads": 4, "multi_query": False, "parallel_attn": False, "bias": True, "tie_word_embeddings": False},
    ),
    # Phi-1/1.5/2, Gemma, OLMo-2 (feat/hf-b)
    "phi": ("PhiConfig", {**SMALL, "intermediate_size": 96, "num_attention_heads": 4, "partial_rotary_factor": 0.5}),
    "phi-qk-layernorm-gqa-tied": (
        "PhiConfig",
        {**LLAMA, "partial_rotary_factor": 0.4, "qk_layernorm": True, "tie_word_embeddings": True, "hidden_act": "gelu"},
    ),
    "gemma-mqa-head-dim": ("GemmaConfig", {**LLAMA, "num_key_value_heads": 1, "head_dim": 24}),
    "gemma-untied-gqa-bias": ("GemmaConfig", {**LLAMA, "tie_word_embeddings": False, "attention_bias": True, "rope_theta": 50000.0}),
    "gemma2": (
        "Gemma2Config",
        {**LLAMA, "num_hidden_layers": 3, "head_dim": 16, "query_pre_attn_scalar": 16, "sliding_window": 5, "attn_logit_softcapping": 2.0},
    ),
    "olmo2-gqa": ("Olmo2Config", {**LLAMA, "eos_token_id": 2}),
    "olmo2-mha-bias-tied": (
        "Olmo2Config",
        {**LLAMA, "num_key_value_heads": 4, "attention_bias": True, "tie_word_embeddings": True, "eos_token_id": 2},
    ),
    # Qwen3, Phi-3 (hf/families/qwen3.py, phi3.py)
    "qwen3-head-dim": ("Qwen3Config", {**LLAMA, "head_dim": 24}),
    "qwen3-window-bias": (
        "Qwen3Config",
        {
            **LLAMA,
            "use_sliding_window": True,
            "sliding_window": 5,
            "max_window_layers": 1,
            "attention_bias": True,
            "num_key_value_heads": 1,
        },
    ),
    "phi3": ("Phi3Config", {**LLAMA, "pad_token_id": 0, "eos_token_id": 2}),
    "phi3-partial-rotary-window-tied": (
        "Phi3Config",
        {
            **LLAMA,
            "pad_token_id": 0,
            "eos_token_id": 2,
            "partial_rotary_factor": 0.75,
            "sliding_window": 5,
            "tie_word_embeddings": True,
            "num_key_value_heads": 1,
        },
    ),
    # Phi-3 128k / Phi-4-mini LongRoPE (tests/test_hf_longrope.py also crosses the switch at 32)
    "phi3-longrope": ("Phi3Config", {**LLAMA, **PHI3_LONGROPE, "pad_token_id": 0, "eos_token_id": 2}),
    "phi4-mini-longrope-partial-tied": (
        "Phi3Config",
        {
            **LLAMA,
            **PHI4_MINI_LONGROPE,
            "pad_token_id": 0,
            "eos_token_id": 2,
            "tie_word_embeddings": True,
            "num_key_value_heads": 1,
        },
    ),
    # SmolLM3 (hf/families/smollm3.py): RoPE-free layers
    "smollm3-nope-every-2nd": ("SmolLM3Config", {**LLAMA, "num_hidden_layers": 4, "no_rope_layer_interval": 2, **SMOL_TOKENS}),
    "smollm3-window-bias-untied": (
        "SmolLM3Config",
        {
            **LLAMA,
            "num_hidden_layers": 3,
            "no_rope_layers": [1, 0, 0],
            "use_sliding_window": True,
            "sliding_window": 5,
            "attention_bias": True,
            "mlp_bias": True,
            "tie_word_embeddings": False,
            **SMOL_TOKENS,
        },
    ),
    # Granite (hf/families/granite.py): embedding, attention, residual and logit multipliers
    "granite": (
        "GraniteConfig",
        {**LLAMA, "embedding_multiplier": 12.0, "attention_multiplier": 0.1, "residual_multiplier": 0.22, "logits_scaling": 8.0},
    ),
    "granite-defaults-bias-tied": ("GraniteConfig", {**LLAMA, "attention_bias": True, "mlp_bias": True, "tie_word_embeddings": True}),
    # OLMo 1 (hf/families/olmo.py): weightless LayerNorms, clamped q/k/v (a clip the noise reaches)
    "olmo-clip-qkv": ("OlmoConfig", {**LLAMA, "clip_qkv": 0.3, "pad_token_id": 1, "eos_token_id": 2}),
    "olmo-mha-bias-tied": (
        "OlmoConfig",
        {**LLAMA, "num_key_value_heads": 4, "attention_bias": True, "tie_word_embeddings": True, "pad_token_id": 1, "eos_token_id": 2},
    ),
    # Nemotron (hf/families/nemotron.py): layernorm1p, squared-ReLU MLP without gate, half rotary
    "nemotron": ("NemotronConfig", {**LLAMA, "bos_token_id": 1, "eos_token_id": 2}),
    "nemotron-bias-head-dim-tied": (
        "NemotronConfig",
        {
            **LLAMA,
            "head_dim": 24,
            "partial_rotary_factor": 0.75,
            "attention_bias": True,
            "mlp_bias": True,
            "tie_word_embeddings": True,
            "bos_token_id": 1,
            "eos_token_id": 2,
        },
    ),
    # Qwen3-MoE (hf/families/qwen3_moe.py)
    "qwen3-moe": (
        "Qwen3MoeConfig",
        {
            **LLAMA,
            "num_hidden_layers": 3,
            "head_dim": 24,
            "num_experts": 4,
            "num_experts_per_tok": 2,
            "moe_intermediate_size": 32,
            "mlp_only_layers": [1],  # a dense layer between sparse ones
        },
    ),
    "qwen3-moe-normalised-every-2nd-window": (
        "Qwen3MoeConfig",
        {
            **LLAMA,
            "head_dim": 16,
            "num_experts": 4,
            "num_experts_per_tok": 2,
            "moe_intermediate_size": 32,
            "norm_topk_prob": True,
            "decoder_sparse_step": 2,
            "use_sliding_window": True,
            "sliding_window": 5,
            "attention_bias": True,
        },
    ),
    # Gemma 3 text (hf/families/gemma3.py): per-layer-kind RoPE, scaling on the global layers only
    "gemma3-text": (
        "Gemma3TextConfig",
        {
            **LLAMA,
            "num_hidden_layers": 3,
            "head_dim": 16,
            "query_pre_attn_scalar": 12,
            "sliding_window": 5,
            "layer_types": ["sliding_attention", "full_attention", "sliding_attention"],
            "rope_parameters": {
                "full_attention": {"rope_type": "linear", "factor": 4.0, "rope_theta": 1e6},
                "sliding_attention": {"rope_type": "default", "rope_theta": 100.0},
            },
            "final_logit_softcapping": 1.5,  # Gemma3ForCausalLM applies it (the multimodal class does not)
            **SMOL_TOKENS,
        },
    ),
    # Gemma 3 multimodal (hf/families/gemma3_multimodal.py): the text decoder of a Gemma3ForConditionalGeneration
    # with a tiny SigLIP tower; the global layers' RoPE scaled by 8 (as the 4B+ models ship), the 4.x keys
    # (rope_scaling, rope_local_base_freq, sliding_window_pattern) as the hub's configs give them
    "gemma3-multimodal": (
        "Gemma3Config",
        {
            "text_config": {
                **LLAMA,
                "num_hidden_layers": 4,
                "head_dim": 16,
                "query_pre_attn_scalar": 20,
                "sliding_window": 5,
                "sliding_window_pattern": 2,
                "rope_scaling": {"rope_type": "linear", "factor": 8.0},
                "rope_theta": 1e4,
                "rope_local_base_freq": 100.0,
                **SMOL_TOKENS,
            },
            "vision_config": {
                "hidden_size": 32,
                "intermediate_size": 48,
                "num_hidden_layers": 1,
                "num_attention_heads": 2,
                "patch_size": 14,
                "image_size": 28,
            },
            "mm_tokens_per_image": 4,
        },
    ),
    # Mixtral, DeepSeek-V2 (hf/families/mixtral.py, deepseek_v2.py)
    "mixtral": (
        "MixtralConfig",
        {**LLAMA, "num_local_experts": 4, "num_experts_per_tok": 2, "sliding_window": 5, "router_jitter_noise": 0.1},
    ),
    "deepseek_v2": (
        "DeepseekV2Config",
        {
            **DEEPSEEK,
            "q_lora_rank": 24,
            "attention_bias": True,
            "first_k_dense_replace": 1,
            "n_shared_experts": 1,
            "routed_scaling_factor": 2.5,
            "n_routed_experts": 8,
            "num_experts_per_tok": 3,  # > topk_group: the group limit changes the choice
            "topk_method": "group_limited_greedy",
            "n_group": 4,
            "topk_group": 2,
            "rope_scaling": {
                "rope_type": "yarn",
                "factor": 4.0,
                "original_max_position_embeddings": 16,
                "mscale": 1.0,
                "mscale_all_dim": 0.8,
            },
        },
    ),
    # Phi-3.5-MoE (hf/families/phimoe.py): SparseMixer routing, LayerNorm with bias, attention and LM head bias
    "phimoe": ("PhimoeConfig", {**PHIMOE, "router_jitter_noise": 0.3}),  # a threshold that keeps some second choices
    # Phi-3.5-MoE-instruct's LongRoPE: equal mscales, long factors transformers' PhiMoE never uses (it keeps the
    # short ones), and an original context of 8 that the prefill and decode cross
    "phimoe-longrope": (
        "PhimoeConfig",
        {
            **PHIMOE,
            "rope_parameters": {
                "rope_type": "longrope",
                "rope_theta": 1e4,
                "short_factor": [1.0, 1.1, 1.3, 1.6, 2.0, 2.6, 3.3, 4.0],
                "long_factor": [1.0, 3.0, 6.0, 12.0, 20.0, 30.0, 45.0, 60.0],
                "short_mscale": 1.2,
                "long_mscale": 1.2,
                "original_max_position_embeddings": 8,
            },
        },
    ),
    "phimoe-default-eps-window-tied": (
        "PhimoeConfig",
        {**PHIMOE, "attention_bias": False, "lm_head_bias": False, "sliding_window": 5, "tie_word_embeddings": True, "rope_theta": 1e4},
    ),
    # GPT-OSS (hf/families/gpt_oss.py): attention sinks, clamped SwiGLU experts with biases, YaRN without truncation
    "gpt-oss": (
        "GptOssConfig",
        {
            **LLAMA,
            "intermediate_size": 32,
            "head_dim": 16,
            "num_local_experts": 4,
            "num_experts_per_tok": 2,
            "sliding_window": 5,
            "rope_parameters": {**GPT_OSS_YARN, "rope_theta": 150000.0},
        },
    ),
    "gpt-oss-mha-unbiased-top1": (
        "GptOssConfig",
        {
            **LLAMA,
            "num_hidden_layers": 3,
            "intermediate_size": 24,
            "head_dim": 16,
            "num_key_value_heads": 4,
            "num_local_experts": 3,
            "num_experts_per_tok": 1,
            "sliding_window": 3,
            "attention_bias": False,
            "rope_parameters": {**GPT_OSS_YARN, "rope_theta": 10000.0, "beta_fast": 8.0, "original_max_position_embeddings": 256},
        },
    ),
    # LFM2 (hf/families/lfm2.py): short-conv layers with a conv state among attention layers (docs/recurrent.md)
    "lfm2": ("Lfm2Config", {**LLAMA, "num_hidden_layers": 3, "layer_types": ["conv", "full_attention", "conv"]}),
    "lfm2-untied-kernel-4-multiplier": (
        "Lfm2Config",
        {
            **LLAMA,
            "num_hidden_layers": 3,
            "full_attn_idxs": [2],
            "conv_L_cache": 4,
            "tie_word_embeddings": False,
            "block_ffn_dim_multiplier": 1.5,
            "block_multiple_of": 16,
        },
    ),
    "deepseek_v2_lite": ("DeepseekV2Config", {**DEEPSEEK, "q_lora_rank": None, "n_shared_experts": 2, "tie_word_embeddings": True}),
}
PROMPT_LENGTHS = (12, 7, 3)  # left-padded batch; longer than the cases' sliding windows
DECODE_STEPS = 8


def make_hf_model(case: str, folder: Path, *, dtype: torch.dtype = torch.float32, max_shard_size: str | None = None) -> torch.nn.Module:
    """Build the case's model (seeded, eager attention), perturb it, save it to ``folder``; returns it in fp32."""
    import transformers

    cls_name, kwargs = HF_CASES[case]
    config = getattr(transformers, cls_name)(**kwargs)
    config._attn_implementation = "eager"  # the reference: no fused kernel between us and the maths
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    saved = model.to(dtype) if dtype != torch.float32 else model
    options = {"max_shard_size": max_shard_size} if max_shard_size else {}
    saved.save_pretrained(folder, **options)
    return model.float()


def text_parameter_count(model: torch.nn.Module) -> int:
    """Parameters of the model's text decoder and head: a multimodal model's vision side is not imported."""
    return sum(p.numel() for name, p in model.named_parameters() if not re.search(r"vision_tower|multi_modal_projector", name))


@dataclass(frozen=True)
class HFParity:
    prefill: float  # max |Δ logits| over the batch's real (unpadded) positions; inf: NaN/inf anywhere, pads too
    decode: float  # max |Δ logits| over the decode steps; inf likewise

    def __str__(self) -> str:
        return f"prefill {self.prefill:.2e}, decode {self.decode:.2e}"


def step_diff(ref: np.ndarray, got: np.ndarray, valid: np.ndarray) -> float:
    """max |got - ref| over valid positions, inf when ``got`` holds a NaN or inf anywhere: a NaN in a pad
    reaches real tokens through the next layer, and Python's ``max(0.0, nan)`` is 0.0."""
    if not np.isfinite(got).all():
        return math.inf
    return float(np.abs(ref - got)[valid.astype(bool)].max())


def hf_parity(hf_model: torch.nn.Module, folder: Path, *, seed: int = 0, lengths: tuple[int, ...] = PROMPT_LENGTHS) -> HFParity:
    """The exported folder against ``hf_model`` on ORT CPU: a left-padded batch of prompts of ``lengths``,
    then ``DECODE_STEPS``. Both get the same tokens: HF's greedy choice is fed to both at every decode step.
    transformers gets ``position_ids = cumsum(mask) - 1`` explicitly (its default ignores left padding)."""
    rng = np.random.default_rng(seed)
    B, S = len(lengths), max(lengths)
    ids = np.zeros((B, S), np.int64)
    mask = np.zeros((B, S), np.int64)
    for b, n in enumerate(lengths):
        ids[b, S - n :] = rng.integers(1, VOCAB, n)
        mask[b, S - n :] = 1
    spec = load_spec(folder / "model.yaml")
    stepper = GraphStepper.for_session(cpu_session(folder), IOContract.for_spec(spec))
    takes_positions = "position_ids" in inspect.signature(hf_model.forward).parameters

    def hf_step(new: np.ndarray, full_mask: np.ndarray, past: Any) -> tuple[np.ndarray, Any]:
        kwargs: dict[str, Any] = {"attention_mask": torch.from_numpy(full_mask), "use_cache": True, "past_key_values": past}
        if takes_positions:
            kwargs["position_ids"] = torch.from_numpy(np.clip(full_mask.cumsum(-1) - 1, 0, None)[:, -new.shape[1] :])
        with torch.no_grad():
            out = hf_model(input_ids=torch.from_numpy(new), **kwargs)
        return out.logits.float().numpy(), out.past_key_values

    ref, hf_past = hf_step(ids, mask, None)
    got, past = stepper.step(ids, mask, stepper.empty_past(B))
    prefill = step_diff(ref, got, mask)
    decode = 0.0
    for _ in range(DECODE_STEPS):
        token = ref[:, -1].argmax(-1)[:, None].astype(np.int64)
        mask = np.concatenate([mask, np.ones((B, 1), np.int64)], axis=1)
        ref, hf_past = hf_step(token, mask, hf_past)
        got, past = stepper.step(token, mask, past)
        decode = max(decode, step_diff(ref, got, np.ones(got.shape[:2])))
    return HFParity(prefill, decode)


def imported_cases(tmp_path_factory: Any, prefix: str, make: Callable[[str, Path], torch.nn.Module]) -> Callable[[str], tuple]:
    """case → (the model ``make(case, folder)`` saved as an HF folder, that folder, the imported YAML path),
    made once per fixture scope."""
    from yamlllm_export.hf import import_hf, render_yaml

    made: dict[str, tuple] = {}

    def get(case: str) -> tuple:
        if case not in made:
            root = tmp_path_factory.mktemp(f"{prefix}-{case}")
            model = make(case, root / "hf")
            spec, header = import_hf(root / "hf", root / "model.yaml")
            (root / "model.yaml").write_text(render_yaml(spec, header))
            made[case] = (model, root / "hf", root / "model.yaml")
        return made[case]

    return get
