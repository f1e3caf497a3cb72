"""Where ONNX Runtime's CUDA execution provider puts each node of a model folder, asked without a GPU.

``cuda_shim.c`` stands in for the CUDA libraries onnxruntime-gpu's CUDA provider links against; compiled with
the system C compiler (``cc``) into one small library per name, it lets the real provider load, so that
creating a session with ``["CUDAExecutionProvider", "CPUExecutionProvider"]`` runs ORT's real partitioning,
fusions, Memcpy insertion and kernel constructors. The session is created in a child process (the shim must
never be on the path of a process that could use a real GPU), at verbose logging, and ORT's own "Node
placements" report is read back. Nothing is run: numbers still need a GPU.

ORT places small int64 shape computations on the CPU on purpose ("CPU execution path is deemed faster"):
those are not missing kernels. A compute node (one with a float output) on the CPU is.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from yamlllm_export.runtime.session import graph_nodes

# what the placement check was last read against (validate/placement.py's findings in docs/cuda.md):
# onnxruntime-gpu 1.31.1's CUDA kernel registry, dumped through the shim with get_all_opkernel_def()
CHECKED_ORT = "1.31.1"
CHECKED_REGISTRY = {"ops": 250, "kernel_defs": 1565}  # (domain, op) pairs

SHIM_SOURCE = Path(__file__).with_name("cuda_shim.c")

# library name -> (version node the provider's references carry, or "" for none; exported symbol patterns)
SHIM_LIBRARIES: dict[str, tuple[str, list[str]]] = {
    "libcudart.so.13": ("libcudart.so.13", ["cuda*", "__cuda*"]),
    "libcublas.so.13": ("libcublas.so.13", ["cublas[!L]*"]),
    "libcublasLt.so.13": ("libcublasLt.so.13", ["cublasLt*"]),
    "libcudnn.so.9": ("libcudnn.so.9", ["cudnn*"]),
    "libcurand.so.10": ("", ["shim_curand_present"]),
    "libcuda.so.1": ("", ["cu[A-Z]*"]),
    "libnvinfer.so.10": ("", ["createInfer*", "getInferLibVersion", "getPluginRegistry"]),
    "libnvonnxparser.so.10": ("", ["createNvOnnxParser*", "getNvOnnxParserVersion"]),
}

FLOAT_ELEM_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16, onnx.TensorProto.DOUBLE}

_CHILD = r"""
import sys, onnxruntime as ort
opts = ort.SessionOptions()
opts.log_severity_level = 0
opts.log_verbosity_level = 0
session = ort.InferenceSession(sys.argv[1], opts, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
print("PLACEMENT_PROVIDERS", ",".join(session.get_providers()), flush=True)
"""

_REGISTRY_CHILD = r"""
import json, onnxruntime as ort
import onnxruntime.capi.onnxruntime_pybind11_state as state
defs = [k for k in state.get_all_opkernel_def() if k.provider == "CUDAExecutionProvider"]
ops = {(k.domain or "ai.onnx", k.op_name) for k in defs}
print("REGISTRY", json.dumps({"ort": ort.__version__, "ops": len(ops), "kernel_defs": len(defs)}), flush=True)
"""


class ShimUnavailable(Exception):
    """The placement check cannot run here (no C compiler, no CUDA provider in this onnxruntime, not Linux)."""


@dataclass
class Placement:
    """ORT's placement of one model on CUDA + CPU, after all graph optimizations."""

    model: str
    providers: list[str]
    nodes: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # provider -> [(op_type, node name)]
    counts: dict[str, int] = field(default_factory=dict)  # provider -> node count (ORT's own)
    error: str = ""  # session creation failed: ORT's message, one line

    @property
    def on_cuda(self) -> bool:
        return "CUDAExecutionProvider" in self.providers

    def cpu_ops(self) -> Counter[str]:
        return Counter(op for op, _ in self.nodes.get("CPUExecutionProvider", []))

    def memcpy_count(self) -> int:
        return sum(1 for nodes in self.nodes.values() for op, _ in nodes if op.startswith("Memcpy"))


def shim_dir(cache: Path | None = None) -> Path:
    """The shim libraries, compiled once per source version into a cache folder; ``ShimUnavailable`` when
    they cannot be made here."""
    if not sys.platform.startswith("linux"):
        raise ShimUnavailable(f"the CUDA shim is built for Linux only (this is {sys.platform})")
    compiler = shutil.which(os.environ.get("CC", "cc"))
    if compiler is None:
        raise ShimUnavailable("no C compiler (cc) on PATH to build the CUDA shim")
    provider = Path(_ort_capi()) / "libonnxruntime_providers_cuda.so"
    if not provider.is_file():
        raise ShimUnavailable("this onnxruntime has no CUDA provider library; install onnxruntime-gpu")
    digest = hashlib.sha256(SHIM_SOURCE.read_bytes() + json.dumps(SHIM_LIBRARIES).encode()).hexdigest()[:16]
    root = cache or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "yamlllm-export"
    target = root / f"cuda-shim-{digest}"
    if (target / "libcudart.so.13").is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="cuda-shim-", dir=root))
    try:
        obj = work / "cuda_shim.o"
        _cc([compiler, "-c", "-O1", "-fPIC", "-w", str(SHIM_SOURCE), "-o", str(obj)])
        for name, (node, patterns) in SHIM_LIBRARIES.items():
            script = work / f"{name}.map"
            script.write_text(f"{node} {{ global: {'; '.join(patterns)}; local: *; }};\n")
            _cc([compiler, "-shared", f"-Wl,-soname,{name}", f"-Wl,--version-script={script}", str(obj), "-o", str(work / name)])
        try:
            work.rename(target)  # atomic: a concurrent build of the same source wins, this one is dropped
        except OSError:
            pass
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if not (target / "libcudart.so.13").is_file():
        raise ShimUnavailable(f"the CUDA shim did not build into {target}")
    return target


