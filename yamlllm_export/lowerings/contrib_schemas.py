"""Make ONNX (and so onnxscript and ``onnx.checker``) know ONNX Runtime's contrib operators.

ORT publishes its schemas through ``get_all_operator_schema()``; we convert each ``com.microsoft`` one
(plus ``SimplifiedLayerNormalization``, which ORT registers in the default domain) into an
``onnx.defs.OpSchema`` and register it once per process. GroupQueryAttention's trailing optional
``output_qk`` is dropped: with it declared, the exporter leaves a dangling output that ORT rejects.
Contrib ops whose name ONNX already uses in its default domain (Gelu, Trilu, ...) are skipped unless we
emit them (``EMITTED_CLASHES``): ``onnx.reference`` builds a table assuming operator names are unique
across domains, so it is imported before any such name is registered. A schema ONNX refuses is skipped
when we never emit that op, and is a build error naming the op and ONNX's reason when we do (``EMITTED``).
"""

from __future__ import annotations

import functools

import onnx
from onnx.defs import OpSchema

from yamlllm_export.errors import BuildError

DROPPED_OUTPUTS = {("GroupQueryAttention", "output_qk")}
DEFAULT_DOMAIN_OPS = {"SimplifiedLayerNormalization"}
EMITTED_CLASHES = {"RotaryEmbedding", "CausalConvWithState", "LinearAttention"}
# what target ``ort`` writes (lowerings/ort.py and its fusions): their schemas must register
EMITTED = {"GroupQueryAttention", "RotaryEmbedding", "MoE", "SimplifiedLayerNormalization", "SkipSimplifiedLayerNormalization",
           "SkipLayerNormalization", "CausalConvWithState", "LinearAttention"}  # fmt: skip
_OPTION = {
    "Single": OpSchema.FormalParameterOption.Single,
    "Optional": OpSchema.FormalParameterOption.Optional,
    "Variadic": OpSchema.FormalParameterOption.Variadic,
}


def _param(p) -> OpSchema.FormalParameter:  # noqa: ANN001 - ORT's pybind type
    option = _OPTION[str(p.option).rsplit(".", 1)[-1]]
    return OpSchema.FormalParameter(p.name, p.typeStr, p.description, param_option=option, is_homogeneous=p.isHomogeneous)


def _attr_type(t: object) -> OpSchema.AttrType:
    """ORT's attribute type as ONNX's, matched by name (``AttrType.INT``) as ``_OPTION`` matches options."""
    kind: OpSchema.AttrType = getattr(OpSchema.AttrType, str(t).rsplit(".", 1)[-1])
    return kind


def _convert(s) -> OpSchema:  # noqa: ANN001
    outputs = [o for o in s.outputs if (s.name, o.name) not in DROPPED_OUTPUTS]
    attrs = [OpSchema.Attribute(n, _attr_type(a.type), a.description, required=a.required) for n, a in s.attributes.items()]
    return OpSchema(
        s.name,
        s.domain,
        s.since_version,
        s.doc or "",
        inputs=[_param(i) for i in s.inputs],
        outputs=[_param(o) for o in outputs],
        type_constraints=[(t.type_param_str, list(t.allowed_type_strs), t.description) for t in s.type_constraints],
        attributes=attrs,
    )


def _known(s) -> bool:  # noqa: ANN001
    try:
        onnx.defs.get_schema(s.name, s.since_version, s.domain)
        return True
    except onnx.defs.SchemaError:
        return False


@functools.cache
def register_contrib_schemas() -> int:
    """Register ORT's contrib schemas with ONNX (idempotent). Returns how many were added."""
    import onnx.reference  # noqa: F401 - must build its name table before clashing names exist
    from onnxruntime.capi import onnxruntime_pybind11_state as ort_c

    return register(ort_c.get_all_operator_schema())


def register(schemas: list) -> int:  # ORT's pybind schema objects
    """Register the wanted ones of ``schemas`` not known yet; returns how many."""
    added = 0
    for s in schemas:
        wanted = s.domain == "com.microsoft" or (s.domain == "" and s.name in DEFAULT_DOMAIN_OPS)
        if not wanted or s.deprecated or _known(s) or (s.domain and onnx.defs.has(s.name) and s.name not in EMITTED_CLASHES):
            continue
        try:
            onnx.defs.register_schema(_convert(s))
        except (onnx.defs.SchemaError, ValueError, TypeError) as err:  # how ONNX refuses a schema it cannot represent
            if s.name in EMITTED:
                import onnxruntime

                raise BuildError(
                    f"ONNX refuses the schema of {s.domain or 'ai.onnx'}.{s.name} from onnxruntime {onnxruntime.__version__}, "
                    f"which target ort emits: {' '.join(str(err).split())}"
                ) from err
            continue  # a schema ONNX cannot represent, of an op we never emit
        added += 1
    return added
