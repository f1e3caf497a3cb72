"""Teacher-forced parity: the exported graph on ONNX Runtime vs the PyTorch model, prefill + KV-cache decode.

Both sides get the same tokens at every step (teacher forcing), each keeps its own cache, and the logits of
every valid position are compared. NaN anywhere in the ONNX output is a failure, reported as ``inf``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from yamlllm_export.export.io_contract import IOContract
from yamlllm_export.validate.session import run_step


@dataclass(frozen=True)
class StepDiff:
    step: str  # "prefill" or "decode 1" ...
    max_abs: float  # over valid positions; inf when the ONNX output holds a NaN anywhere
    worst_row: int


def padded_batch(lengths: list[int], vocab: int, side: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random prompts of the given lengths padded to the longest on ``side`` ('left' or 'right'); pad id 0."""
    width = max(lengths)
    ids = np.zeros((len(lengths), width), dtype=np.int64)
    mask = np.zeros_like(ids)
    for row, n in enumerate(lengths):
        cols = slice(width - n, width) if side == "left" else slice(0, n)
        ids[row, cols] = rng.integers(1, vocab, n)
        mask[row, cols] = 1
    return ids, mask


def _diff(step: str, ref: np.ndarray, got: np.ndarray, valid: np.ndarray) -> StepDiff:
    if np.isnan(got).any():
        return StepDiff(step, float("inf"), int(np.argwhere(np.isnan(got))[0][0]))
    err = np.abs(ref - got).max(axis=-1) * valid  # (B, S)
    row = int(np.unravel_index(err.argmax(), err.shape)[0])
    return StepDiff(step, float(err.max()), row)


@torch.no_grad()
def teacher_forced(
    model: torch.nn.Module,
    session: object,
    contract: IOContract,
    *,
    lengths: list[int],
    side: str,
    decode_steps: int,
    seed: int = 0,
) -> list[StepDiff]:
    """Prefill a padded batch, then ``decode_steps`` single-token steps feeding presents back as past."""
    rng = np.random.default_rng(seed)
    ids, mask = padded_batch(lengths, contract.vocab_size, side, rng)
    past_np = [np.zeros((len(lengths), contract.num_kv_heads, 0, contract.head_dim), dtype=np.float32) for _ in contract.past_names()]
    past_t = None
    diffs = []
    for step in range(decode_steps + 1):
        ref, past_t = model(torch.from_numpy(ids), torch.from_numpy(mask), None, past_t)
        got, past_np = run_step(session, contract, ids, mask, past_np)
        valid = mask[:, -ids.shape[1] :]
        diffs.append(_diff("prefill" if step == 0 else f"decode {step}", ref.float().numpy(), got.astype(np.float32), valid))
        ids = rng.integers(1, contract.vocab_size, (len(lengths), 1))
        mask = np.concatenate([mask, np.ones_like(ids)], axis=1)
    return diffs
