"""``genai_config.json``: what onnxruntime-genai needs to load a built folder unchanged.

``model.type: "decoder"`` is genai's generic decoder-only type: it feeds the graph by the I/O names given
here (our contract is genai's naming) and reads nothing model-specific. Only keys genai's parser knows are
written, since it rejects unknown ones.
"""

from __future__ import annotations

from typing import Any

from yamlllm_export.runtime.io_contract import IOContract
from yamlllm_export.spec import ModelSpec
from yamlllm_export.spec.features import full_window_line, needs_full_window

GENAI_CONFIG = "genai_config.json"
GENAI_LAYER_TYPES = {"attention": "full_attention", "short_conv": "conv"}  # our layer_types → genai's LFM2 names


def genai_blocker(spec: ModelSpec) -> str | None:
    """Why onnxruntime-genai cannot run this model, or None when it can."""
    if needs_full_window(spec):
        return f"full-window graph without a KV cache ({full_window_line(spec)}); onnxruntime-genai's decoder needs a cache"
    others = sorted(set(spec.mixers()) - {"attention", "short_conv"})
    if others:
        return f"layer_types {', '.join(others)}: onnxruntime-genai's decoder feeds key/value caches only; run the folder with yamlllm-export generate"
    if spec.layer.attention.mechanism == "mla":
        return "multi-latent attention caches past_key_values.{i}.latent/.rope_key; onnxruntime-genai's decoder feeds key/value caches only"
    return None


def genai_config(spec: ModelSpec) -> dict[str, Any]:
    """The config for a folder built from ``spec`` (``genai_blocker(spec)`` must be None)."""
    att, tokens = spec.layer.attention, spec.tokens
    contract = IOContract.for_spec(spec)
    context = spec.embedding.max_position_embeddings
    inputs = {"input_ids": "input_ids", "attention_mask": "attention_mask"}
    if contract.has_position_ids:
        inputs["position_ids"] = "position_ids"
    # genai defaults absent ids to 0, and it stops on its eos id: without one, 0 would end generation on
    # token 0 (an id it must have, checked < vocab_size); bos/pad only inform its tokenizer and padding.
    eos = tokens.eos_token_id
    ids = {
        "bos_token_id": tokens.bos_token_id,
        "eos_token_id": list(eos) if len(eos) > 1 else eos[0] if eos else None,
        "pad_token_id": tokens.pad_token_id,
    }
    kinds = spec.mixers()
    decoder_type = {}
    if "short_conv" in kinds:  # genai's LFM2 model: conv states past.%d.conv beside the attention layers' KV caches
        assert spec.layer.short_conv is not None
        decoder_type = {
            "layer_types": [GENAI_LAYER_TYPES[k] for k in kinds],
            "conv_cache_size": spec.layer.short_conv.L_cache - 1,
        }
        inputs["past_conv_names"] = "past.%d.conv"
    outputs = {"present_conv_names": "present.%d.conv"} if "short_conv" in kinds else {}
    return {
        "model": {
            "type": "lfm2" if "short_conv" in kinds else "decoder",
            "vocab_size": spec.embedding.vocab_size,
            "context_length": context,
            **{k: v for k, v in ids.items() if v is not None},
            "decoder": {
                "filename": "model.onnx",
                "session_options": {"log_id": "onnxruntime-genai", "provider_options": []},
                "head_size": att.head_dim,
                "hidden_size": spec.layer.hidden_dim,
                "num_attention_heads": att.num_heads,
                "num_key_value_heads": att.num_kv_heads,
                "num_hidden_layers": spec.num_layers,
                **decoder_type,
                "inputs": {**inputs, "past_key_names": "past_key_values.%d.key", "past_value_names": "past_key_values.%d.value"},
                "outputs": {
                    "logits": "logits",
                    "present_key_names": "present.%d.key",
                    "present_value_names": "present.%d.value",
                    **outputs,
                },
            },
        },
        # our presents are past ++ new (dense), not a buffer preallocated at max_length: no sharing
        "search": {"max_length": context, "past_present_share_buffer": False, "do_sample": False, "num_beams": 1},
    }
