"""ONNX Runtime sessions for a model folder, quiet on machines without a GPU; no torch.

Which execution providers (EPs) can run at all is decided without asking ORT to load one that cannot
work: ORT prints an error through its logger before falling back when the CUDA EP fails to load, so CUDA
is tried only when ORT ships it *and* an NVIDIA GPU is present.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import json
import os
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from yamlllm_export.runtime.folder_check import check_external_data

EP_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}
ORT_DEFAULT_LOG_SEVERITY = 2  # ORT has no getter for the default logger's level; 2 (warning) is its default
FLOAT_TYPES = {"float", "float16", "bfloat16"}
_STATE = ort.capi.onnxruntime_pybind11_state
_ERROR_NAMES = ("Fail", "InvalidArgument", "NoSuchFile", "NoModel", "EngineError", "RuntimeException", "InvalidProtobuf",
                "NotImplemented", "InvalidGraph", "EPFail")  # fmt: skip


class GraphRunError(Exception):
    """ORT refused to run the graph on given inputs (its I/O-binding path raises a bare RuntimeError)."""


# what a session or a run raises: ORT's Python errors share no base class short of Exception
ORT_ERRORS: tuple[type[Exception], ...] = (GraphRunError, *(getattr(_STATE, n) for n in _ERROR_NAMES if hasattr(_STATE, n)))


class EpUnsupported(Exception):
    """This build cannot run on this EP (a kernel is missing for an op or dtype): not a parity failure."""


@dataclass(frozen=True)
class EpAvailability:
    ep: str
    usable: bool
    reason: str  # why not, when not usable


def cpu_session(model_dir: str | Path, *, threads: int = 0) -> ort.InferenceSession:
    check_external_data(model_dir)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # errors only
    # Every decode step has new shapes (the cache grows by one): ORT's arena and its per-shape memory
    # patterns then keep growing beyond the live tensors (benchmarks/long_generation.py, context 512: RSS grew
    # 47.9 MB with them, 30.1 MB without, for a 12.6 MB cache; the past and the present coexist during a step).
    opts.enable_cpu_mem_arena = False
    opts.enable_mem_pattern = False
    if threads:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(str(Path(model_dir) / "model.onnx"), opts, providers=["CPUExecutionProvider"])


def gpu_present() -> bool:
    """An NVIDIA GPU is visible: through the driver's files, or the CUDA driver library counting devices
    (WSL has no /proc/driver/nvidia); no torch, so ``--ep cuda`` starts as fast as ``--ep cpu``."""
    gpus = Path("/proc/driver/nvidia/gpus")
    if (gpus.is_dir() and any(gpus.iterdir())) or Path("/dev/nvidia0").exists():
        return True
    return cuda_device_count() > 0


def cuda_device_count() -> int:
    """Devices the CUDA driver reports (0 without a driver): what ``torch.cuda.is_available`` asks too."""
    for name in ("libcuda.so.1", "libcuda.so", "nvcuda.dll", "libcuda.dylib"):
        try:
            cuda = ctypes.CDLL(name)
        except OSError:
            continue
        count = ctypes.c_int(0)
        if cuda.cuInit(0) != 0 or cuda.cuDeviceGetCount(ctypes.byref(count)) != 0:
            return 0
        return count.value
    return 0


def availability(ep: str) -> EpAvailability:
    if ep == "cpu":
        return EpAvailability("cpu", True, "")
    if EP_PROVIDERS[ep] not in ort.get_available_providers():
        return EpAvailability(ep, False, f"this onnxruntime ({ort.__version__}) has no {EP_PROVIDERS[ep]}; install onnxruntime-gpu")
    if not gpu_present():
        return EpAvailability(ep, False, "no NVIDIA GPU found")
    return EpAvailability(ep, True, "")


@contextlib.contextmanager
def quiet_ort(severity: int = 4) -> Iterator[None]:
    """Silence ORT's default logger (provider-load errors go there, not to the session's logger)."""
    ort.set_default_logger_severity(severity)
    try:
        yield
    finally:
        ort.set_default_logger_severity(ORT_DEFAULT_LOG_SEVERITY)


def open_session(model_dir: str | Path, ep: str, *, profile_dir: str | None = None) -> ort.InferenceSession:
    """A session whose nodes run on ``ep`` (CPU as the fallback for what ``ep`` leaves over).

    Raises ``EpUnsupported`` when ORT has no kernel for some node on any provider (e.g. bfloat16 MatMul on
    CPU) or when the EP's library does not load; other ORT errors (a broken graph) propagate. ``FolderError``
    before ORT sees a graph whose external data lies outside ``model_dir``.
    """
    check_external_data(model_dir)
    if ep == "cuda":
        refuse_half_only_ops(model_dir)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if profile_dir is not None:  # the profile says which provider ran each node (see ``fallback_nodes``)
        opts.enable_profiling = True
        opts.profile_file_prefix = str(Path(profile_dir) / "ort")
    providers: list[str | tuple[str, dict[str, str]]] = ["CPUExecutionProvider"]
    if ep == "cuda":
        # TF32 matmuls (ORT's default from Ampere on) drift by ~1e-3: fp32 parity needs IEEE fp32
        providers.insert(0, (EP_PROVIDERS[ep], {"use_tf32": "0"}))
        if hasattr(ort, "preload_dlls"):  # CUDA/cuDNN from pip's nvidia-* packages, when installed
            with contextlib.redirect_stdout(io.StringIO()):  # it prints hints when they are absent
                ort.preload_dlls()
    try:
        with quiet_ort():
            session = ort.InferenceSession(str(Path(model_dir) / "model.onnx"), opts, providers=providers)
    except _STATE.NotImplemented as err:
        raise EpUnsupported(one_line(err)) from None
    if EP_PROVIDERS[ep] not in session.get_providers():
        raise EpUnsupported(f"{EP_PROVIDERS[ep]} did not load (CUDA 13 and cuDNN 9 libraries missing?)")
    return session


# com.microsoft ops whose CUDA kernels are float16 / bfloat16 only (onnxruntime-gpu 1.31's kernel registry)
CUDA_HALF_ONLY = ("GroupQueryAttention",)


def refuse_half_only_ops(model_dir: str | Path) -> None:
    """``EpUnsupported`` before any session when a float32 build holds ops CUDA has no float32 kernel for: ORT
    would run them on the CPU behind Memcpy nodes, and a benchmark or a parity check would time or test that mix."""
    info = Path(model_dir) / "build.json"
    try:
        dtype = json.loads(info.read_text()).get("dtype")
    except (OSError, ValueError):
        return  # not our build: the profiled probe after the first run still says where nodes ran
    if dtype != "float32":
        return
    import onnx

    model = onnx.load(str(Path(model_dir) / "model.onnx"), load_external_data=False)
    found = Counter(n.op_type for n in graph_nodes(model.graph) if n.op_type in CUDA_HALF_ONLY and n.domain == "com.microsoft")
    if found:
        ops = ", ".join(f"{op} x{n}" for op, n in sorted(found.items()))
        raise EpUnsupported(
            f"{ops}: {EP_PROVIDERS['cuda']} has no kernel for them in float32 (float16 / bfloat16 only); "
            "build with --dtype float16 (or --target portable)"
        )


def graph_nodes(graph: Any) -> Iterator[Any]:
    """An ONNX graph's nodes and those of its If / Loop bodies, depth first."""
    for node in graph.node:
        yield node
        for attr in node.attribute:  # If / Loop bodies
            for sub in (*([attr.g] if attr.HasField("g") else []), *attr.graphs):
                yield from graph_nodes(sub)


