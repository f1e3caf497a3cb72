"""The terminal side of ``yamlllm-export generate``: prompts from the command line, tokens streamed to stdout.

Kept beside ``cli.py`` (the only other module that knows the terminal) so the click command stays a few lines.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import click

from yamlllm_export.errors import GenerationError
from yamlllm_export.runtime import Generator, SamplingOptions
from yamlllm_export.runtime.folder_check import check_folder


def parse_ids(text: str) -> list[int]:
    """``"1 15043, 3186"`` → [1, 15043, 3186]."""
    parts = [p for p in re.split(r"[\s,]+", text.strip()) if p]
    if not parts or not all(re.fullmatch(r"\d+", p) for p in parts):
        raise GenerationError(f'--prompt-ids: {text!r} is not a list of token ids (e.g. "1 15043 3186")')
    return [int(p) for p in parts]


class _TextStream:
    """Prints the decoded continuation as it grows; waits while the tail is an incomplete UTF-8 sequence."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer, self.printed = tokenizer, ""
        self.ids: list[int] = []

    def __call__(self, _row: int, token: int) -> None:
        self.ids.append(token)
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if text.startswith(self.printed) and not text.endswith("\ufffd"):
            click.echo(text[len(self.printed) :], nl=False)
            sys.stdout.flush()
            self.printed = text


def run_generate(
    folder: Path,
    texts: tuple[str, ...],
    id_lists: tuple[str, ...],
    *,
    max_new_tokens: int,
    temperature: float | None,
    top_k: int | None,
    top_p: float | None,
    repetition_penalty: float,
    seed: int | None,
    stops: tuple[int, ...],
    ep: str,
    stats: bool,
    verify: bool = False,
) -> None:
    if bool(texts) == bool(id_lists):
        raise GenerationError("give the prompt as --prompt TEXT or as --prompt-ids IDS (one of the two)")
    check_folder(folder, full=verify)  # before the tokenizer: a changed tokenizer.json is named as such
    tokenizer = None
    if texts:
        from yamlllm_export.runtime.tokenizer import load_tokenizer

        tokenizer = load_tokenizer(folder)  # before the session: the missing-tokenizer error comes at once
    sampling = SamplingOptions(
        do_sample=temperature is not None or top_k is not None or top_p is not None,
        temperature=1.0 if temperature is None else temperature,
        top_k=top_k or 0,
        top_p=1.0 if top_p is None else top_p,
        repetition_penalty=repetition_penalty,
        seed=seed,
    )
    generator = Generator(folder, ep=ep, verify=None)  # checked above
    prompts = [tokenizer.encode(t).ids for t in texts] if tokenizer else [parse_ids(t) for t in id_lists]
    stream = len(prompts) == 1
    if stream and tokenizer is not None:
        on_token: Any = _TextStream(tokenizer)
    elif stream:
        on_token = lambda _row, token: click.echo(f"{token} ", nl=False)  # noqa: E731
    else:
        on_token = None
    result = generator.generate(prompts, max_new_tokens=max_new_tokens, sampling=sampling, stop_tokens=stops or None, on_token=on_token)
    if stream:
        click.echo()
    else:
        for tokens in result.tokens:
            click.echo(tokenizer.decode(list(tokens), skip_special_tokens=True) if tokenizer else " ".join(map(str, tokens)))
    if stats:
        new = sum(len(t) for t in result.tokens)
        click.echo(
            f"{len(prompts)} prompt(s), {sum(map(len, prompts))} prompt tokens, {new} new tokens "
            f"({', '.join(result.finish_reasons)}); prefill {result.prefill_seconds * 1e3:.1f} ms, "
            f"decode {result.decode_tokens_per_second:.1f} tok/s",
            err=True,
        )