def _cc(args: list[str]) -> None:
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)  # noqa: S603 - cc on our own source
    if done.returncode:
        raise ShimUnavailable(f"cc failed building the CUDA shim: {' '.join(done.stderr.split())[:200]}")


def _ort_capi() -> str:
    import onnxruntime

    return str(Path(onnxruntime.__file__).parent / "capi")


def _child_env(shim: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (str(shim), env.get("LD_LIBRARY_PATH", "")) if p)
    env["CUDA_VISIBLE_DEVICES"] = "0"
    return env


def cuda_placement(model_dir: str | Path, *, shim: Path | None = None, timeout: float = 600) -> Placement:
    """Create a CUDA + CPU session for ``model_dir/model.onnx`` under the shim and read ORT's placement report."""
    shim = shim or shim_dir()
    model = Path(model_dir) / "model.onnx" if Path(model_dir).is_dir() else Path(model_dir)
    args = [sys.executable, "-c", _CHILD, str(model)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=_child_env(shim))  # noqa: S603 - this Python
    return parse_placement(str(model), done.stdout + done.stderr)


def cuda_registry(*, shim: Path | None = None) -> dict[str, object]:
    """{ort, ops, kernel_defs} of the installed onnxruntime-gpu's CUDA kernel registry (read under the shim)."""
    shim = shim or shim_dir()
    args = [sys.executable, "-c", _REGISTRY_CHILD]
    done = subprocess.run(args, capture_output=True, text=True, timeout=300, env=_child_env(shim))  # noqa: S603 - this Python
    for line in done.stdout.splitlines():
        if line.startswith("REGISTRY "):
            return json.loads(line.split(" ", 1)[1])
    raise ShimUnavailable(f"the CUDA kernel registry could not be read: {' '.join((done.stderr or done.stdout).split())[-200:]}")


