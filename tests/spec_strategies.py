"""Hypothesis strategies for YamlLLM specs, derived by walking the JSON Schema (spec/yamlllm.schema.json).

``valid_specs()`` draws schema-valid specs at tiny sizes: every object gets its required keys and a random
subset of its optional ones, every value follows its node's ``type`` / ``enum`` / ``oneOf`` / bounds. The only
hand-written knowledge is ``TINY``: small choices for the size keys (so a build takes seconds and shapes often
fit together), each checked against the schema's bounds at import. Rules the schema cannot say
(spec/rules.py) are not avoided: a drawn spec may contradict itself, and ``check`` must then refuse it.

``invalid_specs()`` draws one of those and breaks it at one place the schema describes: a value of a type the
node does not admit, a value past a bound, an enum value that is not one, an unknown key, a missing required
key, a NaN / ±inf / huge / subnormal / negative-zero float where the node does not admit it (at every number
and integer the spec holds or could hold), a container nested past the reader's limit. It returns the spec and
the key path the error must name (as the CLI writes it: ``a.b[0].c``; for too deep a nesting, the file).

Both strategies judge admission with the project's own validator (``SpecValidator``: JSON Schema plus "every
number is a finite float32"), so the extreme floats a node does admit (-0.0 where 0 is in range) are drawn as
valid values and must build.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import re
from dataclasses import dataclass
from typing import Any

import jsonschema
from hypothesis import strategies as st

from yamlllm_export.spec.load import MAX_NESTING
from yamlllm_export.spec.schema import SpecValidator, schema

# Size keys (schema path, array items as ``[]``) -> the tiny values drawn for them. Divisible widths and few heads
# keep hidden_dim / num_heads / head_dim consistent often enough that most drawn specs build.
TINY: dict[str, tuple[int, ...]] = {
    "num_layers": (1, 2, 3),
    # not 2: validate divides by the logits' spread at each position, which two logits near a tie make tiny
    # (found by the long run; the report of lane fuzz has the numbers)
    "embedding.vocab_size": (17, 32, 64),
    "embedding.max_position_embeddings": (2, 4, 16, 33, 48),
    "embedding.embedding_dim": (8, 16, 24, 32),
    "embedding.padding_idx": (0, 1, 16, 63),
    "embedding.positional_encoding.rotary_dim": (2, 4, 8, 16),
    "embedding.positional_encoding.max_position_embeddings": (16, 48),
    "embedding.positional_encoding.rope_scaling.original_max_position_embeddings": (1, 8, 16, 32),
    "layer.hidden_dim": (8, 16, 24, 32),
    "layer.attention.num_heads": (1, 2, 4),
    "layer.attention.num_kv_heads": (1, 2, 4),
    "layer.attention.head_dim": (4, 8, 16),
    "layer.attention.window_size": (1, 3, 8, 40),
    "layer.attention.alibi_max_positions": (16,),
    "layer.attention.mla_latent_dim": (4, 8, 16),
    "layer.attention.mla_rank": (4, 8, 16),
    "layer.attention.mla_rope_head_dim": (0, 2, 4, 8),
    "layer.attention.mla_v_head_dim": (4, 8, 16),
    "layer.ffn.intermediate_size": (1, 16, 48),
    "layer.ffn.multiple_of": (1, 8, 16),
    "layer.ffn.moe.num_experts": (2, 3, 4),
    "layer.ffn.moe.top_k": (1, 2, 3),
    "layer.ffn.moe.frequency": (1, 2, 3),
    "layer.ffn.moe.intermediate_size": (8, 16),
    "layer.ffn.moe.shared_expert_intermediate_size": (8, 16),
    "layer.ffn.moe.first_dense_layers": (0, 1, 2),
    "layer.ffn.moe.num_groups": (1, 2, 4),
    "layer.ffn.moe.top_groups": (1, 2),
    "layer_overrides[].layers[]": (0, 1, 2),
    "layer_overrides[].attention.window_size": (1, 3, 8, 40),
    "tokens.bos_token_id": (0, 1, 63),
    "tokens.eos_token_id": (0, 2, 63),
    "tokens.eos_token_id[]": (0, 2, 63),
    "tokens.pad_token_id": (0, 3, 63),
}
NUMBER_SPAN = 4.0  # a number without a maximum is drawn from its lower bound up to this far above it
# and at least this far above an exclusive bound: a final soft-cap of 0.01 squashes logits whose rounding error is
# that of the uncapped ones into a spread of 0.01, which validate's max|Δ|/σ reads as a 1e-5 error (found by the
# long run; the strategy is not a study of the tolerance)
EXCLUSIVE_GAP = 0.25
MAX_ITEMS = 2
MAX_OPTIONAL = (0, 1, 2, 4, 8)  # optional keys per object: sparse objects are mostly consistent, dense ones mostly not
# the floats of issue 29, by kind: each is tried wherever a number goes; admitted ones are valid draws, others breakages
EXTREME_FLOATS: dict[str, tuple[float, ...]] = {
    "non-finite": (float("nan"), float("inf"), float("-inf")),
    "huge": (1e300, -1e300, 3.5e38),  # 3.5e38: just past float32's largest
    "subnormal": (5e-324, -5e-324, 1e-40),  # 1e-40: normal in float64, subnormal in float32
    "negative zero": (-0.0,),
}


def _defs() -> dict[str, Any]:
    return schema()["$defs"]


def resolve(node: dict[str, Any]) -> dict[str, Any]:
    """Follow a local ``$ref``, keeping sibling keywords (``default``)."""
    if "$ref" not in node:
        return node
    target = _defs()[node["$ref"].rsplit("/", 1)[-1]]
    return {**target, **{k: v for k, v in node.items() if k != "$ref"}}


@functools.cache
def _validator_for(node_json: str) -> jsonschema.protocols.Validator:
    return SpecValidator({**json.loads(node_json), "$defs": _defs()})


def admits(node: dict[str, Any], value: Any) -> bool:
    """Whether the schema ``node`` accepts ``value`` (the project's validator is the judge, not this file)."""
    return _validator_for(json.dumps(node, sort_keys=True)).is_valid(value)


def is_negative_zero(value: Any) -> bool:
    return isinstance(value, float) and value == 0.0 and math.copysign(1.0, value) < 0


def _types(node: dict[str, Any]) -> list[str]:
    kinds = node.get("type", [])
    return list(kinds) if isinstance(kinds, list) else [kinds]


def _lower(node: dict[str, Any], default: float) -> tuple[float, bool]:
    if "minimum" in node:
        return node["minimum"], False
    if "exclusiveMinimum" in node:
        return node["exclusiveMinimum"], True
    return default, False


def _integers(node: dict[str, Any], path: str) -> st.SearchStrategy[int]:
    if path in TINY:
        return st.sampled_from(TINY[path])
    lo, exclusive = _lower(node, 0)
    lo = int(lo) + int(exclusive)
    return st.integers(lo, int(node.get("maximum", lo + 4)))


def _numbers(node: dict[str, Any]) -> st.SearchStrategy[float]:
    lo, exclusive = _lower(node, -NUMBER_SPAN)
    lo += EXCLUSIVE_GAP if exclusive else 0.0
    # width 32 without subnormals: float32's normal numbers (and 0), the range SpecValidator admits
    drawn = st.floats(lo, node.get("maximum", lo + NUMBER_SPAN), allow_nan=False, allow_subnormal=False, width=32)
    defaults = [node["default"]] if isinstance(node.get("default"), float) else []
    extremes = [v for vs in EXTREME_FLOATS.values() for v in vs if admits(node, v)]  # -0.0 where 0 is in range
    return st.sampled_from(defaults + extremes) | drawn if defaults + extremes else drawn


def _of_type(kind: str, node: dict[str, Any], path: str) -> st.SearchStrategy[Any]:
    if kind == "null":
        return st.none()
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        return _integers(node, path)
    if kind == "number":
        return _numbers(node)
    if kind == "string":
        return st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=node.get("minLength", 0), max_size=12)
    if kind == "array":
        items = values(node["items"], f"{path}[]")
        return st.lists(items, min_size=node.get("minItems", 0), max_size=MAX_ITEMS, unique=node.get("uniqueItems", False))
    if kind == "object":
        return objects(node, path)
    raise ValueError(f"{path}: schema type {kind!r} has no strategy")


