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
from yamlllm_export.forge.table import Args, defaults, head_dim, rope_length
from yamlllm_export.weights.checkpoint import load_weights

NORM_SLOTS = {
    "pre_ln_attn": "attn_norms.pre", "pre_ln_mlp": "ffn_norms.pre",
    "out_ln_attn": "attn_norms.post", "out_ln_mlp": "ffn_norms.post",
    "peri_ln_attn": "attn_norms.post", "peri_ln_mlp": "ffn_norms.post",
    "post_ln_attn": "attn_norms.after", "post_ln_mlp": "ffn_norms.after",
    "pre_ln": "norm",
}  # fmt: skip
ATTN = {"c_attn_q": "q_proj", "c_attn_k": "k_proj", "c_attn_v": "v_proj", "c_proj": "o_proj"}
MLP = {"c_fc": "up", "c_proj": "down", "c_fc_in1": "gate", "c_fc_in2": "up", "c_fc_out": "down"}
SKIPPED = re.compile(r"h\.\d+\.attn\.bias$")  # the causal-mask buffer
PARAM = {"gain": "weight", "weight": "weight", "bias": "bias"}


def _name(forge: str) -> str | None:
    """Our name for a Forge state-dict name (without ``transformer.``), or None when it has none."""
    simple = {"wte.weight": "embed.weight", "wpe.weight": "positions.embedding.weight", "lm_head.weight": "lm_head.weight",
              "scale_up.weight": "embed_proj.weight", "scale_down.weight": "head_proj.weight"}  # fmt: skip
    if forge in simple:
        return simple[forge]
    if m := re.fullmatch(r"ln_f\.(gain|weight|bias)", forge):
        return f"final_norm.{PARAM[m[1]]}"
    if m := re.fullmatch(r"h\.(\d+)\.(\w+)\.(gain|weight|bias)", forge):
        if m[2] in NORM_SLOTS:
            return f"blocks.{m[1]}.{NORM_SLOTS[m[2]]}.{PARAM[m[3]]}"
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
    hs = head_dim(args)
    perm = rope_permutation(hs, rope_length(args)) if args["use_rotary_embeddings"] else None
    k = int(args["mlp_down_projs"])
    out: dict[str, torch.Tensor] = {}
    for forge, tensor in ckpt.state.items():
        name = forge.removeprefix("transformer.")
        if SKIPPED.fullmatch(name):
            continue
        if re.fullmatch(r"h\.\d+\.mlp\.activation_[xy]_offset", name):
            if torch.count_nonzero(tensor):
                raise BuildError(f"{ckpt.path}: {forge} is {tensor.flatten()[0].item():g}: activation offsets are not in the dialect yet")
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
        out[ours] = tensor.contiguous()
    return out


def load_forge_weights(model: nn.Module, path: str, obj: object | None = None) -> list[str]:
    """Load the Forge checkpoint at ``path`` (``obj``: its loaded content) into ``model``; returns notes."""
    ckpt = forge_checkpoint(path, obj)
    state = forge_state(ckpt)
    own = model.state_dict()
    for name, tensor in own.items():  # Forge's LayerNorm without --bias has no shift: ours is zero then
        if name.endswith(".bias") and name not in state and name.removesuffix(".bias") + ".weight" in state and _is_norm(name):
            state[name] = torch.zeros_like(tensor)
    return load_weights(model, state, str(path))


def _is_norm(name: str) -> bool:
    return bool(re.search(r"(attn_norms|ffn_norms)\.\w+\.bias$|\.norm\.bias$|^final_norm\.bias$", name))
