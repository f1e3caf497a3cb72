"""The JSON Schema (draft 2020-12) of the YamlLLM dialect, the defaults it declares, and the validator that
applies it with one rule JSON Schema cannot say: every number is a finite float32 (see ``_finite_numbers``)."""

from __future__ import annotations

import copy
import functools
import json
import math
from collections.abc import Iterator
from importlib import resources
from typing import Any

import jsonschema
from jsonschema import ValidationError

# The model computes in float32 (or narrower): a spec number outside float32's normal range is an overflow or an
# underflow to zero waiting to happen (rope_theta 1e300 is inf in float32, an eps of 1e-320 is 0).
FLOAT32_MAX = 3.4028234663852886e38
FLOAT32_TINY = 1.1754943508222875e-38  # smallest normal float32
INT64_MAX = 2**63 - 1  # sizes and token ids become ONNX int64 dims and tensors


@functools.cache
def schema() -> dict[str, Any]:
    """The schema as a dict (the file ``schemas/yamlllm.schema.json`` links to)."""
    text = resources.files("yamlllm_export.spec").joinpath("yamlllm.schema.json").read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def brief(value: int | float) -> str:
    """A number in at most a dozen characters: ``1e+300``, or for an int past float's range its digit count."""
    if isinstance(value, int) and abs(value) >= 10**300:
        return f"an integer of {len(str(abs(value)))} digits"
    return f"{value:.6g}"


def number_problem(value: Any) -> str | None:
    """Why ``value`` (a JSON number) cannot be a number of the spec, or None: NaN and ±inf never (JSON Schema's
    bounds all pass NaN, and YAML's ``.nan`` / ``.inf`` and Python's json ``NaN`` / ``Infinity`` read as floats),
    nor magnitudes outside float32's normal range (zero, signed or not, is fine)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return f"{value} is not a finite number"
    if abs(value) > FLOAT32_MAX:
        return f"{brief(value)} overflows float32 (largest {FLOAT32_MAX:.6g})"
    if value and abs(value) < FLOAT32_TINY:
        return f"{value:.6g} underflows float32 (smallest normal {FLOAT32_TINY:.6g}; 0 is allowed where the range admits it)"
    return None


def _finite_numbers(check: jsonschema.protocols.Validator, types: Any, instance: Any, node: dict[str, Any]) -> Iterator[ValidationError]:
    """The ``type`` keyword, and for a node whose type admits ``number``: ``number_problem``, unless the node says
    ``"x-nonfinite": true`` (NaN and ±inf then pass, the float32 range still applies to finite values)."""
    yield from jsonschema.Draft202012Validator.VALIDATORS["type"](check, types, instance, node)
    kinds = types if isinstance(types, list) else [types]
    if "integer" in kinds and check.is_type(instance, "integer") and abs(instance) > INT64_MAX:
        yield ValidationError(f"{brief(instance)} does not fit int64 (largest {INT64_MAX})", validator="finite")
    if "number" not in kinds or not check.is_type(instance, "number"):
        return
    if node.get("x-nonfinite") and isinstance(instance, float) and not math.isfinite(instance):
        return
    problem = number_problem(instance)
    if problem:
        yield ValidationError(problem, validator="finite")  # load.py names it before a bound NaN or inf also breaks


def _is_integer(checker: Any, instance: Any) -> bool:
    """An int, not a float with no fraction as JSON Schema has it: ``num_layers: 2.0`` or ``num_heads: 1e300``
    would reach ``range`` and shape arithmetic as floats."""
    return isinstance(instance, int) and not isinstance(instance, bool)


SpecValidator = jsonschema.validators.extend(  # type: ignore[no-untyped-call]  # untyped in types-jsonschema
    jsonschema.Draft202012Validator,
    {"type": _finite_numbers},
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_integer),
)


@functools.cache
def validator() -> jsonschema.protocols.Validator:
    validator: jsonschema.protocols.Validator = SpecValidator(schema())
    return validator


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    """Follow a local ``$ref`` (the only kind this schema uses), keeping sibling keywords such as ``default``."""
    if "$ref" not in node:
        return node
    target = schema()["$defs"][node["$ref"].rsplit("/", 1)[-1]]
    return {**target, **{k: v for k, v in node.items() if k != "$ref"}}


def _object_branch(node: dict[str, Any]) -> dict[str, Any] | None:
    node = _resolve(node)
    if node.get("type") == "object":
        return node
    for option in node.get("oneOf", []):
        option = _resolve(option)
        if option.get("type") == "object":
            return option
    return None


def fill_defaults(data: dict[str, Any], node: dict[str, Any] | None = None) -> dict[str, Any]:
    """Return a copy of schema-valid ``data`` with every ``default`` of the schema filled in, recursively."""
    node = _object_branch(node or schema())
    out = copy.deepcopy(data)
    if node is None:
        return out
    for key, sub in node.get("properties", {}).items():
        sub_resolved = _resolve(sub)
        if key not in out and "default" in sub_resolved:
            out[key] = copy.deepcopy(sub_resolved["default"])
        if isinstance(out.get(key), dict):
            out[key] = fill_defaults(out[key], sub)
    return out


def _admits_number(node: dict[str, Any]) -> bool:
    node = _resolve(node)
    kinds = node.get("type", [])
    if "number" in (kinds if isinstance(kinds, list) else [kinds]):
        return True
    return any(_admits_number(option) for option in node.get("oneOf", []) + node.get("anyOf", []))


def coerce_numbers(data: dict[str, Any], node: dict[str, Any] | None = None) -> None:
    """In place: every int (not bool) in ``data`` where the schema's type is ``number`` becomes a float (JSON
    Schema's number admits ints; the typed spec holds floats), recursively through objects and arrays."""
    node = _object_branch(node or schema())
    if node is None:
        return
    for key, sub in node.get("properties", {}).items():
        value = data.get(key)
        if isinstance(value, dict):
            coerce_numbers(value, sub)
        elif isinstance(value, list):
            items = _resolve(sub).get("items")
            for item in value:
                if isinstance(item, dict) and items is not None:
                    coerce_numbers(item, items)
        elif isinstance(value, int) and not isinstance(value, bool) and _admits_number(sub):
            data[key] = float(value)


@functools.cache
def max_depth(node_json: str | None = None) -> int:
    """Levels of the deepest value the schema admits (the top mapping is level 1, a number in
    ``embedding.positional_encoding.rope_scaling.short_factor`` level 6); the YAML reader's nesting limit leaves
    room above it."""
    node = _resolve(json.loads(node_json)) if node_json else schema()
    children = list(node.get("properties", {}).values())
    children += [node["items"]] if isinstance(node.get("items"), dict) else []
    options = node.get("oneOf", []) + node.get("anyOf", [])
    below = [max_depth(json.dumps(o, sort_keys=True)) - 1 for o in options]  # an option sits at the node's own level
    below += [max_depth(json.dumps(c, sort_keys=True)) for c in children]
    return 1 + max(below, default=0)
