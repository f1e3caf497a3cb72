"""The weights ``build_model(spec, seed=, dtype=)`` makes, produced one parameter at a time.

A streamed build never holds the whole model: it records the RNG state before each initialisation step
(``init.init_steps``) in one pass over the stream, then regenerates any parameter on demand from its
step's state. The values are bit-identical to ``build_model``'s: the same steps fill fresh float32 tensors
of the same shapes from the same RNG states, then the same fixups (``init.init_fixups``) and cast apply.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from yamlllm_export.model.builders import DTYPES, skeleton
from yamlllm_export.model.init import InitStep, init_fixups, init_steps
from yamlllm_export.spec.types import ModelSpec


class SeededWeights:
    """``value(name)``: the state-dict tensor ``name`` of ``build_model(spec, seed=seed, dtype=dtype)``;
    ``buffers``: its (small, non-persistent) buffers, computed as there. ``model``: the skeleton on the
    meta device, for names and shapes."""

    def __init__(self, spec: ModelSpec, *, seed: int, dtype: str) -> None:
        self.dtype = DTYPES[dtype]
        self.model = skeleton(spec)
        self.buffers = _buffers(self.model, self.dtype)
        init = spec.initialization
        self._steps = init_steps(
            self.model, scheme=init.type, num_layers=spec.num_layers, gain=init.gain, std=init.std,
            residual_scale=init.gpt2_residual_scale,
        )  # fmt: skip
        self._fixes = init_fixups(self.model, spec.embedding.padding_idx)
        self._params = dict(self.model.named_parameters(remove_duplicate=False))
        self._last = {id(p): i for i, step in enumerate(self._steps) for p in step.params}  # a tied weight: its last step
        fixed = {id(p) for p, _ in self._fixes}
        missing = [n for n, p in self._params.items() if id(p) not in self._last and id(p) not in fixed]
        if missing:
            raise ValueError(f"no initialisation step writes {missing[0]}")
        self._states = _rng_states(self._steps, seed)

    def names(self) -> list[str]:
        """Every state-dict name (a tied weight under each of its names)."""
        return list(self.model.state_dict(keep_vars=True))

    def value(self, name: str) -> torch.Tensor:
        param = self._params[name]
        if id(param) in self._last:
            index = self._last[id(param)]
            step = self._steps[index]
            fresh = _fresh(step)
            with torch.random.fork_rng(devices=[]):
                torch.set_rng_state(self._states[index])
                step.fill(fresh)
            tensor = fresh[next(i for i, p in enumerate(step.params) if p is param)]
        else:  # written by a fixup alone (sinks under the default scheme)
            tensor = torch.empty(param.shape, dtype=param.dtype)
        for target, fix in self._fixes:
            if target is param:
                fix(tensor)
        return tensor.to(self.dtype)

    def items(self) -> Iterator[tuple[str, torch.Tensor]]:
        """(name, tensor) in name order, one tensor alive at a time (what ``weights_sha256`` hashes)."""
        for name in sorted(self.names()):
            yield name, self.value(name)


def _fresh(step: InitStep) -> list[torch.Tensor]:
    return [torch.empty(p.shape, dtype=p.dtype) for p in step.params]


@torch.no_grad()
def _rng_states(steps: list[InitStep], seed: int) -> list[torch.Tensor]:
    """The CPU RNG state before each step, walking the stream once as ``init_weights`` does."""
    states = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for step in steps:
            states.append(torch.get_rng_state())
            step.fill(_fresh(step))
    return states


def _buffers(model: nn.Module, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Every buffer, materialised and computed as ``build_model`` does (float ones cast to ``dtype``)."""
    out, done = {}, set()
    for prefix, module in model.named_modules(remove_duplicate=False):  # a shared table under each of its names
        if id(module) not in done and any(True for _ in module.buffers(recurse=False)):
            done.add(id(module))
            module.to_empty(device="cpu", recurse=False)
            if hasattr(module, "reset_buffers"):
                module.reset_buffers()
        for name, b in module.named_buffers(recurse=False):
            out[f"{prefix}.{name}" if prefix else name] = b.to(dtype) if b.is_floating_point() else b
    return out
