"""The Keras original as a runtime (needs Keras/TensorFlow): the baseline exported artifacts are timed against."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import numpy as np

from edgeseq.errors import EdgeseqError, ModelError
from edgeseq.lazy import keras as _keras
from edgeseq.runtimes import check_input


class KerasRunner:
    def __init__(self, path: Path, threads: int | None = None):
        keras = _keras()
        self.path = Path(path)
        try:
            self.model = keras.saving.load_model(self.path, compile=False)
        except EdgeseqError:
            raise
        except Exception as exc:  # Keras raises many kinds
            raise ModelError(f"cannot load {self.path}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}") from exc
        self.input_shape = tuple(int(d) for d in self.model.inputs[0].shape[1:])
        self.batch = None
        self.threads = threads
        self.runtime, self.runtime_version = f"keras ({keras.backend.backend()})", version("keras")

    def run(self, x: np.ndarray, batch: int | None = None) -> np.ndarray:
        x = check_input(x, self.input_shape, self.path)
        step = batch or 1024
        return np.concatenate([np.asarray(self.model.predict_on_batch(x[i : i + step]), np.float32)
                               for i in range(0, len(x), step)])

    def stepper(self, x: np.ndarray):
        """One ``predict_on_batch`` (Keras' compiled inference path) on ``x``."""
        x = check_input(x, self.input_shape, self.path)
        return lambda: self.model.predict_on_batch(x)

    def tensors(self) -> dict:
        def one(tensor):
            return {"name": tensor.name, "shape": [None, *tensor.shape[1:]], "dtype": str(tensor.dtype), "quantization": None}

        return {"inputs": [one(self.model.inputs[0])], "outputs": [one(self.model.outputs[0])]}

    def describe(self) -> dict:
        return {"runtime": self.runtime, "version": self.runtime_version, "threads": self.threads,
                "input": {"shape": [None, *self.input_shape], "dtype": "float32"}}