def fallback_nodes(profile: list[dict[str, Any]], ep: str) -> Counter[str]:
    """Float-producing nodes that ran on another provider than ``ep``'s, counted by op type.

    ORT places a node its EP has no kernel for (e.g. fp32 GroupQueryAttention on CUDA) on the CPU without a
    word; parity would then pass on "CUDA" while the work ran on the CPU. Shape arithmetic (int64) is placed
    on the CPU on purpose and is not counted.
    """
    wanted = EP_PROVIDERS[ep]
    fell = Counter[str]()
    for event in profile:
        args = event.get("args", {})
        if event.get("cat") != "Node" or "provider" not in args or args["provider"] == wanted:
            continue
        if any(t in FLOAT_TYPES for out in args.get("output_type_shape", []) for t in out):
            fell[args.get("op_name", "?")] += 1
    return fell


def end_profiling(session: ort.InferenceSession) -> list[dict[str, Any]]:
    path = session.end_profiling()
    try:
        events: list[dict[str, Any]] = json.loads(Path(path).read_text())
        return events
    finally:
        Path(path).unlink(missing_ok=True)


def check_placement(session: ort.InferenceSession, ep: str) -> None:
    """After a profiled run: raise ``EpUnsupported`` naming the ops that fell back to another provider."""
    fell = fallback_nodes(end_profiling(session), ep)
    if fell:
        ops = ", ".join(f"{op} x{n}" for op, n in sorted(fell.items()))
        raise EpUnsupported(f"{ops} ran on the CPU: {EP_PROVIDERS[ep]} has no kernel for them with this build's dtype")


def profile_dir() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="yamlllm-validate-", dir=os.environ.get("TMPDIR"))


def one_line(err: BaseException, limit: int = 240) -> str:
    """ORT's message on one line, without its '[ONNXRuntimeError] : 9 : CODE :' prefix (the detail that
    matters, e.g. which index of which input, is often on the second line)."""
    text = " ".join(str(err).split()) or type(err).__name__
    if text.startswith("[ONNXRuntimeError]"):
        text = text.split(" : ", 3)[-1]
    return text if len(text) <= limit else text[: limit - 1] + "…"


def default_positions(mask: np.ndarray, new_tokens: int) -> np.ndarray:
    """cumsum(mask) - 1 clamped at 0, for the last ``new_tokens`` slots (the model's own default)."""
    positions: np.ndarray = np.maximum(np.cumsum(mask, axis=-1) - 1, 0)[:, -new_tokens:].astype(np.int64)
    return positions
