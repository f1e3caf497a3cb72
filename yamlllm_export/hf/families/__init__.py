"""model_type → the family module that maps it (config → spec, weights → our names)."""

from __future__ import annotations

from yamlllm_export.errors import BuildError
from yamlllm_export.hf.config import HFConfig
from yamlllm_export.hf.families import (
    bloom,
    deepseek_v2,
    falcon,
    gemma,
    gemma2,
    gemma3,
    gemma3_multimodal,
    gpt2,
    gpt_neox,
    gpt_oss,
    granite,
    internlm2,
    lfm2,
    llama,
    mixtral,
    nemotron,
    olmo,
    olmo2,
    phi,
    phi3,
    phimoe,
    qwen3,
    qwen3_moe,
    smollm3,
)
from yamlllm_export.hf.families.base import Family

MODULES = (
    llama,
    mixtral,
    deepseek_v2,
    gpt2,
    bloom,
    falcon,
    gpt_neox,
    phi,
    phi3,
    gemma,
    gemma2,
    gemma3_multimodal,
    olmo2,
    qwen3,
    smollm3,
    granite,
    olmo,
    nemotron,
    qwen3_moe,
    gemma3,
    phimoe,
    internlm2,
    gpt_oss,
    lfm2,
)
FAMILIES: dict[str, Family] = {t: fam.FAMILY for fam in MODULES for t in fam.FAMILY.model_types}


def family_for(cfg: HFConfig) -> Family:
    family = FAMILIES.get(cfg.model_type)
    if family is None:
        got = repr(cfg.model_type) if cfg.model_type else "no model_type"
        raise BuildError(f"{cfg.where}: {got} is not supported; supported model_type values: {', '.join(sorted(FAMILIES))}")
    return family
