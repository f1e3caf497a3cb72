"""What a benchmark runs (``System``, ``Workload``) and what one round of it measured (``Round``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

# ORT session; PyTorch eager (the exported module, cache by torch.cat); torch.compile with a static cache; read bandwidth
KINDS = ("ort", "eager", "compile", "bandwidth")


@dataclass(frozen=True)
class Workload:
    prompt_len: int = 128
    gen_len: int = 64
    batch: int = 1
    seed: int = 0  # of the random prompt tokens

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ModelInfo:
    """Sizes of the model a system runs; ``weight_bytes_per_token`` is what one decode step must read (every
    weight but the embedding table, of which a step gathers one row per token)."""

    parameter_count: int
    weight_bytes_per_token: int
    kv_cache_bytes_per_token: int
    build_seconds: float | None = None
    logits: str | None = None  # the build's ``--logits`` (build.json), None for folders of other exporters
    cache: str | None = None  # "kv", or "window": a full-window graph recomputes the window each step (build.json)


@dataclass(frozen=True)
class System:
    """One column of the comparison: ``kind`` runs ``folder`` (a model folder with model.onnx, and for the
    PyTorch kinds model.yaml + build.json) on ``ep``."""

    label: str
    kind: str
    folder: str = ""
    ep: str = "cpu"
    head_dim: int | None = None  # for foreign folders whose cache head size is symbolic in the graph
    info: ModelInfo | None = None
    options: dict = field(default_factory=dict)  # kind-specific: {"profile": dir} for ort

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Round:
    """One measured round: the prompt in one forward, then ``gen_len`` single-token decode steps (greedy)."""

    prefill_s: float
    decode_s: float  # all decode steps together
    bandwidth_gbs: float | None = None  # bandwidth probe only
