"""The same generation loop in PyTorch: the folder's own reference model (``export.reference``), eager or
under ``torch.compile``, on the CPU or a CUDA device, with the explicit cache the ONNX graph has."""

from __future__ import annotations

import time

import torch

from yamlllm_export.bench.types import Round, System, Workload
from yamlllm_export.export.reference import load_reference, read_build_info


class TorchRunner:
    def __init__(self, system: System, workload: Workload) -> None:
        self.device = torch.device("cuda" if system.ep == "cuda" else "cpu")
        model = load_reference(system.folder).eval().to(self.device)
        dtype = read_build_info(system.folder).get("dtype", "float32")
        if self.device.type == "cuda" and dtype == "float32":
            torch.backends.cuda.matmul.allow_tf32 = False  # ORT's CUDA run is IEEE fp32 too (see runtime.session)
        self.model = torch.compile(model, dynamic=True) if system.kind == "compile" else model
        self.empty_cache = model.empty_cache
        self.workload = workload
        gen = torch.Generator().manual_seed(workload.seed)
        vocab = model.embed.num_embeddings
        self.prompt = torch.randint(3, vocab, (workload.batch, workload.prompt_len), generator=gen).to(self.device)
        self.mask = torch.ones(workload.batch, workload.prompt_len + workload.gen_len, dtype=torch.int64, device=self.device)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    @torch.inference_mode()
    def round(self) -> Round:
        w = self.workload
        self._sync()
        start = time.perf_counter()
        logits, past = self.model(self.prompt, self.mask[:, : w.prompt_len], None, self.empty_cache(w.batch))
        token = logits[:, -1:].argmax(-1)  # (B, 1)
        self._sync()
        prefill = time.perf_counter() - start
        start = time.perf_counter()
        for i in range(w.gen_len):
            logits, past = self.model(token, self.mask[:, : w.prompt_len + i + 1], None, past)
            token = logits[:, -1:].argmax(-1)
        self._sync()
        return Round(prefill_s=prefill, decode_s=time.perf_counter() - start)