def values(node: dict[str, Any], path: str) -> st.SearchStrategy[Any]:
    """Any value the schema ``node`` admits, at tiny sizes."""
    node = resolve(node)
    if "oneOf" in node or "anyOf" in node:
        return st.one_of([values(option, path) for option in node.get("oneOf", node.get("anyOf"))])
    if "enum" in node:
        return st.sampled_from(node["enum"])
    return st.one_of([_of_type(kind, node, path) for kind in _types(node)])


def objects(node: dict[str, Any], path: str) -> st.SearchStrategy[dict[str, Any]]:
    """Required keys always, and a random subset of the optional ones (at most a drawn ``MAX_OPTIONAL``);
    ``minProperties`` honoured."""
    node = resolve(node)
    props, required = node.get("properties", {}), set(node.get("required", []))

    @st.composite
    def draw_object(draw: st.DrawFn) -> dict[str, Any]:
        optional = [k for k in props if k not in required]
        chosen = draw(st.sets(st.sampled_from(optional), max_size=draw(st.sampled_from(MAX_OPTIONAL)))) if optional else set()
        out = {key: draw(values(sub, f"{path}.{key}" if path else key)) for key, sub in props.items() if key in required | chosen}
        missing = node.get("minProperties", 0) - len(out)
        for key in draw(st.permutations(sorted(set(props) - set(out))))[: max(0, missing)]:
            out[key] = draw(values(props[key], f"{path}.{key}" if path else key))
        return out

    return draw_object()


