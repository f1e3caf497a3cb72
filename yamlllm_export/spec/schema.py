"""The JSON Schema (draft 2020-12) of the YamlLLM dialect, and the defaults it declares."""

from __future__ import annotations

import copy
import functools
import json
from importlib import resources
from typing import Any

import jsonschema


@functools.cache
def schema() -> dict[str, Any]:
    """The schema as a dict (the file ``schemas/yamlllm.schema.json`` links to)."""
    text = resources.files("yamlllm_export.spec").joinpath("yamlllm.schema.json").read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


@functools.cache
def validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(schema())


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
