"""The same generation loop in PyTorch: the folder's own reference model (``export.reference``) on the CPU
or a CUDA device, computing the last position's logits only, as generation (and a ``--logits last`` build)
does. A full-window folder (no cache) recomputes the window at every step (``export.reference.WindowRecompute``).

``eager``: the module as exported: its cache is the contract's ``present = past ++ new`` (a ``torch.cat``
per layer and step). ``compile``: ``torch.compile`` of the same module with gpt-fast's static cache
(``bench/static_cache.py``): buffers allocated once, written in place.
"""

from __future__ import annotations

import time

import torch

from yamlllm_export.bench.static_cache import StaticCache
from yamlllm_export.bench.types import Round, System, Workload
from yamlllm_export.export.reference import WindowRecompute, load_reference, read_build_info
from yamlllm_export.spec import load_spec


class TorchRunner:
    def __init__(self, system: System, workload: Workload) -> None:
        self.device = torch.device("cuda" if system.ep == "cuda" else "cpu")
        model = load_reference(system.folder).eval().to(self.device)
        dtype = read_build_info(system.folder).get("dtype", "float32")
        if self.device.type == "cuda" and dtype == "float32":
            torch.backends.cuda.matmul.allow_tf32 = False  # ORT's CUDA run is IEEE fp32 too (see runtime.session)
        self.static = StaticCache(model, workload.batch, workload.prompt_len + workload.gen_len) if system.kind == "compile" else None
        self.model = torch.compile(model, dynamic=True) if self.static else model
        self.empty_cache = model.empty_cache
        self.full_window = read_build_info(system.folder).get("cache", "kv") != "kv"
        if self.full_window:  # no cache: recompute the window at every step, as the folder's ORT row does
            window = load_spec(f"{system.folder}/model.yaml").embedding.max_position_embeddings
            self.model = WindowRecompute(model, window)
        self.workload = workload
        gen = torch.Generator().manual_seed(workload.seed)
        vocab = model.embed.num_embeddings
        self.prompt = torch.randint(3, vocab, (workload.batch, workload.prompt_len), generator=gen).to(self.device)
        self.mask = torch.ones(workload.batch, workload.prompt_len + workload.gen_len, dtype=torch.int64, device=self.device)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def _step(self, ids: torch.Tensor, length: int, presents: list | None) -> tuple[torch.Tensor, list]:
        """Logits (B, 1, V) of the last position and the cache after ``ids`` joined ``length`` cached tokens."""
        past = self.static.past(length) if self.static else presents
        return self.model(ids, self.mask[:, : length + ids.shape[1]], None, past, last_logits=True)

    @torch.inference_mode()
    def round(self) -> Round:
        w = self.workload
        self._sync()
        start = time.perf_counter()
        logits, past = self._step(self.prompt, 0, None if self.full_window else self.empty_cache(w.batch))
        token = logits[:, -1:].argmax(-1)  # (B, 1)
        self._sync()
        prefill = time.perf_counter() - start
        start = time.perf_counter()
        for i in range(w.gen_len):
            logits, past = self._step(token, w.prompt_len + i, past)
            token = logits[:, -1:].argmax(-1)
        self._sync()
        return Round(prefill_s=prefill, decode_s=time.perf_counter() - start)
