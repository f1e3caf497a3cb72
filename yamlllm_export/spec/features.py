"""Which lowering targets can express which spec features, read from the schema's annotations.

The schema is the one home of this knowledge: a property carries ``x-feature`` (its name in the feature
table) and, when not every target can express it, ``x-targets`` (those that can); an enum carries
``x-values`` mapping a value to ``{feature, targets}``. A feature is *used* by a spec when its value is
set: not null, not false, not an empty list, and for enums the annotated value. ``unsupported`` turns that
into the refusal ``check`` and ``build`` give; ``feature_table`` into the table of docs/dialect.md.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from yamlllm_export.spec.schema import schema

TARGETS = ("ort", "onnx", "portable")  # lowerings/__init__.py builds one Target per name


@dataclass(frozen=True)
class Feature:
    name: str
    key: str  # schema path, e.g. layer.attention.window_size or layer.attention.mechanism=mla
    targets: tuple[str, ...]
    description: str


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in node:
        target = schema()["$defs"][node["$ref"].rsplit("/", 1)[-1]]
        return {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _objects(node: dict[str, Any]) -> list[dict[str, Any]]:
    node = _resolve(node)
    branches = [_resolve(o) for o in node.get("oneOf", [])]
    return [n for n in [node, *branches] if n.get("type") == "object" or "properties" in n]


def _annotated(node: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(path, node) for every property of the schema, depth first; array items as ``path[]``."""
    for obj in _objects(node):
        for key, sub in obj.get("properties", {}).items():
            sub_path = f"{path}.{key}" if path else key
            yield sub_path, _resolve(sub)
            yield from _annotated(sub, sub_path)
    items = _resolve(node).get("items")
    if isinstance(items, dict):
        yield f"{path}[]", _resolve(items)  # an array's items may carry x-values themselves (layer_types)
        yield from _annotated(items, f"{path}[]")


def features() -> list[Feature]:
    """Every annotated feature, in schema order (the first path that names a feature wins)."""
    seen: dict[str, Feature] = {}
    for path, node in _annotated(schema(), ""):
        doc = node.get("description", "")
        if "x-feature" in node:
            name = node["x-feature"]
            seen.setdefault(name, Feature(name, path, tuple(node.get("x-targets", TARGETS)), doc))
        for value, meta in node.get("x-values", {}).items():
            seen.setdefault(meta["feature"], Feature(meta["feature"], f"{path}={value}", tuple(meta.get("targets", TARGETS)), doc))
    return list(seen.values())


def _used(value: Any) -> bool:
    return value not in (None, False, [], {})


def _walk(data: Any, node: dict[str, Any], path: str) -> Iterator[tuple[str, Any, dict[str, Any]]]:
    """(key path, value, schema node) for every value of ``data`` that the schema describes."""
    node = _resolve(node)
    if isinstance(data, dict):
        for obj in _objects(node):
            for key, sub in obj.get("properties", {}).items():
                if key in data:
                    sub_path = f"{path}.{key}" if path else key
                    yield sub_path, data[key], _resolve(sub)
                    yield from _walk(data[key], sub, sub_path)
    elif isinstance(data, list) and isinstance(node.get("items"), dict):
        for k, item in enumerate(data):
            yield f"{path}[{k}]", item, _resolve(node["items"])
            yield from _walk(item, node["items"], f"{path}[{k}]")


def unsupported(spec_dict: dict[str, Any], target: str) -> list[tuple[str, str]]:
    """(key path, message) for every feature ``spec_dict`` uses that ``target`` cannot express."""
    out = []
    for path, value, node in _walk(spec_dict, schema(), ""):
        if "x-targets" in node and _used(value) and target not in node["x-targets"]:
            out.append((path, node.get("x-feature", path), node["x-targets"]))
        meta = node.get("x-values", {}).get(value) if isinstance(value, str) else None
        if meta and target not in meta.get("targets", TARGETS):
            out.append((path, meta["feature"], meta["targets"]))
    return [(p, f"{name} is not available on target '{target}' (targets that support it: {', '.join(ok)})") for p, name, ok in out]


@functools.lru_cache(maxsize=64)
def full_window_options(spec: Any) -> tuple[tuple[str, str], ...]:
    """(key path, why) for every option of ``spec`` (a ``ModelSpec``) whose output at a position depends on
    later tokens of the window, so that no cache reproduces it: the graph must take the whole window and
    recompute it at every step (ReaLLM-Forge's sampler does exactly that). Read from the schema: a property
    annotated ``x-full-window: "<why>"`` when set, or an enum value whose ``x-values`` entry has
    ``full_window``. Empty: the model is causal and exports with its cache."""
    return _full_window(spec.to_dict())


def _full_window(spec_dict: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    out = []
    for path, value, node in _walk(spec_dict, schema(), ""):
        if node.get("x-full-window") and _used(value):
            out.append((path, str(node["x-full-window"])))
        meta = node.get("x-values", {}).get(value) if isinstance(value, str) else None
        if meta and meta.get("full_window"):
            out.append((f"{path}={value}", str(meta["full_window"])))
    return tuple(out)


def needs_full_window(spec: Any) -> bool:
    """The one predicate: does ``spec`` export as a full-window graph (no cache)?"""
    return bool(full_window_options(spec))


def full_window_line(spec: Any) -> str:
    """One line naming the option that makes ``spec`` full-window (its first), for messages."""
    options = full_window_options(spec)
    path, why = options[0]
    more = f" (and {len(options) - 1} more)" if len(options) > 1 else ""
    return f"{path}: {why}{more}"


# build options, not spec keys (quant/config.py): which targets write them, and how
BUILD_OPTIONS = (
    Feature("Weight-only int4 (ort: MatMulNBits; onnx: blocked int4 DequantizeLinear)", "build --quant int4", ("ort", "onnx"), ""),
    Feature("Weight-only int8 (ort: MatMulNBits; onnx, portable: per-channel DequantizeLinear)", "build --quant int8", TARGETS, ""),
    Feature("Quantized tied embedding table (GatherBlockQuantized)", "build --quant + tie_word_embeddings", ("ort",), ""),
)


def feature_table() -> str:
    """The Markdown table of features × targets (docs/features.md is this text; a test keeps them equal)."""
    lines = [
        "| feature | spec key | " + " | ".join(f"`{t}`" for t in TARGETS) + " |",
        "|---|---|" + "---|" * len(TARGETS),
    ]
    for f in [*features(), *BUILD_OPTIONS]:
        marks = " | ".join("yes" if t in f.targets else "no" for t in TARGETS)
        lines.append(f"| {f.name} | `{f.key}` | {marks} |")
    return "\n".join(lines) + "\n"


def check_target(spec: Any, target: str) -> None:
    """Raise ``SpecError`` naming the first feature of ``spec`` (a ``ModelSpec``) that ``target`` cannot express."""
    from yamlllm_export.errors import SpecError

    if target not in TARGETS:
        raise SpecError(f"--target: unknown target {target!r} (choose from {', '.join(TARGETS)})")
    found = unsupported(spec.to_dict(), target)
    if found:
        path, message = found[0]
        raise SpecError(f"{path}: {message}")