def valid_specs() -> st.SearchStrategy[dict[str, Any]]:
    """Schema-valid specs at tiny sizes (they may still break a rule of spec/rules.py)."""
    return objects(schema(), "")


# ---- breaking a valid spec at one place --------------------------------------------------------------------


@dataclass(frozen=True)
class Site:
    """A value inside a spec, its place (keys and list indices), and the schema node that describes it."""

    where: tuple[str | int, ...]
    value: Any
    node: dict[str, Any]
    branch: dict[str, Any]  # for a oneOf node, the branch that admits ``value`` (its bounds); else ``node``


def sites(data: Any, node: dict[str, Any], where: tuple[str | int, ...] = ()) -> list[Site]:
    """Every value of ``data`` with the schema node describing it (for a oneOf, the branch that admits it)."""
    node = resolve(node)
    branch = next((resolve(o) for o in node.get("oneOf", []) if admits(resolve(o), data)), node)
    out = [Site(where, data, node, branch)]
    if branch is not node:
        return out + sites(data, branch, where)[1:]
    if isinstance(data, dict):
        for key, value in data.items():
            if key in node.get("properties", {}):
                out += sites(value, node["properties"][key], (*where, key))
    elif isinstance(data, list) and isinstance(node.get("items"), dict):
        for k, item in enumerate(data):
            out += sites(item, node["items"], (*where, k))
    return out


def key_path(where: tuple[str | int, ...]) -> str:
    """The key path as the CLI writes it (spec/load.py ``_key_path``)."""
    out = ""
    for p in where:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "<top level>"


OTHER_TYPES = ("text", 2.5, 7, True, [1], {"k": 1}, None)
Where = tuple[str | int, ...]


@dataclass(frozen=True)
class Breakage:
    kind: str
    where: Where  # the value replaced, or the key added / deleted
    value: Any = None
    delete: bool = False


def _numeric(node: dict[str, Any]) -> bool:
    node = resolve(node)
    options = [resolve(o) for o in node.get("oneOf", [])] or [node]
    return any({"number", "integer"} & set(_types(o)) for o in options)


def nested(value: Any, levels: int) -> Any:
    """``value`` wrapped in ``levels`` containers, lists and mappings in turn."""
    for k in range(levels):
        value = [value] if k % 2 else {"deep": value}
    return value


