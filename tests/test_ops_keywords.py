"""The attention ops are called by keyword: each has a thin wrapper whose arguments are all keyword-only and
are exactly the registered op's, so a call site names what it passes and cannot swap two of one type."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from yamlllm_export import ops
from yamlllm_export.ops.attention import attention_op
from yamlllm_export.ops.complex_attention import complex_attention_op
from yamlllm_export.ops.mla_attention import mla_attention_op

WRAPPERS = [(ops.attention, attention_op), (ops.complex_attention, complex_attention_op), (ops.mla_attention, mla_attention_op)]
MODEL = Path(__file__).resolve().parents[1] / "yamlllm_export" / "model"


@pytest.mark.parametrize(("wrapper", "op"), WRAPPERS, ids=lambda x: getattr(x, "__name__", ""))
def test_wrapper_is_keyword_only_over_the_op_schema(wrapper, op) -> None:  # noqa: ANN001
    params = inspect.signature(wrapper).parameters
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params.values())
    schema = inspect.signature(op).parameters
    assert list(params) == list(schema)
    assert [p.default for p in params.values()] == [p.default for p in schema.values()]
    with pytest.raises(TypeError, match="positional"):
        wrapper(*[None] * 3)


@pytest.mark.parametrize("module", ["attention.py", "mla.py"])
def test_model_call_sites_name_every_argument(module: str) -> None:
    tree = ast.parse((MODEL / module).read_text())
    calls = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and ast.unparse(node.func) in ("self.kernel", "ops.attention", "ops.complex_attention", "ops.mla_attention")
    ]
    assert calls
    for call in calls:
        assert not call.args, f"{module}:{call.lineno}: positional arguments to {ast.unparse(call.func)}"
