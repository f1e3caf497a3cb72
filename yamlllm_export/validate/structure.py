"""Structural checks of ``model.onnx``, before anything runs: the ONNX checker, strict shape inference, the
graph I/O against the contract, the opset imports against the target, and the external data files.

The graph is loaded without its external data (a 7 B model's proto is then a few hundred kB); the checker
reads the file itself. Together, "checker" and "shape inference" are ``onnx.checker``'s full check, split
so that a failure names which half failed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import onnx

from yamlllm_export.runtime.folder_check import external_tensors, location_problem
from yamlllm_export.runtime.io_contract import IOContract
from yamlllm_export.validate.report import FAIL, PASS, CheckResult

CHECKER, SHAPES, IO, OPSET, EXTERNAL = "checker", "shape inference", "io contract", "opset", "external data"
ELEM = {"float32": onnx.TensorProto.FLOAT, "float16": onnx.TensorProto.FLOAT16, "bfloat16": onnx.TensorProto.BFLOAT16}
SYMBOLIC = None  # an expected dim that must be dynamic, whatever its name


def structure_checks(folder: Path, contract: IOContract, dtype: str, opsets: dict[str, int]) -> list[CheckResult]:
    """All structural checks of ``folder/model.onnx``; ``opsets`` is what the build's target imports."""
    from yamlllm_export.lowerings.contrib_schemas import register_contrib_schemas

    register_contrib_schemas()  # com.microsoft ops are known to the checker and to shape inference
    path = folder / "model.onnx"
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # noqa: BLE001 - protobuf raises its own DecodeError types
        unreadable = [f"model.onnx cannot be read: {_line(err)}"]
        return [_row(name, unreadable, "", "readable ONNX") for name in (CHECKER, SHAPES, IO, OPSET, EXTERNAL)]
    graph = proto.graph
    external_problems, external = _external_data(proto, folder)
    return [
        _row(CHECKER, _checker(path), "", "no errors, contrib schemas known"),
        _row(SHAPES, _shape_inference(proto), "", "strict, with data propagation"),
        _row(
            IO,
            io_problems(graph, contract, dtype),
            f"{len(graph.input)} inputs, {len(graph.output)} outputs",
            "names, dtypes, dynamic dims",
        ),
        _row(OPSET, _opset_problems(proto, opsets), _imports(proto), f"{_imports(opsets)} (build.json)"),
        _row(EXTERNAL, external_problems, external, "present, inside the folder"),
    ]


def _imports(imports: onnx.ModelProto | dict[str, int]) -> str:
    pairs = imports.items() if isinstance(imports, dict) else ((o.domain, o.version) for o in imports.opset_import)
    return ", ".join(f"{d or 'ai.onnx'} {v}" for d, v in sorted(pairs))


def _row(check: str, problems: list[str], measured: str, tolerance: str) -> CheckResult:
    """``measured``: what was found (empty: just "ok" or "failed")."""
    if not problems:
        return CheckResult(check, "-", PASS, measured or "ok", tolerance)
    more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
    return CheckResult(check, "-", FAIL, measured or "failed", tolerance, detail=problems[0] + more)


def _line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _checker(path: Path) -> list[str]:
    try:
        onnx.checker.check_model(str(path), full_check=False)
    except (onnx.checker.ValidationError, OSError) as err:
        return [_line(err)]
    return []


def _shape_inference(proto: onnx.ModelProto) -> list[str]:
    try:
        onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True, data_prop=True)
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError) as err:
        return [_line(err)]
    return []


def expected_io(contract: IOContract, dtype: str) -> dict[str, tuple[int, list[Any]]]:
    """name → (element type, dims): a str is a named dynamic dim, an int a fixed one, SYMBOLIC any dynamic."""
    f = ELEM[dtype]
    i64 = onnx.TensorProto.INT64
    io: dict[str, tuple[int, list[Any]]] = {
        "input_ids": (i64, ["batch_size", "sequence_length"]),
        "attention_mask": (i64, ["batch_size", contract.mask_length]),
    }
    if contract.has_position_ids:
        io["position_ids"] = (i64, ["batch_size", "sequence_length"])
    io.update({name: (f, list(contract.cache_shape(name, "batch_size", "past_sequence_length"))) for name in contract.past_names()})
    io["logits"] = (f, ["batch_size", "sequence_length", contract.vocab_size])
    io.update({name: (f, list(contract.cache_shape(name, "batch_size", SYMBOLIC))) for name in contract.present_names()})
    return io


