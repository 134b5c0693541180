"""Keras -> .tflite: fp32, fp16, dynamic-range and full-integer int8 (int8 input and output tensors).

The batch dimension is fixed (default 1): TFLite cannot lower Keras 3 recurrent loops with a dynamic
batch (``TensorListReserve ... element_shape to be static``), and batch 1 is what an edge device runs.
"""

from __future__ import annotations

import contextlib
import functools
import tempfile
from pathlib import Path

import numpy as np
from edgeseq.export import rewrite
from edgeseq.export import selection as select
from edgeseq.export import tflite_graph as graph

from edgeseq.atomic import atomic_path
from edgeseq.formats import Quant
from edgeseq.lazy import require


def convert(model, out_path: Path, quant: Quant, calibration: np.ndarray | None = None, batch: int = 1,
            selection: np.ndarray | None = None) -> dict:
    """Convert ``model`` and write ``out_path``; returns the recipe that was used.

    calibration: (N, *input_shape) float32, required for int8 (the representative dataset).
    selection: held-out images on which the recurrent int8 recipe picks between its candidates.
    """
    tf = require("tensorflow")
    quant = Quant(quant)
    recipe = {"converter": f"tf.lite.TFLiteConverter.from_saved_model {tf.__version__}", "batch": batch}
    input_shape = _input_shape(model)
    with _saved_model(tf, model, batch) as saved:
        # recurrent layers become WHILE loops, which the converter's int8 path crashes on: look first
        fp32 = _convert(tf, saved, Quant.fp32, None, input_shape, batch, {}) if quant is Quant.int8 else None
        if fp32 is not None and graph.has_while(fp32):
            graphs = {"keras cells": fp32}
            fused, rewritten = rewrite.concat_simple_rnn(model)
            if rewritten:
                with _saved_model(tf, fused, batch) as fused_saved:
                    graphs["concatenated SimpleRNN cell"] = _convert(tf, fused_saved, Quant.fp32, None, input_shape,
                                                                     batch, {})
            flatbuffer = _int8_loops(tf, graphs, _samples(calibration, input_shape), batch, recipe,
                                     select.reference(model, selection))
        else:
            flatbuffer = _convert(tf, saved, quant, calibration, input_shape, batch, recipe)
    with atomic_path(out_path) as tmp:
        tmp.write_bytes(flatbuffer)
    return recipe


def _input_shape(model) -> tuple:
    return tuple(int(d) for d in model.inputs[0].shape[1:])


@contextlib.contextmanager
def _saved_model(tf, model, batch: int):
    """A SavedModel directory of ``model`` at a fixed ``batch`` (image input named "image"), removed after."""
    input_shape = _input_shape(model)
    with tempfile.TemporaryDirectory() as saved_model:
        # Keras 3 weights are resource variables: a bare concrete function keeps them as READ_VARIABLE
        # ops with no data (the artifact runs and returns NaN). A SavedModel gets them frozen.
        archive = require("keras").export.ExportArchive()
        archive.track(model)
        archive.add_endpoint("serve", functools.partial(model.__call__, training=False),
                             input_signature=[tf.TensorSpec([batch, *input_shape], tf.float32, name="image")])
        archive.write_out(saved_model, verbose=False)
        yield saved_model


def _convert(tf, saved_model: str, quant: Quant, calibration, input_shape: tuple, batch: int, recipe: dict) -> bytes:
    """The converter's output for a SavedModel from :func:`_saved_model` (a fresh converter each call)."""
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model)
    return _configured(tf, converter, quant, calibration, input_shape, batch, recipe).convert()


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
        samples = _samples(calibration, input_shape)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = functools.partial(_representative, samples, batch)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
        recipe.update(weights="int8 per-channel", activations="int8 per-tensor", io="int8",
                      calibration_images=len(samples))
    return converter


def _samples(calibration: np.ndarray | None, input_shape: tuple) -> np.ndarray:
    if calibration is None or not len(calibration):
        raise ValueError("int8 conversion needs calibration images")
    return np.asarray(calibration, np.float32).reshape((-1, *input_shape))


def _representative(samples: np.ndarray, batch: int):
    for start in range(0, len(samples) - batch + 1, batch):
        yield [samples[start : start + batch]]


# Weight granularity candidates of the recurrent int8 recipe: name -> per-channel?
WEIGHT_CANDIDATES = {"per-channel": True, "per-tensor": False}


def _int8_loops(tf, graphs: dict[str, bytes], samples: np.ndarray, batch: int, recipe: dict,
                reference: tuple | None) -> bytes:
    """Full-integer int8 of models with WHILE loops, through the converter's own calibrator and quantizer.

    graphs: float flatbuffers of the same function (the Keras cells, and rewrites of them). The loop
    stays a loop (a cell's weights are stored once); see :mod:`edgeseq.export.tflite_graph` for the
    surgery before and after quantization. Every graph is quantized with per-channel and per-tensor
    weights; the candidate that agrees best with Keras on ``reference`` wins (the first on a tie, or
    when there is no reference).
    """
    calibrator = require("tensorflow.lite.python.optimize.calibrator")
    mlir = require("tensorflow.lite.python.convert")
    built, notes = {}, {}
    for graph_name, fp32 in graphs.items():
        model = graph.load(fp32)
        rerouted = graph.break_while_passthrough(model)
        prepared = calibrator.add_intermediate_tensors(graph.dump(model))
        calibrated = graph.load(calibrator.Calibrator(prepared).calibrate(
            functools.partial(_representative, samples, batch)))
        clamped = graph.clamp_saturating_ranges(calibrated)
        calibrated = graph.dump(calibrated)
        for weights, per_channel in WEIGHT_CANDIDATES.items():
            name = f"{graph_name}, {weights} weights"
            quantized = graph.load(mlir.mlir_quantize(calibrated, disable_per_channel=not per_channel,
                                                      input_data_type=tf.int8, output_data_type=tf.int8))
            folded = graph.fold_while_boundaries(quantized)
            graph.slim(quantized)
            built[name] = graph.dump(quantized)
            notes[name] = {"graph": graph_name, "weights": f"int8 {weights}", "passthrough_rerouted": rerouted,
                           "saturating_ranges_clamped": clamped, "int8_loop_variables": folded}
    with tempfile.TemporaryDirectory() as scratch:
        paths = {}
        for index, (name, flatbuffer) in enumerate(built.items()):
            paths[name] = Path(scratch) / f"candidate-{index}.tflite"
            paths[name].write_bytes(flatbuffer)
        chosen, selection = select.choose(paths, reference, preferred=next(iter(built)))
    note = notes[chosen]
    recipe.update(
        weights=note["weights"], activations="int8 per-tensor", io="int8", calibration_images=len(samples),
        while_loop={"kept": "WHILE: cell weights stored once, run once per time step",
                    "cell": note["graph"],
                    "calibration": "converter calibrator; loop variables passed through unchanged rerouted "
                                   f"(tensorflow#75140): {note['passthrough_rerouted']}",
                    "saturating_ranges_clamped": note["saturating_ranges_clamped"],
                    "int8_loop_variables": note["int8_loop_variables"]},
        **selection)
    return built[chosen]