def _breakages(site: Site) -> list[Breakage]:
    """Every way to make ``site`` alone invalid that its schema node describes."""
    node, branch, here = site.node, site.branch, site.where
    values: list[tuple[str, Any]] = [("wrong type", v) for v in OTHER_TYPES if type(v) is not type(site.value)]
    if _numeric(node):
        values += [(kind, v) for kind, vs in EXTREME_FLOATS.items() for v in vs]
    if isinstance(site.value, dict | list):  # past the reader's limit wherever it sits: refused naming the file
        values.append(("deep nesting", nested(site.value, MAX_NESTING)))
    if "enum" in branch:
        values.append(("not in enum", f"no-such-{branch['enum'][0]}"))
    if "minimum" in branch:
        values.append(("below minimum", branch["minimum"] - (1 if "integer" in _types(branch) else 0.5)))
    if "exclusiveMinimum" in branch:
        values.append(("at exclusive minimum", branch["exclusiveMinimum"]))
    if "maximum" in branch:
        values.append(("above maximum", branch["maximum"] + 0.5))
    if branch.get("minLength", 0) > 0:
        values.append(("too short", ""))
    if branch.get("minItems", 0) > 0:
        values.append(("too few items", []))
    if isinstance(site.value, list) and branch.get("uniqueItems") and site.value:
        values.append(("repeated item", [*site.value, site.value[0]]))
    out = [Breakage(kind, here, v) for kind, v in values if not admits(node, v)]
    if isinstance(site.value, dict) and branch.get("additionalProperties") is False:
        out.append(Breakage("unknown key", (*here, "unknown_key"), 1))
        out += [Breakage("missing required key", (*here, key), delete=True) for key in branch.get("required", [])]
        for key, sub in branch.get("properties", {}).items():  # a number the spec could hold: set it, extreme
            if key not in site.value and _numeric(sub):
                extremes = [(kind, v) for kind, vs in EXTREME_FLOATS.items() for v in vs]
                out += [Breakage(kind, (*here, key), v) for kind, v in extremes if not admits(sub, v)]
    return out


def _apply(spec: dict[str, Any], b: Breakage) -> dict[str, Any]:
    out = copy.deepcopy(spec)
    parent = out
    for p in b.where[:-1]:
        parent = parent[p]
    if b.delete:
        del parent[b.where[-1]]
    else:
        parent[b.where[-1]] = b.value
    return out


@dataclass(frozen=True)
class Broken:
    spec: Any
    kind: str
    path: str  # the key path the error must name


EXTREME_KINDS = (*EXTREME_FLOATS, "deep nesting")


@st.composite
def invalid_specs(draw: st.DrawFn, kinds: tuple[str, ...] | None = None) -> Broken:
    """A valid spec broken at one schema-described place: first the kind of breakage (one of ``kinds`` if given),
    then where. (Not the top level's type: 'the spec must be a mapping' is test_cli's.)"""
    spec = draw(valid_specs())
    by_kind: dict[str, list[Breakage]] = {}
    for site in sites(spec, schema()):
        for b in _breakages(site):
            if b.where and (kinds is None or b.kind in kinds):
                by_kind.setdefault(b.kind, []).append(b)
    b = draw(st.sampled_from(by_kind[draw(st.sampled_from(sorted(by_kind)))]))
    path = key_path(b.where[:-1]) if b.kind == "unknown key" else key_path(b.where)
    return Broken(_apply(spec, b), b.kind, path)


def node_at(path: str) -> dict[str, Any] | None:
    """The schema node at ``path`` (``a.b[0].c`` or ``a.b[].c``; ``<top level>``), or None if no such key."""
    node = schema()
    for part in re.findall(r"[^.\[\]]+|\[\d*\]", "" if path == "<top level>" else path):
        candidates = [resolve(node)] + [resolve(o) for o in resolve(node).get("oneOf", [])]
        if part.startswith("["):
            found = [c["items"] for c in candidates if isinstance(c.get("items"), dict)]
        else:
            found = [c["properties"][part] for c in candidates if part in c.get("properties", {})]
        if not found:
            return None
        node = found[0]
    return resolve(node)


def _check_tiny() -> None:
    for path, choices in TINY.items():
        node = node_at(path)
        assert node is not None, f"TINY: {path} is not a key of the schema"
        assert all(admits(node, v) for v in choices), f"TINY: {path}: {choices} outside the schema's bounds"


_check_tiny()
