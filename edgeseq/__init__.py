"""edgeseq: small Keras models from training to an edge device, with proof that they still agree.

This package is the light, on-device part: it never imports TensorFlow, Keras or OpenCV at import
time. Training and export live in ``edgeseq.training`` and ``edgeseq.export`` (extra ``[train]``).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("edgeseq")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
