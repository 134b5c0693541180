"""TFLite artifacts through the LiteRT interpreter: ai_edge_litert, else tflite_runtime, else tensorflow.lite."""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from edgeseq.errors import MissingDependencyError, ModelError
from edgeseq.lazy import native_stderr_captured
from edgeseq.runtimes import check_input

# (module holding Interpreter, distribution to report)
_CANDIDATES = (("ai_edge_litert.interpreter", "ai-edge-litert"), ("tflite_runtime.interpreter", "tflite-runtime"),
               ("tensorflow.lite", "tensorflow"))


def interpreter_class() -> tuple[type, str, str]:
    """(Interpreter class, distribution name, version) of the first LiteRT interpreter installed."""
    for module, dist in _CANDIDATES:
        try:
            interpreter = importlib.import_module(module).Interpreter
        except (ImportError, AttributeError):
            continue
        try:
            dist_version = version(dist)
        except PackageNotFoundError:
            dist_version = "unknown"
        return interpreter, dist, dist_version
    raise MissingDependencyError("no TFLite interpreter is installed (ai-edge-litert, tflite-runtime or tensorflow); "
                                 "install one with: pip install 'edgeseq[tflite]' (it picks tflite-runtime where "
                                 "LiteRT has no wheel: Python 3.8, armv7)")


def quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    """float32 -> the tensor's integer type with its (scale, zero point)."""
    scale, zero_point = detail["quantization"]
    info = np.iinfo(detail["dtype"])
    return np.clip(np.round(x / scale + zero_point), info.min, info.max).astype(detail["dtype"])


def dequantize(q: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero_point = detail["quantization"]
    return ((q.astype(np.float32) - zero_point) * scale).astype(np.float32)


class LiteRTRunner:
    def __init__(self, path: Path, threads: int | None = None):
        self.path = Path(path)
        head = self.path.read_bytes()[:8]
        if len(head) < 8 or head[4:8] != b"TFL3":
            raise ModelError(f"{self.path} is not a TFLite flatbuffer (no TFL3 identifier)")
        interpreter, self.runtime, self.runtime_version = interpreter_class()
        self.threads = threads
        try:
            with native_stderr_captured():  # "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
                self.interpreter = interpreter(model_path=str(self.path), num_threads=threads)
                self.interpreter.allocate_tensors()
        except (RuntimeError, ValueError) as exc:
            raise ModelError(f"{self.path}: the interpreter cannot load it ({str(exc).strip().splitlines()[0]})") from exc
        inputs, outputs = self.interpreter.get_input_details(), self.interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelError(f"{self.path} has {len(inputs)} inputs and {len(outputs)} outputs; edgeseq needs one of each")
        self._in, self._out = inputs[0], outputs[0]
        self.batch = int(self._in["shape"][0])
        self.input_shape = tuple(int(d) for d in self._in["shape"][1:])
        self.quantized_input = self._in["dtype"] != np.float32
        self.quantized_output = self._out["dtype"] != np.float32

    def run(self, x: np.ndarray, batch: int | None = None) -> np.ndarray:
        """(N, *input_shape) float32 -> (N, ...) float32, in slices of the artifact's fixed batch."""
        x = check_input(x, self.input_shape, self.path)
        interp, inp, out = self.interpreter, self._in, self._out
        results = []
        for start in range(0, len(x), self.batch):
            chunk = x[start : start + self.batch]
            n = len(chunk)
            if n < self.batch:  # pad the last slice up to the fixed batch
                chunk = np.concatenate([chunk, np.zeros((self.batch - n, *self.input_shape), np.float32)])
            interp.set_tensor(inp["index"], quantize(chunk, inp) if self.quantized_input else chunk)
            interp.invoke()
            y = interp.get_tensor(out["index"])
            results.append((dequantize(y, out) if self.quantized_output else y.astype(np.float32))[:n])
        return np.concatenate(results)

    def stepper(self, x: np.ndarray):
        """A zero-argument callable doing one inference on ``x`` (one fixed batch), with nothing else in
        the timed path than a bare loop has: set the (pre-quantized) input, invoke, read the output."""
        x = check_input(x, self.input_shape, self.path)[: self.batch]
        feed = quantize(x, self._in) if self.quantized_input else x
        interp, in_index, out_index = self.interpreter, self._in["index"], self._out["index"]

        def step():
            interp.set_tensor(in_index, feed)
            interp.invoke()
            return interp.get_tensor(out_index)

        return step

    def tensors(self) -> dict:
        """Input and output tensors as the interpreter sees them, with their quantization parameters."""
        def one(detail):
            scale, zero_point = detail["quantization"]
            return {"name": detail["name"], "shape": [int(d) for d in detail["shape"]],
                    "dtype": np.dtype(detail["dtype"]).name,
                    "quantization": {"scale": float(scale), "zero_point": int(zero_point)} if scale else None}

        return {"inputs": [one(self._in)], "outputs": [one(self._out)]}

    def describe(self) -> dict:
        return {"runtime": self.runtime, "version": self.runtime_version, "threads": self.threads,
                "input": {"shape": [int(d) for d in self._in["shape"]], "dtype": np.dtype(self._in["dtype"]).name},
                "output": {"shape": [int(d) for d in self._out["shape"]], "dtype": np.dtype(self._out["dtype"]).name}}
