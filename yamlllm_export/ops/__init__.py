"""Our torch custom ops (namespace ``yamlllm``). Each is eager reference + fake kernel; lowerings live in
``yamlllm_export.lowerings``. Importing this package registers them."""

from __future__ import annotations

from yamlllm_export.ops.attention import attention
from yamlllm_export.ops.attention_bias import attention_bias
from yamlllm_export.ops.complex_attention import complex_attention
from yamlllm_export.ops.linear_attention import linear_attention
from yamlllm_export.ops.mla_attention import mla_attention
from yamlllm_export.ops.moe import moe
from yamlllm_export.ops.rms_norm import rms_norm
from yamlllm_export.ops.short_conv import short_conv

__all__ = [
    "attention", "attention_bias", "complex_attention", "linear_attention", "mla_attention", "moe", "rms_norm", "short_conv",
]  # fmt: skip
