"""A ReaLLM-Forge state dict under our names (``build --weights CKPT.pt``).

Forge's names (prefix ``transformer.``) → ours: ``wte`` → ``embed``, ``wpe`` → ``positions.embedding``,
``h.{i}.pre_ln_attn`` / ``pre_ln_mlp`` → the pre norms, ``out_ln_*`` (``peri_ln_*`` in later revisions) →
the sandwich / output norms, ``post_ln_*`` → the post norms, ``pre_ln`` → a parallel block's norm,
``attn.c_attn_q|k|v`` / ``c_proj`` → ``q|k|v_proj`` / ``o_proj``, ``mlp.c_fc`` / ``c_proj`` (swiglu:
``c_fc_in1`` gate, ``c_fc_in2`` up, ``c_fc_out`` down), ``mlp.kan.*`` → the KAN layers, ``ln_f`` →
``final_norm``, ``scale_up`` / ``scale_down`` → the factorized embedding's projections. RMSNorm's ``gain``
is our ``weight``. Skipped: ``attn.bias``, the manual attention path's causal-mask buffer, and the MLP's
activation offsets when they are 0 (a non-zero one is refused).

Two rewrites keep the function exact:
- RoPE: Forge rotates interleaved pairs (2i, 2i+1) of the first rope_length dims of a head; ours rotates
  (i, i + R/2). Permuting the rows of W_q and W_k (and their biases) the same way, evens then odds, turns one
  into the other and leaves every score q·k unchanged.
- ``mlp_down_projs`` k > 1: Forge's down projection writes k·C outputs and sums the k blocks; one matrix
  holding the sum of the blocks computes the same.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from yamlllm_export.errors import BuildError
from yamlllm_export.forge.checkpoint import ForgeCheckpoint, forge_checkpoint
from yamlllm_export.forge.options import has_offsets, mixers
from yamlllm_export.forge.table import Args, defaults, qk_head_dim, rope_length
from yamlllm_export.weights.checkpoint import load_weights

NORM_SLOTS = {
    "pre_ln_attn": "attn_norms.pre", "pre_ln_mlp": "ffn_norms.pre",
    "out_ln_attn": "attn_norms.post", "out_ln_mlp": "ffn_norms.post",
    "peri_ln_attn": "attn_norms.post", "peri_ln_mlp": "ffn_norms.post",
    "post_ln_attn": "attn_norms.after", "post_ln_mlp": "ffn_norms.after",
    "pre_ln": "norm",
}  # fmt: skip
ATTN = {"c_attn_q": "q_proj", "c_attn_k": "k_proj", "c_attn_v": "v_proj", "c_proj": "o_proj"}
MLP = {"c_fc": "up", "c_proj": "down", "c_fc_in1": "gate", "c_fc_in2": "up", "c_fc_out": "down", "c_proj1": "down", "c_proj2": "down_neg"}
# the causal-mask buffer; a quantized linear's step and zero point (recomputed from its weight at every forward)
SKIPPED = re.compile(r"h\.\d+\.attn\.bias|.*\._step|.*\.weight_zero_point")
PARAM = {"gain": "weight", "weight": "weight", "bias": "bias", "radius": "radius", "alpha": "alpha", "beta": "beta", "gamma": "gamma"}
SOFTMAX = {"temperature_factor": "temperature", "obo_offset": "obo", "_gamma_raw": "gamma_raw"}  # else the same name
# Our parameters that Forge keeps as plain floats when they are not learned (consmax β/γ, strongermax's temperature
# and obo, a fixed hypersphere radius, DyT's α, ...): our module starts them at the value the spec took from
# model_args, which is Forge's float, so a missing one keeps our initial value.
FROM_ARGS = re.compile(
    r"attn\.softmax\.(beta|gamma|beta_factor|gamma_factor|temperature|obo|gamma_raw)$|\.radius$|\.alpha$"
    r"|ffn\.(act|offsets)\.(x_offset|y_offset)$|ffn\.act(\.act)?\.shift$"
)


def _name(forge: str) -> str | None:
    """Our name for a Forge state-dict name (without ``transformer.``), or None when it has none."""
    simple = {"wte.weight": "embed.weight", "wpe.weight": "positions.embedding.weight", "lm_head.weight": "lm_head.weight",
              "scale_up.weight": "embed_proj.weight", "scale_down.weight": "head_proj.weight"}  # fmt: skip
    if forge in simple:
        return simple[forge]
    if forge == "embedding_scale":
        return "embed_scale.weight"
    if m := re.fullmatch(r"lsv_matrix\.(.+)", forge):
        return f"steering.lsv.{m[1]}"
    if m := re.fullmatch(r"ln_f\.(\w+)", forge):
        return f"final_norm.{PARAM[m[1]]}" if m[1] in PARAM else None
    if m := re.fullmatch(r"h\.(\d+)\.(\w+)\.(\w+)", forge):
        if m[2] in NORM_SLOTS and m[3] in PARAM:
            return f"blocks.{m[1]}.{NORM_SLOTS[m[2]]}.{PARAM[m[3]]}"
    if m := re.fullmatch(r"h\.(\d+)\.attn\.fire_pos_enc\.(.+)", forge):
        return f"blocks.{m[1]}.attn.fire.{m[2]}"  # a shared FIRE: forge_state moves layer 0's to the top level
    if m := re.fullmatch(r"h\.(\d+)\.attn\.softmax_layer_attn\.(\w+)", forge):
        return f"blocks.{m[1]}.attn.softmax.{SOFTMAX.get(m[2], m[2])}"
    if m := re.fullmatch(r"h\.(\d+)\.attn\.c_proj_list\.\d+\.(weight|bias)", forge):
        return f"blocks.{m[1]}.attn.o_proj.{m[2]}"  # infinite heads' n_cproj projections: summed (forge_state)
    if m := re.fullmatch(r"h\.(\d+)\.attn\.(\w+)\.(weight|bias)", forge):
        return f"blocks.{m[1]}.attn.{ATTN[m[2]]}.{m[3]}" if m[2] in ATTN else None
    if m := re.fullmatch(r"h\.(\d+)\.mlp\.(\w+)\.(weight|bias)", forge):
        return f"blocks.{m[1]}.ffn.{MLP[m[2]]}.{m[3]}" if m[2] in MLP else None
    if m := re.fullmatch(r"h\.(\d+)\.mlp\.kan\.(base_weights|poly_weights)\.(\d+)", forge):
        return f"blocks.{m[1]}.ffn.layers.{m[3]}.{m[2][:-1]}"
    if m := re.fullmatch(r"h\.(\d+)\.mlp\.kan\.layer_norms\.(\d+)\.(weight|bias)", forge):
        return f"blocks.{m[1]}.ffn.layers.{m[2]}.norm.{m[3]}"
    return None


def rope_permutation(hs: int, rotary: int) -> torch.Tensor:
    """Feature order that turns interleaved pairs (2i, 2i+1) of the first ``rotary`` dims into halves (i, i + rotary/2)."""
    return torch.cat([torch.arange(0, rotary, 2), torch.arange(1, rotary, 2), torch.arange(rotary, hs)])


def _permute_heads(t: torch.Tensor, hs: int, perm: torch.Tensor) -> torch.Tensor:
    """Rows of a q/k projection (weight (H·hs, C) or bias (H·hs,)) reordered within each head."""
    heads = t.reshape(-1, hs, *t.shape[1:])  # (H, hs, ...)
    return heads[:, perm].reshape(t.shape)


def forge_state(ckpt: ForgeCheckpoint) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors under our names, rewritten where the module docstring says."""
    args: Args = {**defaults(), **ckpt.model_args}
    hs = qk_head_dim(args)
    perm = rope_permutation(hs, rope_length(args)) if args["use_rotary_embeddings"] else None
    k = int(args["mlp_down_projs"])
    offsets, dual = has_offsets(args), args["mlp_variant"] == "dual_path"
    kinds = mixers(args)
    out: dict[str, torch.Tensor] = {}
    for forge, tensor in ckpt.state.items():
        name = forge.removeprefix("transformer.")
        if SKIPPED.fullmatch(name):
            continue
        if m := re.fullmatch(r"h\.(\d+)\.mlp\.activation_([xy]_offset)", name):
            if not offsets:  # our ffn has no offsets then: Forge's buffer must be 0
                if torch.count_nonzero(tensor):
                    raise BuildError(f"{ckpt.path}: {forge} is {tensor.flatten()[0].item():g} while model_args' mlp_x/y_offset are 0")
                continue
            out[f"blocks.{m[1]}.ffn.{'offsets' if dual else 'act'}.{m[2]}"] = tensor.reshape(1)
            continue
        if m := re.fullmatch(r"h\.(\d+)\.mlp\.activation_variant\.(.+)", name):
            nested = "act.act" if offsets and not dual else "act"  # with offsets the activation sits one level deeper
            param = m[2].removeprefix("activation.")  # torch activations sit in a wrapper's .activation
            out[f"blocks.{m[1]}.ffn.{nested}.{param}"] = tensor.reshape(-1) if tensor.dim() == 0 else tensor
            continue
        if name == "scale_down.weight" and args["n_embd_wte"] and args["n_embd_wte_scale_tying"]:
            continue  # tied to scale_up (the same tensor): our head side is embed_proj's transpose
        if (m := re.fullmatch(r"h\.(\d+)\.attn\.(.+)", name)) and kinds[int(m[1]) % len(kinds)] == "linear":
            out[f"blocks.{m[1]}.attn.{m[2]}"] = tensor  # linear attention: Forge's own names (c_attn, c_proj, scale)
            continue
        if (m := re.fullmatch(r"h\.(\d+)\.attn\.fire_pos_enc\.(.+)", name)) and args["shared_fire_embeddings"]:
            if m[1] == "0":  # one module for every layer, repeated under each in Forge's state dict
                out[f"fire.{m[2]}"] = tensor
            continue
        ours = _name(name)
        if ours is None:
            raise BuildError(
                f"{ckpt.path}: {forge}: no counterpart in yamlllm-export's model (a model_args option the importer did not map?)"
            )
        if perm is not None and re.search(r"attn\.[qk]_proj\.", ours):
            tensor = _permute_heads(tensor, hs, perm)
        if ours.endswith("head_proj.weight"):
            tensor = tensor.t()  # Forge computes x @ scale_down.weight; our Linear takes its transpose
        if k > 1 and re.search(r"ffn\.down\.", ours):
            tensor = tensor.reshape(k, -1, *tensor.shape[1:]).sum(0)  # (k·C, h) → (C, h): the k blocks summed
        if ".c_proj_list." in name and ours in out:
            tensor = out[ours] + tensor  # Σ_j W_j y + b_j = (Σ_j W_j) y + Σ_j b_j
        out[ours] = tensor.contiguous()
    return out


def load_forge_weights(model: nn.Module, path: str, obj: object | None = None) -> list[str]:
    """Load the Forge checkpoint at ``path`` (``obj``: its loaded content) into ``model``; returns notes."""
    ckpt = forge_checkpoint(path, obj)
    state = forge_state(ckpt)
    own = model.state_dict()
    for name, tensor in own.items():
        if name not in state and name.endswith(".bias") and name.removesuffix(".bias") + ".weight" in state and _is_norm(name):
            state[name] = torch.zeros_like(tensor)  # Forge's LayerNorm without --bias has no shift: ours is zero then
        elif name not in state and FROM_ARGS.search(name):
            state[name] = tensor.clone()  # a float upstream (not learned): our initial value is model_args' value
        elif name in state and state[name].shape != tensor.shape and state[name].numel() == tensor.numel() == 1:
            state[name] = state[name].reshape(tensor.shape)  # Forge's 0-d scalars vs our (1,) ones
    return load_weights(model, state, str(path))


def _is_norm(name: str) -> bool:
    return bool(re.search(r"(attn_norms|ffn_norms)\.\w+\.bias$|\.norm\.bias$|^final_norm\.bias$", name))
