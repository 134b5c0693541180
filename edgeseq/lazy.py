"""The one place heavy optional modules are imported, with an error that says what to install."""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import tempfile
from types import ModuleType

from edgeseq.errors import MissingDependencyError

# module -> (pip requirement to suggest, why it is needed)
_HINTS = {
    "tensorflow": ("edgeseq[train]", "training and export"),
    "keras": ("edgeseq[train]", "training and export"),
    "tf2onnx": ("edgeseq[train]", "ONNX export"),
    "onnx": ("edgeseq[train]", "ONNX export"),
    "matplotlib": ("edgeseq[train]", "plots"),
    "cv2": ("edgeseq[webcam]", "the webcam loop"),
    "onnxruntime": ("edgeseq[onnx]", "running ONNX artifacts (on a CUDA machine edgeseq[gpu]; on a Jetson, "
                    "NVIDIA's onnxruntime-gpu wheel for its JetPack)"),
}


def quiet_tensorflow_logs() -> None:
    """Silence TensorFlow's C++ logging (CUDA probing on CPU machines) unless the user set a level; real errors still raise."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@contextlib.contextmanager
def native_stderr_captured():
    """Hold what C++ libraries write to fd 2 (CUDA probing on a CPU machine) while TensorFlow loads.

    The text is dropped on success and kept in the error on failure.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (some notebooks): nothing to hide
        yield lambda: ""
        return
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield lambda: (sink.seek(0), sink.read().decode(errors="replace"))[1]
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def require(module: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming the package to install."""
    top = module.split(".")[0]
    if top in ("tensorflow", "keras") and "tensorflow" not in sys.modules:
        quiet_tensorflow_logs()
        with native_stderr_captured():
            return _import(module)
    return _import(module)


def _import(module: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        requirement, purpose = _HINTS.get(top, (top, "this operation"))
        raise MissingDependencyError(
            f"{top} is needed for {purpose} but is not installed ({exc}); "
            f"install it with: pip install '{requirement}'"
        ) from exc


def keras() -> ModuleType:
    """Keras 3 on whatever backend is installed (``KERAS_BACKEND``; TensorFlow by default)."""
    return require("keras")
