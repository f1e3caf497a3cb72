"""Registering our custom ops so the PyTorch model stays trainable.

The ops define no backward. ``custom_op`` registers ``fn`` as ``yamlllm::<name>`` and returns a callable
that dispatches to the registered op when autograd is off (inference, ``torch.export``, which the writer
runs under ``no_grad``) and to ``fn`` itself when gradients are wanted. Both run the same Python code, so
the model has exactly one reference implementation.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Protocol, cast

import torch


class CustomOp(Protocol):
    """What ``custom_op`` returns: the dispatching callable, with the registered op as ``.op``."""

    op: Any  # torch.library's CustomOpDef

    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...


def custom_op(name: str) -> Callable[[Callable[..., Any]], CustomOp]:
    def wrap(fn: Callable[..., Any]) -> CustomOp:
        op = torch.library.custom_op(f"yamlllm::{name}", mutates_args=())(fn)

        @functools.wraps(fn)
        def call(*args: Any, **kwargs: Any) -> Any:
            return fn(*args, **kwargs) if torch.is_grad_enabled() else op(*args, **kwargs)

        entry = cast(CustomOp, call)  # the function object, which carries the op from here on
        entry.op = op  # register_fake on it; the lowering tables key on torch.ops.yamlllm.<name>.default
        return entry

    return wrap
