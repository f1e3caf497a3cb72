"""A static KV cache for the ``compile`` backend, as gpt-fast keeps it: every layer's keys and values live in
buffers allocated once at the workload's full length and written in place at each step's slots.

The exported contract (and the ``eager`` row) returns ``present = past ++ new``, a new tensor every step;
here ``torch.cat`` becomes a slice write and the attention reads a view of the filled prefix. The cache is
injected as each attention module's ``kernel`` (the variant hook of ``model/attention.py``) and runs the
same rotation and attention math as ``ops.attention``; the model's ``past`` inputs become placeholders that
carry only the cache length (an expanded scalar: no memory), so ``DecoderLM.forward`` runs unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

from yamlllm_export import ops
from yamlllm_export.errors import BuildError
from yamlllm_export.model.attention import SelfAttention
from yamlllm_export.model.decoder import DecoderLM
from yamlllm_export.ops.attention import attend
from yamlllm_export.ops.rotary import apply_rotary, rotary_inputs


class StaticKV(nn.Module):
    """One layer's cache, (B, nkv, L, hs) for keys and for values; called with ``ops.attention``'s arguments."""

    keys: torch.Tensor  # (B, nkv, L, hs) buffers
    values: torch.Tensor

    def __init__(self, batch: int, heads: int, length: int, dim: int, *, dtype: torch.dtype, device: torch.device) -> None:
        super().__init__()
        self.register_buffer("keys", torch.zeros(batch, heads, length, dim, dtype=dtype, device=device), persistent=False)
        self.register_buffer("values", torch.zeros(batch, heads, length, dim, dtype=dtype, device=device), persistent=False)

    def forward(
        self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, past_key: torch.Tensor, past_value: torch.Tensor,
        attention_bias: torch.Tensor | None, cos_cache: torch.Tensor | None, sin_cache: torch.Tensor | None,
        position_ids: torch.Tensor | None, num_heads: int, num_kv_heads: int, scale: float,
        window_size: int = 0, causal: bool = True, softcap: float = 0.0, sinks: torch.Tensor | None = None,
        rope_interleaved: bool = False, softmax: str = "softmax", softmax_params: torch.Tensor | None = None,
        softmax_consts: list[float] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
        B, S, _ = query.shape
        P, hs = past_key.shape[2], past_key.shape[3]  # the placeholder says how much of the cache is filled
        q = query.view(B, S, num_heads, hs)
        k = key.view(B, S, num_kv_heads, hs)
        if (rotary := rotary_inputs(cos_cache, sin_cache, position_ids)) is not None:
            q = apply_rotary(q, *rotary, interleaved=rope_interleaved)
            k = apply_rotary(k, *rotary, interleaved=rope_interleaved)
        self.keys[:, :, P : P + S] = k.transpose(1, 2)  # (B, nkv, S, hs) into slots P .. P+S-1
        self.values[:, :, P : P + S] = value.view(B, S, num_kv_heads, hs).transpose(1, 2)
        keys, values = self.keys[:, :, : P + S], self.values[:, :, : P + S]  # views, no copy
        out = attend(
            q.transpose(1, 2),
            keys,
            values,
            attention_bias,
            scale=scale,
            causal=causal,
            window_size=window_size,
            softcap=softcap,
            sinks=sinks,
            softmax=softmax,
            softmax_params=softmax_params,
            softmax_consts=softmax_consts,
        )
        return out.transpose(1, 2).reshape(B, S, num_heads * hs), keys, values


class StaticCache:
    """The layers' ``StaticKV`` kernels, installed into ``model`` in place; ``past(length)`` is what to pass
    as ``past_key_values`` when ``length`` slots are filled."""

    def __init__(self, model: DecoderLM, batch: int, length: int) -> None:
        attns = [block.attn for block in model.layers()]
        standard = [a for a in attns if isinstance(a, SelfAttention) and a.kernel is ops.attention]
        if len(standard) != len(attns):
            raise BuildError(
                "--backend compile: the static cache covers layers with the standard attention kernel (not MLA or complex attention)"
            )
        weight = model.embed.weight
        self.batch, self.dims = batch, [a.cache_dims for a in standard]
        self.scalar = weight.new_zeros(())
        for attn in standard:
            (heads, dim), _ = attn.cache_dims
            attn.kernel = StaticKV(batch, heads, length, dim, dtype=weight.dtype, device=weight.device)

    def past(self, length: int) -> list[tuple[torch.Tensor, ...]]:
        return [tuple(self.scalar.expand(self.batch, heads, length, dim) for heads, dim in dims) for dims in self.dims]
