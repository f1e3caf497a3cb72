"""Granite 3.x (model_type ``granite``): LLaMA's block with four scalar multipliers, each a key of the
dialect: ``embedding_multiplier`` → ``embedding.scale``, ``attention_multiplier`` (it replaces
1/sqrt(head_dim)) → ``layer.attention.softmax_scale``, ``residual_multiplier`` → ``layer.residual_scale``
and ``logits_scaling`` (logits are divided by it) → ``final_logit_scale`` = 1 / logits_scaling."""

from __future__ import annotations

from typing import Any

from yamlllm_export.hf.config import HFConfig
from yamlllm_export.hf.families.base import Family, State, renamed
from yamlllm_export.hf.families.llama import RULES as LLAMA_RULES
from yamlllm_export.hf.families.llama import llama_spec


def granite_spec(cfg: HFConfig) -> dict[str, Any]:
    spec = llama_spec(cfg)
    multipliers = {
        k: float(cfg.get(k, 1.0)) for k in ("embedding_multiplier", "attention_multiplier", "residual_multiplier", "logits_scaling")
    }
    for key, value in multipliers.items():
        if value <= 0:
            raise cfg.refuse(key, "the multipliers map to positive scales")
    if multipliers["embedding_multiplier"] != 1.0:
        spec["embedding"]["scale"] = multipliers["embedding_multiplier"]
    spec["layer"]["attention"]["softmax_scale"] = multipliers["attention_multiplier"]  # GraniteConfig's default 1.0 is a scale too
    if multipliers["residual_multiplier"] != 1.0:
        spec["layer"]["residual_scale"] = multipliers["residual_multiplier"]
    if multipliers["logits_scaling"] != 1.0:
        spec["final_logit_scale"] = 1.0 / multipliers["logits_scaling"]
    return spec


def granite_weights(cfg: HFConfig, state: State) -> State:
    return renamed(cfg, state, LLAMA_RULES)


FAMILY = Family(model_types=("granite",), to_spec=granite_spec, convert=granite_weights)