def _dims(value: onnx.ValueInfoProto) -> list[Any]:
    return [d.dim_param or (d.dim_value if d.HasField("dim_value") else "?") for d in value.type.tensor_type.shape.dim]


def io_problems(graph: onnx.GraphProto, contract: IOContract, dtype: str) -> list[str]:
    problems = []
    for kind, values, names in (("inputs", graph.input, contract.input_names()), ("outputs", graph.output, contract.output_names())):
        got = [v.name for v in values]
        if got != names:
            missing, extra = [n for n in names if n not in got], [n for n in got if n not in names]
            what = f"missing {missing}" if missing else (f"unexpected {extra}" if extra else "in another order")
            problems.append(f"graph {kind} {what} (expected {names})")
    expected = expected_io(contract, dtype)
    for value in [*graph.input, *graph.output]:
        if value.name not in expected:
            continue
        elem, dims = expected[value.name]
        got_elem = value.type.tensor_type.elem_type
        if got_elem != elem:
            problems.append(
                f"{value.name}: dtype {onnx.TensorProto.DataType.Name(got_elem)}, expected {onnx.TensorProto.DataType.Name(elem)}"
            )
        got_dims = _dims(value)
        if len(got_dims) != len(dims):
            problems.append(f"{value.name}: rank {len(got_dims)}, expected {len(dims)}")
            continue
        for axis, (g, e) in enumerate(zip(got_dims, dims, strict=True)):
            if e is SYMBOLIC and not isinstance(g, str):
                problems.append(f"{value.name}: dim {axis} is {g}, expected a dynamic dim")
            elif e is not SYMBOLIC and g != e:
                want = f"dynamic {e!r}" if isinstance(e, str) else str(e)
                problems.append(f"{value.name}: dim {axis} is {g!r}, expected {want}")
    return problems


def _opset_problems(proto: onnx.ModelProto, expected: dict[str, int]) -> list[str]:
    got = {("" if o.domain == "ai.onnx" else o.domain): o.version for o in proto.opset_import}
    used = {n.domain if n.domain != "ai.onnx" else "" for n in proto.graph.node}
    # a contrib domain no node uses need not be imported (an ort graph whose every op has a plain fallback)
    needed = {d: v for d, v in expected.items() if d == "" or d in got or d in used}
    problems = [f"imports {d or 'ai.onnx'} {got.get(d, 'nothing')}, the target needs {v}" for d, v in needed.items() if got.get(d) != v]
    problems += [f"imports {d} {v}, which the target does not use" for d, v in got.items() if d not in expected]
    problems += [f"nodes use domain {d or 'ai.onnx'}, which is not imported" for d in sorted(used - set(got))]
    return problems


def _external_data(proto: onnx.ModelProto, folder: Path) -> tuple[list[str], str]:
    root = folder.resolve()
    sizes: dict[Path, int] = {}
    problems, total, n = [], 0, 0
    for t in external_tensors(proto.graph):
        n += 1
        meta = {e.key: e.value for e in t.external_data}
        location = meta.get("location", "")
        target = (root / location).resolve()
        offset = int(meta.get("offset", 0))
        length = int(meta["length"]) if "length" in meta else None  # absent: to the end of the file
        problem = _place_problem(location, target, root, sizes, offset, length)
        if problem:
            problems.append(f"{t.name}: {problem}")
        total += length or 0
    what = f"{n} tensors, {total / 1e6:.1f} MB in {len({*sizes})} file(s)" if n else "none (weights inline)"
    return problems, what


def _place_problem(location: str, target: Path, root: Path, sizes: dict[Path, int], offset: int, length: int | None) -> str:
    if why := location_problem(location, root):  # sessions refuse it before ORT opens the graph (runtime/folder_check.py)
        return f"data at {location!r}: {why}"
    if not target.is_file():
        return f"data file {location!r} is missing"
    size = sizes.setdefault(target, target.stat().st_size)
    end = offset + (length if length is not None else 0)
    if offset > size or end > size:
        return f"{location!r} holds {size} bytes, the tensor needs bytes {offset}..{end}"
    return ""
