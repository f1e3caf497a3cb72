"""``Generator``: a built folder on ONNX Runtime generating tokens with its KV cache kept between steps.

One prefill of the (left-padded) batch, then one token per step; each step feeds the presents back as the
past through ``runtime.stepper.GraphStepper``'s I/O binding, so on CUDA the cache never leaves the device.
No torch: the spec comes from ``model.yaml`` and the graph contract from the spec.

A full-window folder (no cache, ``IOContract.full_window``) recomputes the window at every step instead,
cropped to the last ``max_position_embeddings`` tokens as ReaLLM-Forge's sampler does: its prompts and its
generation may run past the context.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from yamlllm_export.errors import GenerationError
from yamlllm_export.runtime.folder_check import check_folder
from yamlllm_export.runtime.io_contract import IOContract
from yamlllm_export.runtime.sampling import SamplingOptions, next_tokens
from yamlllm_export.runtime.session import ORT_ERRORS, EpUnsupported, availability, cpu_session, one_line, open_session
from yamlllm_export.runtime.stepper import GraphStepper
from yamlllm_export.spec import ModelSpec, load_spec

if TYPE_CHECKING:
    import onnxruntime as ort

TokenCallback = Callable[[int, int], None]  # (row, token), called as each token is chosen


@dataclass(frozen=True)
class Generation:
    tokens: tuple[tuple[int, ...], ...]  # new tokens per prompt; a stop token ends a row and is not included
    finish_reasons: tuple[str, ...]  # "stop" (a stop token) or "length" (max_new_tokens or the context)
    prefill_seconds: float
    decode_seconds: float  # the steps after the prefill
    steps: int  # forward passes after the prefill

    @property
    def decode_tokens_per_second(self) -> float:
        """Batch tokens per second of the decode steps (one token per row per step)."""
        return self.steps * len(self.tokens) / self.decode_seconds if self.decode_seconds else 0.0


class Generator:
    """A model folder ready to generate: ``Generator("out/tiny").generate([[1, 2, 3]], max_new_tokens=8)``."""

    def __init__(self, folder: str | Path, *, ep: str = "cpu", threads: int = 0, verify: bool | None = False) -> None:
        """``verify``: hash every file build.json records; False: only those whose size or mtime moved; None: the
        caller checked the folder (``runtime.folder_check.check_folder``)."""
        folder = Path(folder)
        if not (folder / "model.onnx").is_file() or not (folder / "model.yaml").is_file():
            raise GenerationError(f"{folder}: not a model folder (needs model.onnx and model.yaml from `yamlllm-export build`)")
        if verify is not None:
            check_folder(folder, full=verify)
        self.folder = folder
        self.spec: ModelSpec = load_spec(folder / "model.yaml")
        self.contract = IOContract.for_spec(self.spec)
        self.stepper = GraphStepper.for_session(_session(folder, ep, threads), self.contract, device=ep)

    @property
    def stop_tokens(self) -> tuple[int, ...]:
        return self.spec.tokens.eos_token_id

    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        *,
        max_new_tokens: int = 64,
        sampling: SamplingOptions | None = None,
        stop_tokens: Sequence[int] | None = None,
        on_token: TokenCallback | None = None,
    ) -> Generation:
        """Continue each prompt (token ids); prompts of different lengths are left-padded into one batch.

        ``stop_tokens``: None = the spec's ``tokens.eos_token_id``; ``()`` = none. Generation ends at
        ``max_new_tokens`` or where the longest prompt reaches ``embedding.max_position_embeddings`` (a
        full-window folder crops the window there instead and goes on).
        """
        sampling = sampling or SamplingOptions()
        stops = np.array(self.stop_tokens if stop_tokens is None else tuple(stop_tokens), dtype=np.int64)
        ids, mask = self._left_pad(prompts)
        batch, vocab = ids.shape[0], self.contract.vocab_size
        room = self.spec.embedding.max_position_embeddings - ids.shape[1]
        budget = max_new_tokens if self.contract.full_window else min(max_new_tokens, room)
        rng = np.random.default_rng(sampling.seed)
        seen = np.zeros((batch, vocab), dtype=bool)
        seen[np.repeat(np.arange(batch), mask.sum(axis=1)), ids[mask.astype(bool)]] = True
        out: list[list[int]] = [[] for _ in range(batch)]
        done = np.zeros(batch, dtype=bool)
        stopped = np.zeros(batch, dtype=bool)

        started = time.perf_counter()
        logits, past = self._step(ids, mask, self.stepper.empty_past(batch))
        prefilled = time.perf_counter()
        steps = 0
        for n in range(budget):
            chosen = next_tokens(logits[:, -1], seen, sampling, rng)
            stopped |= ~done & np.isin(chosen, stops)
            for row in np.flatnonzero(~stopped & ~done):
                out[row].append(int(chosen[row]))
                if on_token is not None:
                    on_token(int(row), int(chosen[row]))
            done |= stopped
            seen[np.arange(batch), chosen] = True
            if done.all() or n == budget - 1:
                break
            mask = np.concatenate([mask, np.ones((batch, 1), dtype=np.int64)], axis=1)  # finished rows idle along
            logits, past = self._step(chosen[:, None], mask, past)
            steps += 1
        return Generation(
            tokens=tuple(tuple(row) for row in out),
            finish_reasons=tuple("stop" if s else "length" for s in stopped),
            prefill_seconds=prefilled - started,
            decode_seconds=time.perf_counter() - prefilled,
            steps=steps,
        )

    def _left_pad(self, prompts: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
        if not prompts or any(len(p) == 0 for p in prompts):
            raise GenerationError("every prompt needs at least one token")
        vocab, context = self.contract.vocab_size, self.spec.embedding.max_position_embeddings
        longest = max(len(p) for p in prompts)
        if longest >= context and not self.contract.full_window:
            raise GenerationError(
                f"a prompt of {longest} tokens leaves no room in the context of {context} (embedding.max_position_embeddings)"
            )
        pad = self.spec.tokens.pad_token_id or 0  # any id serves: the mask hides it
        ids = np.full((len(prompts), longest), pad, dtype=np.int64)
        mask = np.zeros((len(prompts), longest), dtype=np.int64)
        for row, prompt in enumerate(prompts):
            bad = [t for t in prompt if not 0 <= t < vocab]
            if bad:
                raise GenerationError(f"prompt {row}: token id {bad[0]} is outside the vocabulary [0, {vocab})")
            ids[row, longest - len(prompt) :] = prompt
            mask[row, longest - len(prompt) :] = 1
        return ids, mask

    def _step(self, ids: np.ndarray, mask: np.ndarray, past: list[ort.OrtValue]) -> tuple[np.ndarray, list[ort.OrtValue]]:
        try:
            return self.stepper.step(ids, mask, past)
        except ORT_ERRORS as err:
            raise GenerationError(f"{self.folder}: onnxruntime refused a step: {one_line(err)}") from err


def _session(folder: Path, ep: str, threads: int) -> object:
    if ep == "cpu":
        return cpu_session(folder, threads=threads)
    usable = availability(ep)
    if not usable.usable:
        raise GenerationError(f"--ep {ep}: {usable.reason}")
    try:
        return open_session(folder, ep)
    except EpUnsupported as err:
        raise GenerationError(f"--ep {ep}: {err}") from err
