"""Export formats, quantization choices and parity thresholds: one set of names for library and CLI."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

from edgeseq.errors import InvalidValueError


class Format(str, Enum):
    tflite = "tflite"
    onnx = "onnx"


class Quant(str, Enum):
    fp32 = "fp32"  # the float model as converted
    fp16 = "fp16"  # float16 weights (TFLite: dequantized at load; ONNX: float16 compute, float32 I/O)
    dynamic = "dynamic"  # int8 weights, activations quantized on the fly
    int8 = "int8"  # integer, calibrated (TFLite: int8 input; int8 output unless the search leaves the head float)


EXTENSIONS = {Format.tflite: ".tflite", Format.onnx: ".onnx"}


def artifact_id(fmt: Format, quant: Quant) -> str:
    return f"{Format(fmt).value}-{Quant(quant).value}"


@dataclass(frozen=True)
class Thresholds:
    """What an artifact must reach against the Keras original to pass ``edgeseq verify``."""

    fp32_agreement: float = 1.0  # top-1 (exact word for seq2seq) agreement
    fp32_max_abs: float = 1e-4  # max |output - keras output|
    reduced_agreement: float = 0.999  # fp16 and dynamic
    int8_agreement: float = 0.995
    int8_max_accuracy_drop: float = 0.003  # 0.3 points
    # share of multiply-accumulates on integer kernels: a model the search had to leave a sensitive layer
    # float in still passes at 90 % (the zoo's own bar, 95 %, is checked by benchmarks/export_matrix.py)
    int8_min_mac_share: float = 0.90

    def __post_init__(self):
        for name, value in self.__dict__.items():
            if not math.isfinite(value):
                raise InvalidValueError(f"{name} must be a finite number, got {value}")
        for name in ("fp32_agreement", "reduced_agreement", "int8_agreement", "int8_min_mac_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise InvalidValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.fp32_max_abs < 0 or self.int8_max_accuracy_drop < 0:
            raise InvalidValueError("tolerances must be >= 0")

    def for_quant(self, quant: Quant) -> dict:
        """The thresholds that apply to one quantization, as a plain dict for reports."""
        quant = Quant(quant)
        if quant is Quant.fp32:
            return {"min_agreement": self.fp32_agreement, "max_abs_diff": self.fp32_max_abs}
        if quant in (Quant.fp16, Quant.dynamic):
            return {"min_agreement": self.reduced_agreement}
        return {"min_agreement": self.int8_agreement, "max_accuracy_drop": self.int8_max_accuracy_drop,
                "min_int8_mac_share": self.int8_min_mac_share}
