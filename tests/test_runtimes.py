"""Runtimes load what they should and refuse what they should, with one-line reasons."""

import numpy as np
import pytest

from edgeseq.errors import ModelError
from edgeseq.runtimes import check_input, open_runner


def test_missing_and_foreign_artifacts(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        open_runner(tmp_path / "absent.tflite")
    fake = tmp_path / "fake.tflite"
    fake.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelError, match="not a TFLite flatbuffer"):
        open_runner(fake)
    bad_onnx = tmp_path / "bad.onnx"
    bad_onnx.write_bytes(b"garbage")
    with pytest.raises(ModelError, match="ONNX Runtime cannot load it"):
        open_runner(bad_onnx)
    other = tmp_path / "model.pt"
    other.write_bytes(b"x")
    with pytest.raises(ModelError, match="unknown artifact type '.pt'"):
        open_runner(other)


def test_input_shapes_are_adapted_or_refused(tmp_path):
    x = np.zeros((2, 28, 28), np.float32)
    assert check_input(x, (784,), tmp_path / "m.onnx").shape == (2, 784)
    with pytest.raises(ModelError, match=r"m.onnx takes inputs of shape \(32, 32\) per example; got \(28, 28\)"):
        check_input(x, (32, 32), tmp_path / "m.onnx")
