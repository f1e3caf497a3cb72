"""One forward step of an exported graph on any EP: ids + mask + past in, float32 logits + presents out.

Runs through ORT's I/O binding with ``OrtValue``s rather than ``session.run``: numpy has no bfloat16, so a
bfloat16 build's cache and logits could not cross as numpy arrays, and the presents can stay on the EP's
device (a 7 B model's cache would otherwise travel to the host and back at every step).

A full-window graph (``IOContract.full_window``) has no cache: its stepper keeps the window's token ids as
the "past" and runs the whole window at every step, cropped to the contract's ``window`` last tokens as
ReaLLM-Forge's sampler crops to its block_size; ``step`` still returns the logits of the new tokens only, so
the generator, ``validate`` and ``bench`` drive both kinds of graph alike.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime as ort

from yamlllm_export.runtime.io_contract import IOContract
from yamlllm_export.runtime.session import GraphRunError, default_positions, one_line

ELEM_TYPES = {"float32": onnx.TensorProto.FLOAT, "float16": onnx.TensorProto.FLOAT16, "bfloat16": onnx.TensorProto.BFLOAT16}
# numpy holders for each ONNX element type; bfloat16 travels as its raw 16 bits
HOLDERS: dict[int, type[np.generic]] = {
    onnx.TensorProto.INT64: np.int64,
    onnx.TensorProto.FLOAT: np.float32,
    onnx.TensorProto.FLOAT16: np.float16,
    onnx.TensorProto.BFLOAT16: np.uint16,
}
ORT_TYPE_NAMES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(bfloat16)": "bfloat16"}


def float32_to_bfloat16_bits(x: np.ndarray) -> np.ndarray:
    """Round-to-nearest-even float32 → bfloat16, as uint16 bit patterns."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounding = ((bits >> 16) & 1) + np.uint32(0x7FFF)
    rounded: np.ndarray = ((bits + rounding) >> 16).astype(np.uint16)
    return rounded


def bfloat16_bits_to_float32(bits: np.ndarray) -> np.ndarray:
    widened: np.ndarray = (bits.astype(np.uint32) << 16).view(np.float32)
    return widened


def to_numpy_float32(value: ort.OrtValue) -> np.ndarray:
    """A host ``OrtValue`` of any float type as a float32 array (ORT cannot hand bfloat16 to numpy)."""
    if value.data_type() != "tensor(bfloat16)":
        host: np.ndarray = value.numpy().astype(np.float32, copy=False)
        return host
    shape = tuple(value.shape())
    n = int(np.prod(shape, dtype=np.int64))
    raw = np.ctypeslib.as_array((ctypes.c_uint16 * n).from_address(value.data_ptr())) if n else np.zeros(0, np.uint16)
    return bfloat16_bits_to_float32(raw.copy()).reshape(shape)


def host_value(x: np.ndarray, elem_type: int) -> tuple[ort.OrtValue, np.ndarray]:
    """(OrtValue, the array it reads): ORT borrows host memory, so the array must outlive the run."""
    holder = float32_to_bfloat16_bits(x) if elem_type == onnx.TensorProto.BFLOAT16 else np.ascontiguousarray(x, dtype=HOLDERS[elem_type])
    return ort.OrtValue.ortvalue_from_numpy_with_onnx_type(holder, elem_type), holder


@dataclass(frozen=True)
class GraphStepper:
    session: ort.InferenceSession
    contract: IOContract
    cache_elem_type: int  # onnx.TensorProto element type of the caches and states (past_key_values.*, past.*)
    device: str = "cpu"  # where presents stay between steps: "cpu" or "cuda"

    @classmethod
    def for_session(cls, session: ort.InferenceSession, contract: IOContract, device: str = "cpu") -> GraphStepper:
        inputs = {i.name: i.type for i in session.get_inputs()}
        first = next(iter(contract.past_names()), "")  # a model of identity layers only has no cache at all
        dtype = ORT_TYPE_NAMES.get(inputs.get(first, ""), "float32")
        return cls(session, contract, ELEM_TYPES[dtype], device)

    def empty_past(self, batch: int) -> list[ort.OrtValue]:
        if self.contract.full_window:  # the window so far: no token yet
            return [_window_value(np.zeros((batch, 0), np.int64))]
        shapes = [self.contract.cache_shape(name, batch, 0) for name in self.contract.past_names()]
        return [host_value(np.zeros(shape, np.float32), self.cache_elem_type)[0] for shape in shapes]

    def step(self, input_ids: np.ndarray, mask: np.ndarray, past: list[ort.OrtValue]) -> tuple[np.ndarray, list[ort.OrtValue]]:
        """One forward → (logits as float32 (B, S, V), presents to feed back as ``past``)."""
        if self.contract.full_window:
            return self._window_step(input_ids, mask, past)
        feeds = {"input_ids": input_ids.astype(np.int64), "attention_mask": mask.astype(np.int64)}
        if self.contract.has_position_ids:
            feeds["position_ids"] = default_positions(mask, input_ids.shape[1])
        return self._run(feeds, past)

    def _run(self, feeds: dict[str, np.ndarray], past: list[ort.OrtValue]) -> tuple[np.ndarray, list[ort.OrtValue]]:
        binding = self.session.io_binding()
        held = []  # keeps the borrowed host arrays alive until the run is over
        for name, array in feeds.items():
            value, holder = host_value(array, onnx.TensorProto.INT64)
            held.append(holder)
            binding.bind_ortvalue_input(name, value)
        for name, value in zip(self.contract.past_names(), past, strict=True):
            binding.bind_ortvalue_input(name, value)
        binding.bind_output("logits", "cpu")
        for name in self.contract.present_names():
            binding.bind_output(name, self.device)
        try:
            self.session.run_with_iobinding(binding)
        except RuntimeError as err:  # ORT's own error types pass through unchanged
            raise GraphRunError(one_line(err)) from err
        logits, *presents = binding.get_outputs()
        return to_numpy_float32(logits), list(presents)

    def _window_step(self, input_ids: np.ndarray, mask: np.ndarray, past: list[ort.OrtValue]) -> tuple[np.ndarray, list[ort.OrtValue]]:
        """The full-window step: the window (past ids ++ new), cropped to its last ``window`` tokens, in one run;
        → logits of the new tokens (of the last one with a last-logits graph), and the uncropped window as the
        next past."""
        new = input_ids.shape[1]
        ids = np.concatenate([past[0].numpy(), input_ids.astype(np.int64)], axis=1)  # (B, P+S)
        keep = self.contract.window or ids.shape[1]
        window, window_mask = ids[:, -keep:], mask[:, -keep:]
        feeds = {"input_ids": window, "attention_mask": window_mask.astype(np.int64)}
        if self.contract.has_position_ids:  # positions count from the window's first real token, as in Forge
            feeds["position_ids"] = default_positions(window_mask, window.shape[1])
        logits, _ = self._run(feeds, [])
        if not self.contract.last_logits:
            logits = logits[:, -min(new, logits.shape[1]) :]
        return logits, [_window_value(ids)]


def _window_value(ids: np.ndarray) -> ort.OrtValue:
    """A full-window stepper's past: the window's ids on the host (``ortvalue_from_numpy`` keeps the array alive)."""
    return ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(ids, dtype=np.int64))
