"""The reference workload as a local Hugging Face LLaMA folder (random weights, no downloads): what the peers
build from. ``REFERENCE`` is the issue's shape; ``yaml_spec`` is the same model in the YamlLLM dialect."""

from __future__ import annotations

import json
from pathlib import Path

REFERENCE = {
    "vocab_size": 32000,
    "hidden_size": 768,
    "intermediate_size": 2048,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "num_key_value_heads": 4,
    "max_position_embeddings": 2048,
    "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0,
    "tie_word_embeddings": False,
}


def write_hf_llama(out: Path, config: dict | None = None, seed: int = 0) -> Path:
    """config.json + model.safetensors + a word-level tokenizer.json covering the vocabulary (the builders
    copy tokenizer files; the benchmark feeds ids, so the tokenizer's content does not matter)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = {**REFERENCE, **(config or {})}
    if (out / "config.json").exists() and json.loads((out / "config.json").read_text()).get("vocab_size") == cfg["vocab_size"]:
        return out
    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig(**cfg, bos_token_id=1, eos_token_id=2, torch_dtype="float32"))
    model.save_pretrained(out, safe_serialization=True)
    _write_tokenizer(out, cfg["vocab_size"])
    return out


def _write_tokenizer(out: Path, vocab_size: int) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{f"t{i}": i for i in range(3, vocab_size)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "bos_token": "<s>",
                "eos_token": "</s>",
                "unk_token": "<unk>",
                "model_max_length": REFERENCE["max_position_embeddings"],
                "tokenizer_class": "PreTrainedTokenizerFast",
            },
            indent=2,
        )  # fmt: skip
    )


def yaml_spec(config: dict | None = None) -> dict:
    """The same architecture in the YamlLLM dialect (weights aside)."""
    c = {**REFERENCE, **(config or {})}
    return {
        "name": "BenchLlama",
        "embedding": {
            "vocab_size": c["vocab_size"],
            "max_position_embeddings": c["max_position_embeddings"],
            "embedding_dim": c["hidden_size"],
            "positional_encoding": {"type": "rope", "rope_theta": c["rope_theta"]},
        },
        "num_layers": c["num_hidden_layers"],
        "layer": {
            "hidden_dim": c["hidden_size"],
            "attention": {"num_heads": c["num_attention_heads"], "num_kv_heads": c["num_key_value_heads"], "bias": False},
            "ffn": {"intermediate_size": c["intermediate_size"], "activation": "swiglu", "use_gated_activation": True, "bias": False},
            "layer_norm": {"type": "rmsnorm", "eps": c["rms_norm_eps"]},
        },
        "final_layer_norm": {"type": "rmsnorm", "eps": c["rms_norm_eps"]},
        "tie_word_embeddings": c["tie_word_embeddings"],
    }
