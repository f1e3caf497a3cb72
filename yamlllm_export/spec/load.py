"""Load a spec: YAML text → ``yaml`` safe loader → JSON Schema → defaults → rules → frozen ``ModelSpec``.

Every failure is a ``SpecError`` whose message begins with the file (and line) or the key path.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from yamlllm_export.errors import SpecError
from yamlllm_export.spec import rules, schema
from yamlllm_export.spec.forge import SOFTMAX_OPTIONS
from yamlllm_export.spec.types import (
    ActivationKnotsSpec,
    AttentionSpec,
    ClampedSwiGLUSpec,
    EmbeddingSpec,
    FFNSpec,
    FireSpec,
    InfiniteAttentionSpec,
    InitSpec,
    KANSpec,
    LayerOverrideSpec,
    LayerSpec,
    LinearAttentionSpec,
    LinearVariantSpec,
    LSVSpec,
    ModelSpec,
    MoESpec,
    NormSpec,
    OverrideAttentionSpec,
    PositionalEncodingSpec,
    QKNormSpec,
    RopeScalingSpec,
    ShortConvSpec,
    SoftmaxVariantSpec,
    SteeringSpec,
    SteeringVectorSpec,
    TokensSpec,
    WeightQuantSpec,
)

# Limits on what a spec file may be (docs/validation-input.md). The dialect nests 6 levels at most
# (embedding.positional_encoding.rope_scaling.short_factor[i], schema.max_depth()); 32 leaves room for a wrong value to be named by
# its key path and stays far below the recursion the YAML composer, jsonschema and deepcopy would hit.
MAX_SPEC_BYTES = 1 << 20
MAX_NESTING = 32
MAX_SPEC_VALUES = 100_000  # scalars and containers, an alias counted at each use (a real spec has a few hundred)


class _TooDeep(Exception):
    def __init__(self, mark: yaml.Mark | None) -> None:
        self.mark = mark


class _Loader(yaml.SafeLoader):
    """``SafeLoader`` that reads ``1e-6`` as a float (YAML 1.1 wants ``1.0e-6``), refuses duplicate keys, and
    stops composing at ``MAX_NESTING`` levels (PyYAML's composer recurses once per level)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_NESTING:
                raise _TooDeep(self.peek_event().start_mark)  # type: ignore[no-untyped-call]  # PyYAML's stubs leave it untyped
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class SpecDumper(yaml.SafeDumper):
    """``SafeDumper`` whose output ``_Loader`` reads back: it quotes a string such as ``1e5``, which ``_Loader``
    would read as a float, and writes a mapping shared by two keys twice (no ``&id001`` / ``*id001``)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


_FLOAT_WITH_EXPONENT = re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")
for _cls in (_Loader, SpecDumper):
    _cls.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_WITH_EXPONENT, list("-+0123456789"))


def dump_yaml(data: Any) -> str:
    """Spec data as YAML text that ``load_spec`` reads back to the same data (model.yaml, import-hf, import-gguf)."""
    return yaml.dump(data, Dumper=SpecDumper, sort_keys=False, default_flow_style=False, width=120)  # non-ASCII escaped: NEL


def _mapping(loader: _Loader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            line = key_node.start_mark.line + 1
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key '{key}' (line {line})", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def _int(loader: _Loader, node: yaml.ScalarNode) -> int:
    try:
        return loader.construct_yaml_int(node)
    except ValueError:  # Python refuses to read an int of more than 4300 digits (sys.get_int_max_str_digits)
        digits = sum(c.isdigit() for c in node.value)
        raise yaml.constructor.ConstructorError(None, None, f"an integer of {digits} digits is too long", node.start_mark) from None


_Loader.add_constructor("tag:yaml.org,2002:int", _int)


def _read_yaml(path: Path) -> Any:
    if not path.exists():
        raise SpecError(f"{path}: no such file")
    if not path.is_file():
        raise SpecError(f"{path}: not a regular file")
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_SPEC_BYTES + 1)  # not stat's size alone: a file may grow, or be a pipe-like special file
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise SpecError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except OSError as err:
        raise SpecError(f"{path}: cannot read ({err.strerror})") from None
    if len(raw) > MAX_SPEC_BYTES:
        raise SpecError(f"{path}: larger than {MAX_SPEC_BYTES:,} bytes, the limit for a model spec")
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_shape(node, path)
        return loader.construct_document(node)
    except _TooDeep as err:
        where = f"{path}:{err.mark.line + 1}:{err.mark.column + 1}" if err.mark else str(path)
        raise SpecError(f"{where}: YAML nested deeper than {MAX_NESTING} levels (the dialect nests {schema.max_depth()} at most)") from None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = err.problem or "invalid YAML"
        if "could not determine a constructor" in problem:
            tag = problem.split("tag", 1)[-1].strip()
            problem = f"unsupported YAML tag {tag} (only plain YAML data is accepted)"
        raise SpecError(f"{where}: YAML error: {problem}") from None
    except yaml.YAMLError as err:
        raise SpecError(f"{path}: YAML error: {err}") from None
    finally:
        loader.dispose()


def _check_shape(root: yaml.Node, path: Path) -> None:
    """Refuse a document whose aliases expand it past ``MAX_SPEC_VALUES`` values or ``MAX_NESTING`` levels (a
    'billion laughs' file, an anchor used inside itself) before anything walks the constructed data."""
    stack: list[tuple[yaml.Node, int]] = [(root, 1)]
    count = 0
    while stack:
        node, depth = stack.pop()
        count += 1
        if depth > MAX_NESTING:
            raise _TooDeep(node.start_mark)
        if count > MAX_SPEC_VALUES:
            raise SpecError(f"{path}: more than {MAX_SPEC_VALUES:,} YAML values (an alias counts at each use), the limit for a model spec")
        if isinstance(node, yaml.SequenceNode):
            stack.extend((child, depth + 1) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            stack.extend((part, depth + 1) for pair in node.value for part in pair)


def _key_path(parts: Any) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "<top level>"


def _schema_message(err: jsonschema.ValidationError) -> str:
    where = _key_path(err.absolute_path)
    schema, expected, instance = err.schema, err.validator_value, err.instance
    if err.validator == "additionalProperties" and isinstance(schema, Mapping) and isinstance(instance, Mapping):
        allowed = sorted(schema.get("properties", {}))
        extra = sorted(set(instance) - set(allowed), key=str)
        return f"{where}: unknown key {', '.join(repr(k) for k in extra)} (allowed: {', '.join(allowed)})"
    if err.validator == "required" and isinstance(expected, list) and isinstance(instance, Mapping):
        missing = [k for k in expected if k not in instance]
        return f"{_key_path([*err.absolute_path, missing[0]])}: required key is missing"
    if err.validator == "enum" and isinstance(expected, list):
        return f"{where}: {err.instance!r} is not one of {', '.join(map(str, expected))}"
    return f"{where}: {err.message}"


def _best(errors: list[jsonschema.ValidationError]) -> jsonschema.ValidationError:
    """jsonschema's best match, taken down to the deepest key a ``oneOf`` branch reports (jsonschema stops at the
    ``oneOf`` when two errors of a branch tie, e.g. a type and a bound of ``moe.top_k: 1e-40``); at that key, a
    value that is no finite float32 number (schema.number_problem) says more than the bound it also breaks."""
    best: jsonschema.ValidationError | None = jsonschema.exceptions.best_match(errors)
    assert best is not None
    while best.validator in ("oneOf", "anyOf") and best.context:
        deepest = max(len(e.absolute_path) for e in best.context)
        if deepest <= len(best.absolute_path):
            break
        inner: jsonschema.ValidationError | None = jsonschema.exceptions.best_match(
            [e for e in best.context if len(e.absolute_path) == deepest]
        )
        assert inner is not None
        best = inner
    stack: list[jsonschema.ValidationError] = list(errors)
    while stack:
        err: jsonschema.ValidationError = stack.pop(0)
        if err.validator == "finite" and err.absolute_path == best.absolute_path:
            return err
        stack.extend(err.context or ())
    return best


def _derive(d: dict[str, Any]) -> None:
    """Fill values derived from others (in place). Only fields the user left unset are touched."""
    emb, layer = d["embedding"], d["layer"]
    att, ffn, pe = layer["attention"], layer["ffn"], emb["positional_encoding"]
    mla = att["mechanism"] == "mla"
    if att["num_kv_heads"] is None:
        att["num_kv_heads"] = att["num_heads"]
    if att["head_dim"] is None:
        att["head_dim"] = layer["hidden_dim"] // att["num_heads"]
    for key in ("qkv_bias", "out_bias"):
        if att[key] is None:
            att[key] = att["bias"]
    if mla:
        rope = pe["type"] == "rope"  # without RoPE there is no decoupled rotary part: the cache is the latent alone
        att["mla_rope_head_dim"] = (att["mla_rope_head_dim"] or att["head_dim"] // 2) if rope else 0
        att["mla_v_head_dim"] = att["mla_v_head_dim"] or att["head_dim"]
    if pe["type"] == "rope" and pe["rotary_dim"] is None:
        rotated = att["mla_rope_head_dim"] if mla else att["head_dim"]
        pe["rotary_dim"] = rotated if mla else int(rotated * pe["partial_rotary_factor"]) // 2 * 2
    elif pe["type"] != "rope":
        pe["rotary_dim"] = None
    if pe["type"] == "rope" and pe["rope_variant"] == "soap" and pe["soap_num_angles"] is None:
        pe["soap_num_angles"] = 512  # Forge's sym_rot_num_angles
    softmax = att["softmax"]
    if softmax is not None:
        for key, default in SOFTMAX_OPTIONS[softmax["type"]].items():
            if softmax[key] is None and (key != "learned_divisor_init" or softmax["learned_divisor"]):  # γ only when learned
                softmax[key] = default
    scaling = pe["rope_scaling"]
    if scaling is not None and scaling["original_max_position_embeddings"] is None:
        scaling["original_max_position_embeddings"] = max(1, int(emb["max_position_embeddings"] // scaling["factor"]))
    if emb["scale"] == "sqrt_hidden":
        emb["scale"] = math.sqrt(layer["hidden_dim"])
    if ffn["intermediate_size"] is None:
        ffn["intermediate_size"] = ffn_size(layer["hidden_dim"], ffn)
    if ffn["moe"] is not None and ffn["moe"]["intermediate_size"] is None:
        ffn["moe"]["intermediate_size"] = ffn["intermediate_size"]
    if ffn["moe"] is not None and ffn["moe"]["routing"] == "sparsemixer" and ffn["moe"]["jitter_eps"] is None:
        ffn["moe"]["jitter_eps"] = 0.01  # transformers' PhimoeConfig.router_jitter_noise default
    if "final_layer_norm" not in d:  # post-norm models end on a norm already
        d["final_layer_norm"] = dict(layer["layer_norm"]) if layer["norm_placement"] != "post" else None
    for norm in (layer["layer_norm"], d["final_layer_norm"], d["embedding_layer_norm"]):
        if norm is not None:
            _derive_norm(norm, layer["hidden_dim"])
    _derive_activation(ffn)
    lsv = (d["steering"] or {}).get("lsv")
    if lsv is not None and lsv["variant"] in ("one_hot", "one_hot_mlp") and lsv["mixture"] is None:
        lsv["index"] = 0 if lsv["index"] is None else lsv["index"]
    if lsv is not None and lsv["variant"] == "one_hot" and lsv["scale"] is None:
        lsv["scale"] = 1.0
    pe.pop("max_position_embeddings", None)
    if d["layer_types"] is not None:  # the cycle resolved: one entry per layer (layer i uses layer_types[i mod len])
        cycle = d["layer_types"]
        d["layer_types"] = [cycle[i % len(cycle)] for i in range(d["num_layers"])]
    for kind in (
        "short_conv",
        "linear_attention",
        "infinite_attention",
    ):  # a kind's block gets its defaults when set or when a layer uses it
        if layer[kind] is not None or kind in (d["layer_types"] or ()):
            props = schema.schema()["$defs"]["layer"]["properties"][kind]["properties"]
            layer[kind] = {key: sub["default"] for key, sub in props.items()} | (layer[kind] or {})
    if layer["linear_attention"] is not None and layer["linear_attention"]["num_heads"] is None:
        layer["linear_attention"]["num_heads"] = att["num_heads"]
    if (inf := layer["infinite_attention"]) is not None:
        inf["num_heads"] = inf["num_heads"] or att["num_heads"]
        inf["num_kv_heads"] = inf["num_kv_heads"] or inf["num_heads"]
        inf["qk_head_dim"] = inf["qk_head_dim"] or att["head_dim"]
        inf["v_head_dim"] = inf["v_head_dim"] or inf["qk_head_dim"]
        inf["bias"] = att["bias"] if inf["bias"] is None else inf["bias"]
    eos = d["tokens"]["eos_token_id"]
    d["tokens"]["eos_token_id"] = [] if eos is None else [eos] if isinstance(eos, int) else eos


# ReaLLM-Forge's defaults of each norm variant's own keys (its CLI defaults, FORGE.md §5)
NORM_DEFAULTS: dict[str, dict[str, Any]] = {
    "prmsnorm": {"prmsnorm_pct": 0.0625},
    "krmsnorm": {"krmsnorm_num": 10, "krmsnorm_select": "last", "krmsnorm_quantize": "none"},
    "hyperspherenorm": {"hypersphere_radius": None},  # sqrt(C), below
    "dyt": {"dyt_activation": "tanh", "dyt_alpha_init": 1.0, "dyt_alpha": True, "dyt_beta": True, "dyt_gamma": True},
}
# (num, left, right) of the knot activations: Forge's defaults (FORGE.md §6)
KNOT_DEFAULTS = {"piecewise": (7, -2.0, 2.0), "pfla": (50, -10.0, 10.0), "pfla_le": (30, -10.0, 10.0), "learned_spline": (10, -5.0, 5.0)}


def _derive_norm(norm: dict[str, Any], dim: int) -> None:
    """A Forge norm variant's unset keys from its defaults; hyperspherenorm's radius sqrt(C)."""
    for key, value in NORM_DEFAULTS.get(norm["type"], {}).items():
        if norm.get(key) is None:
            norm[key] = value
    if norm["type"] == "hyperspherenorm" and norm.get("hypersphere_radius") is None:
        norm["hypersphere_radius"] = math.sqrt(dim)


def _derive_activation(ffn: dict[str, Any]) -> None:
    """gelu_shifted's initial shift (0) and the knot activations' knots, when unset."""
    if ffn["activation"] == "gelu_shifted" and ffn["gelu_shift"] is None:
        ffn["gelu_shift"] = 0.0
    if ffn["activation"] in KNOT_DEFAULTS and ffn["activation_knots"] is None:
        num, left, right = KNOT_DEFAULTS[ffn["activation"]]
        ffn["activation_knots"] = {"num": num, "left_bound": left, "right_bound": right}


def ffn_size(hidden: int, ffn: dict[str, Any]) -> int:
    """intermediate_size from expansion_factor (default 4), or LLaMA's rounding when multiple_of is set:
    h = 4d, × 2/3 when gated, × ffn_dim_multiplier, rounded up to a multiple of multiple_of."""
    size = (ffn["expansion_factor"] or 4) * hidden
    if ffn["multiple_of"] is None:
        return max(1, int(size))
    if ffn["use_gated_activation"]:
        size = int(2 * size / 3)
    if ffn["ffn_dim_multiplier"] is not None:
        size = int(ffn["ffn_dim_multiplier"] * size)
    m = ffn["multiple_of"]
    return int(max(m, m * math.ceil(size / m)))


# attention keys of the dialect accepted by the schema only at their defaults (spec/rules.py says why): not in the spec
REFUSED_KEYS = ("alibi_max_positions", "use_flash_attention")


def _without(d: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k not in keys}


def _optional(cls: type, value: dict[str, Any] | None) -> Any:
    return cls(**value) if value is not None else None


def _moe(moe: dict[str, Any] | None) -> MoESpec | None:
    if moe is None:
        return None
    return MoESpec(
        **{**moe, "dense_layers": tuple(moe["dense_layers"]), "clamped_swiglu": _optional(ClampedSwiGLUSpec, moe["clamped_swiglu"])}
    )


def _kan(kan: dict[str, Any] | None) -> KANSpec | None:
    return None if kan is None else KANSpec(**{**kan, "middle_layers": tuple(kan["middle_layers"])})


def _freeze(d: dict[str, Any]) -> ModelSpec:
    emb, lay = d["embedding"], d["layer"]
    pe = emb["positional_encoding"]
    scaling = pe["rope_scaling"] and {k: tuple(v) if isinstance(v, list) else v for k, v in pe["rope_scaling"].items()}
    pe = PositionalEncodingSpec(**{**pe, "rope_scaling": _optional(RopeScalingSpec, scaling)})
    att, ffn = lay["attention"], lay["ffn"]
    overrides = tuple(
        LayerOverrideSpec(tuple(o["layers"]), OverrideAttentionSpec(**o.get("attention", {}), fields=tuple(o.get("attention", {}))))
        for o in d["layer_overrides"]
    )
    return ModelSpec(
        name=d["name"],
        embedding=EmbeddingSpec(
            **{
                **emb,
                "positional_encoding": pe,
                "quantize_wte": _optional(WeightQuantSpec, emb["quantize_wte"]),
                "quantize_wpe": _optional(WeightQuantSpec, emb["quantize_wpe"]),
            }
        ),  # fmt: skip
        num_layers=d["num_layers"],
        layer=LayerSpec(
            **{
                **lay,
                "attention": AttentionSpec(
                    **{
                        **_without(att, *REFUSED_KEYS),
                        "qk_norm": _optional(QKNormSpec, att["qk_norm"]),
                        "softmax": _optional(SoftmaxVariantSpec, att["softmax"]),
                        "fire": _optional(FireSpec, att["fire"]),
                    }
                ),
                "ffn": FFNSpec(
                    **{
                        **ffn,
                        "moe": _moe(ffn["moe"]),
                        "activation_knots": _optional(ActivationKnotsSpec, ffn["activation_knots"]),
                        "kan": _kan(ffn["kan"]),
                    }
                ),
                "layer_norm": NormSpec(**lay["layer_norm"]),
                "linear": lay["linear"] and LinearVariantSpec(**{**lay["linear"], "apply_to": tuple(lay["linear"]["apply_to"])}),
                "short_conv": _optional(ShortConvSpec, lay["short_conv"]),
                "linear_attention": _optional(LinearAttentionSpec, lay["linear_attention"]),
                "infinite_attention": _optional(InfiniteAttentionSpec, lay["infinite_attention"]),
            }
        ),
        embedding_layer_norm=_optional(NormSpec, d["embedding_layer_norm"]),
        final_layer_norm=_optional(NormSpec, d["final_layer_norm"]),
        tie_word_embeddings=d["tie_word_embeddings"],
        lm_head_bias=d["lm_head_bias"],
        final_logit_softcap=d["final_logit_softcap"],
        final_logit_scale=d["final_logit_scale"],
        layer_overrides=overrides,
        initialization=InitSpec(**d["initialization"]),
        tokens=TokensSpec(**{**d["tokens"], "eos_token_id": tuple(d["tokens"]["eos_token_id"])}),
        steering=_steering(d["steering"]),
        layer_types=tuple(d["layer_types"]) if d["layer_types"] is not None else None,
    )


def _steering(st: dict[str, Any] | None) -> SteeringSpec | None:
    if st is None:
        return None
    lsv = st.get("lsv")
    if lsv is not None:
        lsv = LSVSpec(**{**lsv, "mixture": tuple(lsv["mixture"]) if lsv["mixture"] is not None else None})
    return SteeringSpec(vector=_optional(SteeringVectorSpec, st.get("vector")), lsv=lsv)


def validate_dict(data: Any, source: str = "<spec>") -> ModelSpec:
    """Validate plain spec data (as parsed from YAML) and return the frozen spec."""
    if not isinstance(data, Mapping):
        kind = "empty" if data is None else type(data).__name__
        raise SpecError(f"{source}: the spec must be a mapping of keys, not {kind}")
    errors = sorted(schema.validator().iter_errors(dict(data)), key=lambda e: (list(map(str, e.absolute_path)), e.validator))
    if errors:
        raise SpecError(_schema_message(_best(errors)))
    filled = schema.fill_defaults(dict(data))
    found = rules.problems(filled)
    if found:
        key, message = found[0]
        raise SpecError(f"{key}: {message}")
    _derive(filled)
    schema.coerce_numbers(filled)
    return _freeze(filled)


def load_spec(source: str | os.PathLike[str] | Mapping[str, Any] | ModelSpec) -> ModelSpec:
    """Load and validate a spec from a YAML path, a dict, or pass a ``ModelSpec`` through."""
    if isinstance(source, ModelSpec):
        return source
    if isinstance(source, Mapping):
        return validate_dict(source)
    path = Path(source)
    return validate_dict(_relative_to(_read_yaml(path), path.parent), str(path))


def _relative_to(data: Any, folder: Path) -> Any:
    """A relative steering-vector file is relative to the spec file's folder (made absolute here)."""
    steering = data.get("steering") if isinstance(data, Mapping) else None
    vector = steering.get("vector") if isinstance(steering, Mapping) else None
    if isinstance(vector, dict) and isinstance(vector.get("file"), str) and not Path(vector["file"]).is_absolute():
        vector["file"] = str((folder / vector["file"]).resolve())
    return data