_ALL_ON = re.compile(r"All nodes placed on \[(\w+)\]\. Number of nodes: (\d+)")
_SOME_ON = re.compile(r"Node\(s\) placed on \[(\w+)\]\. Number of nodes: (\d+)")
_NODE = re.compile(r"\]\s{2,}(\S+) \((.*)\)\s*$")


def parse_placement(model: str, log: str) -> Placement:
    """ORT's verbose log → ``Placement``. Its report reads either "All nodes placed on [EP]. Number of nodes: N"
    or, per provider, " Node(s) placed on [EP]. Number of nodes: N" followed by one "  OpType (node name)" line
    per node."""
    providers: list[str] = []
    placement = Placement(model=model, providers=providers)
    current: str | None = None
    for line in log.splitlines():
        if line.startswith("PLACEMENT_PROVIDERS "):
            providers.extend(line.split(" ", 1)[1].split(","))
            continue
        if m := _ALL_ON.search(line):
            placement.counts[m.group(1)] = int(m.group(2))
            placement.nodes[m.group(1)] = []
            current = None
            continue
        if m := _SOME_ON.search(line):
            current = m.group(1)
            placement.counts[current] = int(m.group(2))
            placement.nodes[current] = []
            continue
        m = _NODE.search(line)
        if current and m:
            placement.nodes[current].append((m.group(1), m.group(2)))
        else:
            current = None
    if not providers:
        errors = [line for line in log.splitlines() if "[E:" in line or "Error" in line or "Exception" in line]
        placement.error = " ".join((errors[-1] if errors else log[-300:]).split())[-300:]
    return placement


def float_outputs(model_path: str | Path) -> dict[str, bool]:
    """node name → whether the node has a floating-point output (by ONNX shape inference on the saved graph;
    nodes whose output types are unknown count as float, so they are not excused)."""
    model = onnx.load(str(model_path), load_external_data=False)
    try:
        model = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001, S110 - contrib ops without schemas: fall back to the declared value infos
        pass
    result: dict[str, bool] = {}
    _float_outputs(model.graph, {t.name: t.data_type for t in model.graph.initializer}, result)
    return result


def _float_outputs(graph: onnx.GraphProto, outer: dict[str, int], result: dict[str, bool]) -> None:
    types = dict(outer)
    types |= {v.name: v.type.tensor_type.elem_type for v in (*graph.value_info, *graph.output, *graph.input)}
    for node in graph.node:
        outs = [types.get(o, 0) for o in node.output if o]
        result[node.name] = any(t in FLOAT_ELEM_TYPES or t == 0 for t in outs)
        for attr in node.attribute:  # If / Loop bodies (ORT's report lists their nodes too)
            for sub in (*([attr.g] if attr.HasField("g") else []), *attr.graphs):
                _float_outputs(sub, types, result)


def compute_on_cpu(placement: Placement, float_nodes: dict[str, bool]) -> Counter[str]:
    """Nodes ORT left on the CPU that compute floats (by op type): the ones the CUDA EP had no kernel for.
    Nodes that ORT's optimizer created (not in the saved graph) count by their op type: a Memcpy is
    reported separately, anything else with no known output type counts as compute."""
    left = Counter[str]()
    for op, name in placement.nodes.get("CPUExecutionProvider", []):
        if op.startswith("Memcpy"):
            continue
        if float_nodes.get(name, op not in SHAPE_OPS):
            left[op] += 1
    return left


# int64 shape arithmetic ORT moves to the CPU on purpose; only used for nodes ORT made itself
SHAPE_OPS = {"Shape", "Gather", "Concat", "Unsqueeze", "Squeeze", "Slice", "Cast", "Add", "Sub", "Mul", "Div", "Reshape",
             "Range", "Expand", "ConstantOfShape", "Equal", "Where", "Less", "Greater", "Max", "Min", "ReduceSum", "CumSum",
             "Size", "Neg", "Not", "And", "Or"}  # fmt: skip


