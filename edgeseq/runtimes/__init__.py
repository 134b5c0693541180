"""Runtimes for exported artifacts, one interface: ``open_runner(path).run(x) -> outputs``.

``x`` is float32 shaped as the model input with a batch dimension; outputs are float32 (int8 tensors
are quantized and dequantized with the artifact's own parameters). The runner loops over a fixed
batch when the artifact has one. No TensorFlow needed.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Protocol

import numpy as np

from edgeseq.errors import ModelError


class Provider(str, Enum):
    """ONNX Runtime execution provider (library and ``edgeseq bench --provider``)."""

    cpu = "cpu"
    cuda = "cuda"
    tensorrt = "tensorrt"


class Runner(Protocol):
    path: Path
    input_shape: tuple  # without batch, e.g. (28, 28)

    def run(self, x: np.ndarray, batch: int | None = None) -> np.ndarray: ...

    def tensors(self) -> dict: ...

    def describe(self) -> dict: ...


def open_runner(path: str | Path, *, threads: int | None = None, provider: str | None = None) -> Runner:
    """A runner for a ``.tflite`` or ``.onnx`` file; a missing or foreign file is a :class:`ModelError`."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"artifact {path} does not exist")
    if path.suffix == ".tflite":
        from edgeseq.runtimes.litert import LiteRTRunner

        return LiteRTRunner(path, threads=threads)
    if path.suffix == ".onnx":
        from edgeseq.runtimes.onnxrt import OnnxRunner

        return OnnxRunner(path, threads=threads, provider=provider)
    if path.suffix in (".keras", ".h5"):
        from edgeseq.runtimes.keras_ref import KerasRunner

        return KerasRunner(path, threads=threads)
    raise ModelError(f"{path}: unknown artifact type {path.suffix!r}; expected .tflite or .onnx")


def check_input(x: np.ndarray, input_shape: tuple, path: Path) -> np.ndarray:
    """Accept (N, *input_shape) or anything with the same values per example (e.g. (N, 28, 28) for (784,))."""
    x = np.asarray(x, dtype=np.float32)
    if tuple(x.shape[1:]) == tuple(input_shape):
        return x
    if x.ndim >= 2 and int(np.prod(x.shape[1:])) == int(np.prod(input_shape)):
        return x.reshape((len(x), *input_shape))
    raise ModelError(f"{path.name} takes inputs of shape {tuple(input_shape)} per example; got {tuple(x.shape[1:])}")
