"""The plain-ORT generation loop every ONNX system runs: our folders and the peers' alike.

A session per folder (``runtime.session.open_session``, default threading: one intra-op thread per
physical core) driven by ``runtime.stepper.GraphStepper`` (I/O binding; presents stay where the EP put
them and go back in as the next past, no copies). Foreign folders (onnxruntime-genai builder, mobius)
follow the same input/output names; their contract is read off the session's inputs.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from yamlllm_export.bench.types import Round, System, Workload
from yamlllm_export.runtime.io_contract import CacheTensor, IOContract
from yamlllm_export.runtime.session import open_session
from yamlllm_export.runtime.stepper import GraphStepper


def contract_for(folder: Path, session: ort.InferenceSession, head_dim: int | None) -> IOContract:
    """Our folders: from model.yaml. Others: layers, KV heads and head size from the past inputs' shapes
    (a symbolic head size from ``head_dim`` or genai_config.json's ``decoder.head_size``)."""
    if (folder / "model.yaml").is_file() and (folder / "build.json").is_file():
        from yamlllm_export.spec import load_spec

        return IOContract.for_spec(load_spec(folder / "model.yaml"))
    inputs = {i.name: i.shape for i in session.get_inputs()}
    layers = sum(1 for n in inputs if n.startswith("past_key_values.") and n.endswith(".key"))
    _, heads, _, dim = inputs["past_key_values.0.key"]
    if not isinstance(dim, int):
        genai = folder / "genai_config.json"
        dim = head_dim or json.loads(genai.read_text())["model"]["decoder"]["head_size"]
    vocab = session.get_outputs()[0].shape[-1]
    cache = (CacheTensor("key", int(heads), int(dim)), CacheTensor("value", int(heads), int(dim)))
    return IOContract(num_layers=layers, vocab_size=int(vocab), has_position_ids="position_ids" in inputs, cache=cache)


class OrtRunner:
    def __init__(self, system: System, workload: Workload) -> None:
        folder = Path(system.folder)
        self.session = open_session(folder, system.ep)
        self.stepper = GraphStepper.for_session(self.session, contract_for(folder, self.session, system.head_dim), device=system.ep)
        self.workload = workload
        rng = np.random.default_rng(workload.seed)
        vocab = self.stepper.contract.vocab_size
        self.prompt = rng.integers(3, vocab, size=(workload.batch, workload.prompt_len), dtype=np.int64)
        self.mask = np.ones((workload.batch, workload.prompt_len + workload.gen_len), dtype=np.int64)  # sliced per step

    def round(self) -> Round:
        w = self.workload
        start = time.perf_counter()
        logits, past = self.stepper.step(self.prompt, self.mask[:, : w.prompt_len], self.stepper.empty_past(w.batch))
        prefill = time.perf_counter() - start
        token = logits[:, -1].argmax(-1)[:, None]  # (B, 1): logits may hold every position or the last only
        start = time.perf_counter()
        for i in range(w.gen_len):
            logits, past = self.stepper.step(token, self.mask[:, : w.prompt_len + i + 1], past)
            token = logits[:, -1].argmax(-1)[:, None]
        return Round(prefill_s=prefill, decode_s=time.perf_counter() - start)
