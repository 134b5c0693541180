"""Keras -> .tflite: fp32, fp16, dynamic-range and full-integer int8 (int8 input and output tensors).

The batch dimension is fixed (default 1): TFLite cannot lower Keras 3 recurrent loops with a dynamic
batch (``TensorListReserve ... element_shape to be static``), and batch 1 is what an edge device runs.
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import numpy as np

from edgeseq.atomic import atomic_path
from edgeseq.formats import Quant
from edgeseq.lazy import require


def convert(model, out_path: Path, quant: Quant, calibration: np.ndarray | None = None, batch: int = 1) -> dict:
    """Convert ``model`` and write ``out_path``; returns the recipe that was used.

    calibration: (N, *input_shape) float32, required for int8 (the representative dataset).
    """
    tf = require("tensorflow")
    quant = Quant(quant)
    input_shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    with tempfile.TemporaryDirectory() as saved_model:
        # Keras 3 weights are resource variables: a bare concrete function keeps them as READ_VARIABLE
        # ops with no data (the artifact runs and returns NaN). A SavedModel gets them frozen.
        archive = require("keras").export.ExportArchive()
        archive.track(model)
        archive.add_endpoint("serve", functools.partial(model.__call__, training=False),
                             input_signature=[tf.TensorSpec([batch, *input_shape], tf.float32, name="image")])
        archive.write_out(saved_model, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved_model)
        recipe = {"converter": f"tf.lite.TFLiteConverter.from_saved_model {tf.__version__}", "batch": batch}
        flatbuffer = _configured(tf, converter, quant, calibration, input_shape, batch, recipe).convert()
    with atomic_path(out_path) as tmp:
        tmp.write_bytes(flatbuffer)
    return recipe


def _configured(tf, converter, quant: Quant, calibration, input_shape: tuple, batch: int, recipe: dict):
    """Set the converter up for ``quant``; records what was set in ``recipe``."""
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]  # plain LiteRT, no Flex delegate
    if quant is Quant.fp16:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
        recipe["weights"] = "float16"
    elif quant is Quant.dynamic:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        recipe["weights"] = "int8 (dynamic-range: activations quantized on the fly)"
    elif quant is Quant.int8:
        if calibration is None or not len(calibration):
            raise ValueError("int8 conversion needs calibration images")
        samples = np.asarray(calibration, np.float32).reshape((-1, *input_shape))

        def representative():
            for start in range(0, len(samples) - batch + 1, batch):
                yield [samples[start : start + batch]]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
        recipe.update(weights="int8 per-channel", activations="int8 per-tensor", io="int8",
                      calibration_images=len(samples))
    return converter
