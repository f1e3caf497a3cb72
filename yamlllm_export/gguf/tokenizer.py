"""``tokenizer.json`` from a GGUF file's ``tokenizer.ggml.*`` metadata, through transformers' own GGUF
vocabulary converter (GPT-2 BPE and SentencePiece vocabularies), so ``generate --prompt TEXT`` and
onnxruntime-genai work on a folder built from the file."""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import tempfile
from pathlib import Path

from yamlllm_export.runtime.tokenizer import BESIDE, TOKENIZER_JSON, tokenizer_files


def write_gguf_tokenizer(gguf_path: str | Path, vocab_size: int, folder: Path) -> list[str]:
    """Write tokenizer.json (and tokenizer_config.json) into ``folder``; returns notes (why not, if not)."""
    from yamlllm_export.errors import BuildError
    from yamlllm_export.gguf.reader import read_gguf

    path = Path(gguf_path)
    if "tokenizer.ggml.model" not in read_gguf(path).meta:
        return [f"{path.name}: no tokenizer metadata; no tokenizer.json written (give one with --tokenizer)"]
    try:
        from transformers import AutoTokenizer
    except ImportError:
        return [f"{path.name}: tokenizer.json not written: converting a GGUF vocabulary needs transformers (pip install transformers)"]
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stderr(io.StringIO()):
        level = logging.getLogger("transformers").level
        logging.getLogger("transformers").setLevel(logging.ERROR)
        try:
            AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name).save_pretrained(tmp)
        except (ValueError, KeyError, OSError, TypeError) as err:
            return [
                f"{path.name}: tokenizer.json not written: transformers cannot convert its vocabulary ({str(err).splitlines()[0][:160]})"
            ]
        finally:
            logging.getLogger("transformers").setLevel(level)
        try:
            files = tokenizer_files(tmp, vocab_size)
        except BuildError as err:
            return [f"{path.name}: tokenizer.json not written: {str(err).removeprefix('--tokenizer: ')}"]
        for f in files:
            if f.name in (TOKENIZER_JSON, *BESIDE):
                shutil.copyfile(f, folder / f.name)
    return []
