"""Target ``ort``: ONNX Runtime's fused kernels (com.microsoft contrib ops) where they exist.

Attention → ``GroupQueryAttention`` (+ ``RotaryEmbedding`` on q and k). Why not GQA's own ``do_rotary``:
with ``position_ids`` ORT's CPU kernel reads only each row's first element on a prompt and turns token s
by that + s, so position_ids that do not count up by one per slot (left padding, a mask with holes, any
caller's own positions) would rotate at the wrong positions, and ``position_ids`` is an input of the
contract that every target honours. (GQA's packed q/k/v form with positions made from the mask saved 3
kernels per layer and measured 1.7 % faster decode on the 125 M reference model, within the ±3 % tie band
of docs/design.md: not worth a graph input that does nothing.)

Why ``seqlens_k = total - 1`` for every row: GQA derives each row's valid keys and where new keys are
written from ``seqlens_k``, which is only right for right padding and would make the present cache ragged. With every row "full", present = past ++ new exactly, and padding (either side)
and ALiBi come through ``attention_bias``; pad keys are masked with a finite value (see ops/masking.py).
In float16 / bfloat16 builds and with sinks, an ``If`` chosen at run time drops the bias when it is all zeros
(no padding, no ALiBi): CUDA's GQA then uses its fused kernels and accepts ``head_sink`` (docs/cuda.md).
A head size that is not a multiple of 8 (which GQA's kernels refuse when the model runs) gets the portable
target's MatMul/Softmax attention instead. Limit (ORT CPU kernel): batch > 1 with several new tokens *and* a non-empty past is refused by ORT with
an error; it never returns wrong numbers. Split such work per row or token.

RMSNorm → ``SimplifiedLayerNormalization``; after export, ``fuse()`` chains residual adds into
``SkipSimplifiedLayerNormalization`` / ``SkipLayerNormalization`` with onnxscript's ORT fusion rules.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import onnx_ir as ir
import torch
from onnxscript import opset18 as op
from onnxscript import values

from yamlllm_export.lowerings import common, mla, portable, recurrent
from yamlllm_export.lowerings.attention_bias import attention_bias
from yamlllm_export.lowerings.branches import all_zeros, choose
from yamlllm_export.lowerings.common import dim
from yamlllm_export.lowerings.rotary import rotary_dim

OPSET = 18
msft = values.Opset("com.microsoft", 1)
HALF = (ir.DataType.FLOAT16, ir.DataType.BFLOAT16)


def attention(
    query: Any, key: Any, value: Any, past_key: Any, past_value: Any, attention_bias: Any,
    cos_cache: Any, sin_cache: Any, position_ids: Any, num_heads: int, num_kv_heads: int, scale: float,
    window_size: int = 0, causal: bool = True, softcap: float = 0.0, sinks: Any = None,
    rope_interleaved: bool = False, softmax: str = "softmax", softmax_params: Any = None, softmax_consts: Any = None,
) -> tuple[Any, Any, Any]:  # fmt: skip
    """``yamlllm::attention`` (and ``complex_attention``, see ``ops/complex_attention.py``) →
    com.microsoft.GroupQueryAttention (see module docstring). A ``softmax`` variant (ReaLLM-Forge) has no
    GroupQueryAttention form: the portable target's MatMul attention with the same cache computes it.
    Interleaved RoPE pairs are RotaryEmbedding's ``interleaved=1``. Variants map to GQA attributes, each checked
    on ORT CPU against the eager op: ``local_window_size`` (keys j > i − w, Mistral), ``softcap`` (before
    attention_bias), ``causal=0`` (bidirectional, also with a past; GQA refuses it together with a window, as
    the spec does). Partial rotary sets RotaryEmbedding's ``rotary_embedding_dim``. Sinks are GQA's
    ``head_sink`` input (one logit per head in the softmax's denominator; checked on ORT 1.31 CPU, also with
    padding, a window and softcap)."""
    if window_size > 0 and not causal:  # spec/rules.py refuses it for every target
        raise ValueError("GroupQueryAttention: local_window_size needs causal=1")
    if past_key.shape[3] % 8 or past_key.shape[3] != past_value.shape[3] or softmax != "softmax":
        # GQA refuses such head sizes at run time, has one head size for keys and values (infinite heads have
        # two) and no softmax variants: plain ops instead
        return portable.attention(
            query, key, value, past_key, past_value, attention_bias, cos_cache, sin_cache, position_ids, num_heads, num_kv_heads,
            scale, window_size=window_size, causal=causal, softcap=softcap, sinks=sinks, rope_interleaved=rope_interleaved,
            softmax=softmax, softmax_params=softmax_params, softmax_consts=softmax_consts,
        )  # fmt: skip
    half = query.dtype in HALF  # (RotaryEmbedding's output below has no inferred type)
    if cos_cache is not None:
        rd = rotary_dim(cos_cache)
        partial = {"rotary_embedding_dim": rd} if rd < past_key.shape[3] else {}  # full rotary: the graph as before
        if rope_interleaved:
            partial["interleaved"] = 1
        query = msft.RotaryEmbedding(query, position_ids, cos_cache, sin_cache, num_heads=num_heads, **partial)
        key = msft.RotaryEmbedding(key, position_ids, cos_cache, sin_cache, num_heads=num_kv_heads, **partial)
    if attention_bias is not None:  # (B, 1|nh, S, T): the same tensor in every layer, so after common-subexpression
        # elimination these few shape ops run once per step instead of once per layer (~8 kernels x layers)
        total, batch = dim(op, attention_bias, 3), dim(op, attention_bias, 0)
    else:
        total, batch = op.Add(dim(op, past_key, 2), dim(op, query, 1)), dim(op, query, 0)  # (1,) int64
    seqlens_k = op.Expand(op.Cast(op.Sub(total, op.Constant(value_ints=[1])), to=ir.DataType.INT32), batch)
    total_len = op.Cast(common.scalar(op, total), to=ir.DataType.INT32)
    if attention_bias is not None:
        attention_bias = op.CastLike(attention_bias, query)
    variants: dict[str, int | float] = {"local_window_size": window_size} if window_size > 0 else {}
    if softcap > 0:
        variants["softcap"] = softcap
    if not causal:
        variants["causal"] = 0

    def gqa(bias: Any, sink: Any) -> tuple[Any, Any, Any]:
        return msft.GroupQueryAttention(
            query, key, value, past_key, past_value, seqlens_k, total_len, None, None, None,
            op.CastLike(bias, query) if bias is not None else None, op.CastLike(sink, query) if sink is not None else None,
            num_heads=num_heads, kv_num_heads=num_kv_heads, scale=scale, **variants, _num_outputs=3,
        )  # fmt: skip

    if attention_bias is None or (sinks is None and not half):
        return gqa(attention_bias, sinks)
    # A bias that is all zeros (no padding, no ALiBi) changes nothing, so GQA can go without it: on CUDA that is
    # what lets it pick its fused Flash / memory-efficient / XQA kernels (any attention_bias selects the unfused
    # one), and the only form in which CUDA takes head_sink at all (NOT_IMPLEMENTED with attention_bias). The
    # choice is made at run time, once per step for every layer (the same condition): padded batches keep the
    # exact bias path, with sinks the plain-op attention. Float32 builds without sinks (the CPU's dtype; CUDA's
    # GQA has no float32 kernel) keep one GQA node: on the CPU an If per layer costs more than it saves.
    no_bias = all_zeros(op, attention_bias)  # over (B, 1|nh, S, T)

    def exact() -> tuple[Any, Any, Any]:
        if sinks is None:
            return gqa(attention_bias, None)
        return portable.attention(
            query, key, value, past_key, past_value, attention_bias, None, None, None, num_heads, num_kv_heads, scale,
            window_size=window_size, causal=causal, softcap=softcap, sinks=sinks,
        )  # fmt: skip

    return choose(op, no_bias, lambda: gqa(None, sinks), exact, "attention")


def rms_norm(x: Any, weight: Any, eps: float) -> Any:
    """``yamlllm::rms_norm`` → SimplifiedLayerNormalization (ORT kernel, default domain), fp32 statistics."""
    if weight is None:
        weight = op.Expand(op.CastLike(op.Constant(value_float=1.0), x), dim(op, x, -1))
    out = op.SimplifiedLayerNormalization(x, weight, axis=-1, epsilon=eps, stash_type=1)
    return out[0] if isinstance(out, tuple) else out  # the exporter also binds the optional inv_std_var output


# yamlllm::moe activation → com.microsoft.MoE activation_type, where ORT's CPU kernel computes the same
# function (checked against the eager op: its "gelu" is the tanh form; SwiGLU only gate/up-interleaved)
MOE_ACTIVATIONS = {"relu": "relu", "silu": "silu", "gelu_tanh": "gelu", "swiglu": "swiglu"}


def _interleave(op: Any, gate: Any, up: Any, axis: int) -> Any:
    """Rows g0, u0, g1, u1, ... along ``axis`` (the layout of swiglu_fusion=1)."""
    both = op.Concat(
        op.Unsqueeze(gate, op.Constant(value_ints=[axis + 1])), op.Unsqueeze(up, op.Constant(value_ints=[axis + 1])), axis=axis + 1
    )
    shape = op.Concat(dim(op, gate, 0), op.Constant(value_ints=[-1]), op.Shape(gate, start=axis + 1), axis=0)
    return op.Reshape(both, shape)  # (E, 2h[, d])


def moe(
    x: Any, router_weight: Any, gate_weight: Any, up_weight: Any, down_weight: Any,
    gate_bias: Any, up_bias: Any, down_bias: Any, top_k: int, normalize: bool, activation: str,
    groups: int = 1, top_groups: int = 0, routing: str = "softmax", jitter_eps: float = 0.0, router_bias: Any = None,
    swiglu_limit: float = 0.0, swiglu_alpha: float = 1.0, swiglu_beta: float = 0.0,
) -> Any:  # fmt: skip
    """``yamlllm::moe`` → com.microsoft.MoE (sparse: each token runs only its top-k experts; the router
    logits go in as ``router_probs``, softmax / top-k / renormalisation happen inside). Activations its
    kernel lacks (exact gelu, squared relu, GeGLU, ReGLU) use the dense plain-op lowering, and so do
    unnormalised top-k weights: with ``normalize_routing_weights=0`` the node alone matches the eager
    op to 1e-7, but inside a decoder ORT 1.32's CPU run gives logits off by ~1 unless the MoE input or
    output is also a graph output (a buffer-reuse problem, reproduced with graph optimisations off). The
    kernel has no group-limited routing either. SwiGLU's alpha, beta and limit (GPT-OSS's clamped experts)
    are the kernel's ``activation_alpha``, ``activation_beta`` and ``swiglu_limit``.

    SparseMixer: the CPU kernel ignores ``use_sparse_mixer`` (checked on ORT 1.31: softmax routing either
    way), so the gates w (k non-zero per token, each > 0) are computed in plain ops and fed in as
    ``router_probs = log w``: the kernel's softmax and renormalisation give w / Σw on the same k experts,
    and the output, linear in the weights, is multiplied back by Σw."""
    kind = MOE_ACTIVATIONS.get(activation)
    grouped = 0 < top_groups < groups
    mixer = routing == "sparsemixer"
    if (
        kind is None or (not normalize and not mixer) or grouped
    ):  # normalize_routing_weights=0: wrong logits in a whole graph (ORT 1.32 CPU)
        return common.moe(
            x, router_weight, gate_weight, up_weight, down_weight, gate_bias, up_bias, down_bias, top_k, normalize, activation,
            groups, top_groups, routing, jitter_eps, router_bias, swiglu_limit, swiglu_alpha, swiglu_beta,
        )  # fmt: skip
    fc1, fc1_bias = up_weight, up_bias
    if gate_weight is not None:
        fc1 = _interleave(op, gate_weight, up_weight, 1)  # (E, 2h, d)
        fc1_bias = _interleave(op, gate_bias, up_bias, 1) if up_bias is not None else None  # (E, 2h); both or neither
    experts = router_weight.shape[0]
    rows = op.Concat(op.Constant(value_ints=[-1]), dim(op, router_weight, 0), axis=0)
    logits = op.Reshape(common.router_logits(op, x, router_weight, router_bias), rows)  # (B·S, E)
    if mixer:
        gates = common.route(op, logits, experts, top_k, normalize, groups, top_groups, routing, jitter_eps)  # (B·S, E)
        total = op.CastLike(op.ReduceSum(gates, op.Constant(value_ints=[-1]), keepdims=1), x)  # (B·S, 1)
        logits = op.CastLike(op.Log(gates), x)  # log 0 = -inf: the kernel's softmax gives those experts 0
    params = {"activation_alpha": 1.0, "activation_beta": 0.0, "swiglu_fusion": 0}
    if kind == "swiglu":  # g·σ(alpha·g)·(u + beta), clamped at swiglu_limit when given
        params = {"activation_alpha": swiglu_alpha, "activation_beta": swiglu_beta, "swiglu_fusion": 1}
        params |= {"swiglu_limit": swiglu_limit} if swiglu_limit > 0 else {}
    y = msft.MoE(
        x, logits, fc1, fc1_bias, down_weight, down_bias, k=top_k, normalize_routing_weights=1, activation_type=kind,
        **params,
    )  # fmt: skip
    if not mixer:
        return y
    return op.Mul(y, op.Reshape(total, op.Concat(op.Shape(x, end=-1), op.Constant(value_ints=[1]), axis=0)))  # (B, S, d)


TABLE: dict[Any, Callable[..., Any]] = {
    torch.ops.yamlllm.attention.default: attention,
    torch.ops.yamlllm.complex_attention.default: attention,
    torch.ops.yamlllm.attention_bias.default: attention_bias,
    torch.ops.yamlllm.mla_attention.default: mla.ort_mla_attention,
    torch.ops.yamlllm.rms_norm.default: rms_norm,
    torch.ops.yamlllm.moe.default: moe,
    torch.ops.yamlllm.short_conv.default: recurrent.ort_short_conv,
    torch.ops.yamlllm.linear_attention.default: recurrent.ort_linear_attention,
}


def fuse(model: ir.Model) -> dict[str, int]:
    """Post-export fusions for ORT (onnxscript's rules); returns how often each fired, for build.json."""
    from onnxscript.rewriter.ort_fusions.skip_normalization import fuse_skip_layer_normalization, fuse_skip_rms_normalization

    from yamlllm_export.lowerings.fuse_matmul import fuse_shared_input_matmuls

    return {
        "skip_simplified_layer_normalization": fuse_skip_rms_normalization(model),
        "skip_layer_normalization": fuse_skip_layer_normalization(model),
        "shared_input_matmul": fuse_shared_input_matmuls(model),  # after the norms: their outputs are the shared inputs
    }