@dataclass(frozen=True)
class PlacementVerdict:
    ok: bool  # every compute node on CUDA
    line: str  # the finding in one line
    placement: Placement


def check_cuda_placement(model_dir: str | Path, *, shim: Path | None = None) -> PlacementVerdict:
    """Every compute node of ``model_dir`` on CUDA (ok), or which are not and what to do, in one line."""
    placement = cuda_placement(model_dir, shim=shim)
    if placement.error or not placement.on_cuda:
        why = placement.error or "CUDAExecutionProvider did not load under the shim"
        return PlacementVerdict(False, f"cuda placement: no CUDA session ({why})", placement)
    left = compute_on_cpu(placement, float_outputs(placement.model))
    conflicts = gqa_cuda_conflicts(onnx.load(placement.model, load_external_data=False))
    if conflicts:
        line = (
            f"cuda placement: {len(conflicts)} GroupQueryAttention node(s) would be refused by the CUDA kernel at run time "
            f"(NOT_IMPLEMENTED), e.g. {conflicts[0]}"
        )
        return PlacementVerdict(False, line, placement)
    on_cuda = placement.counts.get("CUDAExecutionProvider", 0)
    shape_nodes = placement.counts.get("CPUExecutionProvider", 0) - sum(left.values()) - placement.memcpy_count()
    if not left:
        line = (
            f"cuda placement: every compute node on CUDA ({on_cuda} nodes; {shape_nodes} int64 shape nodes on the CPU by ORT's "
            f"choice, {placement.memcpy_count()} Memcpy); onnxruntime {_ort_version()}"
        )
        return PlacementVerdict(True, line, placement)
    ops = ", ".join(f"{op} x{n}" for op, n in sorted(left.items()))
    hint = "; build with --dtype float16 or bfloat16" if _dtype(model_dir) == "float32" else ""
    line = (
        f"cuda placement: {ops} would run on the CPU ({placement.memcpy_count()} Memcpy): the CUDA provider of onnxruntime "
        f"{_ort_version()} has no kernel for them in this build{hint}"
    )
    return PlacementVerdict(False, line, placement)


def _ort_version() -> str:
    import onnxruntime

    return str(onnxruntime.__version__)


def _dtype(model_dir: str | Path) -> str:
    info = Path(model_dir) / "build.json"
    try:
        return str(json.loads(info.read_text()).get("dtype", ""))
    except (OSError, ValueError):
        return ""


# GroupQueryAttention inputs (com.microsoft, ORT 1.31) that ORT's CUDA kernel refuses to combine with attention_bias
GQA_BIAS = 10
GQA_REFUSED_WITH_BIAS = {11: "head_sink", 12: "k_scale", 13: "v_scale"}


def gqa_cuda_conflicts(model: onnx.ModelProto) -> list[str]:
    """GroupQueryAttention nodes (also inside If/Loop bodies) whose inputs ORT's CUDA kernel refuses at run time
    (NOT_IMPLEMENTED): ``attention_bias`` together with ``head_sink`` or a quantized KV cache (k_scale / v_scale),
    or smooth_softmax with a bias. Placement cannot see these: the kernel is constructed, then refuses to run."""
    found = []
    for node in graph_nodes(model.graph):
        if node.op_type != "GroupQueryAttention" or node.domain != "com.microsoft":
            continue
        given = {i for i, name in enumerate(node.input) if name}
        if GQA_BIAS not in given:
            continue
        clash = [GQA_REFUSED_WITH_BIAS[i] for i in sorted(given & set(GQA_REFUSED_WITH_BIAS))]
        if any(a.name == "smooth_softmax" and a.i for a in node.attribute):
            clash.append("smooth_softmax")
        if clash:
            found.append(f"{node.name or node.output[0]}: attention_bias with {', '.join(clash)}")
    return found
