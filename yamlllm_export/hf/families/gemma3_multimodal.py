"""Gemma 3 multimodal (model_type ``gemma3``, Gemma3ForConditionalGeneration): its text decoder only, from
``text_config`` and the language model's tensors; the SigLIP vision tower and the multi-modal projector are
left out (text-only prompts never reach them). The head is tied unless the top-level config says otherwise.
Unlike Gemma3ForCausalLM, Gemma3ForConditionalGeneration applies no final logit soft-cap."""

from __future__ import annotations

import re
from typing import Any

from yamlllm_export.hf.config import HFConfig
from yamlllm_export.hf.families.base import Family, State
from yamlllm_export.hf.families.gemma3 import gemma3_weights, text_spec

# the language model's prefixes: the hub's (transformers 4.50, also what 5.x's save_pretrained writes back)
# and transformers 5's module names; the rest is the vision side
_TEXT = {"language_model.model.": "model.", "model.language_model.": "model.", "language_model.lm_head.": "lm_head."}
_VISION = re.compile(r"(model\.)?(vision_tower|multi_modal_projector)\..+")
NOTE = "text decoder only: the vision tower and the multi-modal projector are left out"


def text_config(cfg: HFConfig) -> HFConfig:
    """``text_config`` as a config of its own; errors name its keys as ``text_config.<key>``."""
    raw = cfg.require("text_config")
    if not isinstance(raw, dict):
        raise cfg.refuse("text_config", "expected a JSON object")
    tied = cfg.get("tie_word_embeddings", True)  # transformers ties the head by the top-level flag
    return HFConfig(cfg.folder, {**raw, "tie_word_embeddings": tied}, cfg.source, key_path="text_config.")


def gemma3_multimodal_spec(cfg: HFConfig) -> dict[str, Any]:
    text = text_config(cfg)
    if text.get("final_logit_softcapping") is not None:
        raise text.refuse("final_logit_softcapping", "Gemma3ForConditionalGeneration does not apply it; Gemma3ForCausalLM does")
    return text_spec(text)


def gemma3_multimodal_weights(cfg: HFConfig, state: State) -> State:
    text: State = {}
    for name, tensor in state.items():
        if _VISION.fullmatch(name):
            continue
        prefix = next((p for p in _TEXT if name.startswith(p)), None)
        text[_TEXT[prefix] + name.removeprefix(prefix) if prefix else name] = tensor
    return gemma3_weights(text_config(cfg), text)


FAMILY = Family(model_types=("gemma3",), to_spec=gemma3_multimodal_spec, convert=gemma3_multimodal_weights, note=NOTE)
