"""Keras -> .tflite: fp32, fp16, dynamic-range and int8 (int8 input; int8 output, or float32 where
the int8 search leaves the output layer float).

The batch dimension is fixed (default 1): TFLite cannot lower Keras 3 recurrent loops with a dynamic
batch (``TensorListReserve ... element_shape to be static``), and batch 1 is what an edge device runs.
"""

from __future__ import annotations

import contextlib
import functools
import tempfile
from pathlib import Path

import numpy as np
from edgeseq.export import equalize, rewrite, rounding
from edgeseq.export import tflite_graph as graph

from edgeseq.atomic import atomic_path
from edgeseq.formats import Quant
from edgeseq.lazy import require


def convert(model, out_path: Path, quant: Quant, calibration: np.ndarray | None = None, batch: int = 1,
            selection=None) -> dict:
    """Convert ``model`` and write ``out_path``; returns the recipe that was used.

    calibration: (N, *input_shape) float32, required for int8 (the representative dataset).
    selection: a :class:`edgeseq.export.search.Selection` of held-out images the int8 search measures on.
    """
    tf = require("tensorflow")
    quant = Quant(quant)
    recipe = {"converter": f"tf.lite.TFLiteConverter.from_saved_model {tf.__version__}", "batch": batch}
    input_shape = _input_shape(model)
    with _saved_model(tf, model, batch) as saved:
        if quant is Quant.int8:
            samples = _samples(calibration, input_shape)
            fp32 = _convert(tf, saved, Quant.fp32, None, input_shape, batch, {})
            loops = graph.has_while(fp32)
            # recurrent layers become WHILE loops, which the converter's own int8 path crashes on
            graphs = {"keras cells" if loops else "float graph": fp32}
            if loops:
                fused, rewritten = rewrite.concat_simple_rnn(model)
                if rewritten:
                    with _saved_model(tf, fused, batch) as fused_saved:
                        graphs["concatenated SimpleRNN cell"] = _convert(tf, fused_saved, Quant.fp32, None,
                                                                         input_shape, batch, {})
            models = _rounded_graphs(tf, model, samples, batch, graphs) if loops else {}
            equalized = functools.partial(_equalized, tf, model, samples, batch, next(iter(graphs)))
            stock = None if loops else _convert(tf, saved, quant, samples, input_shape, batch, {})
            sixteen = None if loops else functools.partial(_sixteen, tf, model, samples, batch)
            from edgeseq.export import tflite_int8

            flatbuffer = tflite_int8.search_int8(tf, graphs, stock, sixteen, samples, batch, recipe, selection, model,
                                                 equalized, models)
        elif quant is Quant.dynamic and calibration is not None and len(calibration):
            flatbuffer = _dynamic(tf, model, saved, calibration, batch, recipe)
        else:
            flatbuffer = _convert(tf, saved, quant, calibration, input_shape, batch, recipe)
    with atomic_path(out_path) as tmp:
        tmp.write_bytes(flatbuffer)
    return recipe


def _equalized(tf, model, samples: np.ndarray, batch: int, graph_name: str):
    """A :class:`edgeseq.export.tflite_int8.Equalized` float graph of ``model`` with its channel ranges
    equalized (:mod:`edgeseq.export.equalize`), or None where no tensor can be."""
    from edgeseq.export import tflite_int8

    same, pairs = equalize.equalize(model, samples)
    if not pairs:
        return None
    with _saved_model(tf, same, batch) as saved:
        fp32 = _convert(tf, saved, Quant.fp32, None, _input_shape(model), batch, {})
    return tflite_int8.Equalized(f"{graph_name}, channels equalized", fp32, same, [p.record() for p in pairs])


DYNAMIC_MIN_ELEMENTS = 1024  # the converter's dynamic range leaves smaller weights float


def _dynamic(tf, model, saved: str, calibration: np.ndarray, batch: int, recipe: dict) -> bytes:
    """Dynamic range of ``model``; where it has recurrent loops, of a copy with the kernels the converter
    quantizes rounded by output error (:mod:`edgeseq.export.rounding`): the weights are all a dynamic-range
    model quantizes, and a cell's weights are where a loop loses (zoo rnn on benchmarks/int8_robustness.py's
    distorted digits: 98.15 % agreement with Keras rounded to nearest, 98.80 % rounded so; the 1-epoch
    SimpleRNN's 98.00 % -> 99.20 %)."""
    input_shape = _input_shape(model)
    # only a recurrent layer makes a loop: the fp32 graph that says whether it did is converted for those alone
    if rounding.has_recurrent(model) and graph.has_while(_convert(tf, saved, Quant.fp32, None, input_shape, batch, {})):
        rounded, done = rounding.round_weights(model, _samples(calibration, input_shape), min_elements=DYNAMIC_MIN_ELEMENTS)
        if done:
            with _saved_model(tf, rounded, batch) as rounded_saved:
                flatbuffer = _convert(tf, rounded_saved, Quant.dynamic, None, input_shape, batch, recipe)
            recipe.update(weights=f"{recipe['weights']}, {ROUNDED} (calibration images: {len(calibration)})",
                          rounded=[r["layer"] for r in done])
            return flatbuffer
    return _convert(tf, saved, Quant.dynamic, None, input_shape, batch, recipe)


ROUNDED = "rounded by output error"  # the suffix of a float graph made from rounding.round_weights' copy


def _rounded_graphs(tf, model, samples: np.ndarray, batch: int, graphs: dict[str, bytes]) -> dict[str, object]:
    """Add to ``graphs`` each recurrent float graph again, made from a copy of ``model`` whose kernels are
    rounded by output error (:mod:`edgeseq.export.rounding`; for the concatenated SimpleRNN cell, its two
    kernels on one grid, as that graph quantizes them). Returns each added graph's Keras model (which
    layer each op is, by kernel values). On the zoo rnn's distorted digits (benchmarks/int8_robustness.py)
    the cell's int8 weights alone agreed 98.15 % with Keras rounded to nearest, 99.50 % rounded so: where a
    WHILE cell's weights, not its activations, are what loses, this is the remedy."""
    models = {}
    for name, joint in (("keras cells", False), ("concatenated SimpleRNN cell", True)):
        if name not in graphs:
            continue
        rounded, done = rounding.round_weights(model, samples, joint=joint)
        if not done:
            break
        converted = rewrite.concat_simple_rnn(rounded)[0] if joint else rounded
        with _saved_model(tf, converted, batch) as saved:
            graphs[f"{name}, {ROUNDED}"] = _convert(tf, saved, Quant.fp32, None, _input_shape(model), batch, {})
        models[f"{name}, {ROUNDED}"] = rounded
    return models


def _sixteen(tf, model, samples: np.ndarray, batch: int) -> bytes:
    """TFLite 16x8 of ``model`` with its kernels rounded by output error (:mod:`edgeseq.export.rounding`).
    With int16 activations the int8 weights are what is left to lose, and rounding is what wins it back:
    on int8_robustness's residual-separable, 98.68 % agreement with nearest rounding, 99.78 % with this
    (4,000 test images); with int8 activations the same weights gained nothing (their error is not where
    that graph loses)."""
    rounded, _ = rounding.round_weights(model, samples)
    with _saved_model(tf, rounded, batch) as saved:
        return _convert(tf, saved, Quant.int8, samples, _input_shape(model), batch, {}, activations16=True)


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


def _convert(tf, saved_model: str, quant: Quant, calibration, input_shape: tuple, batch: int, recipe: dict,
             activations16: bool = False) -> bytes:
    """The converter's output for a SavedModel from :func:`_saved_model` (a fresh converter each call);
    ``activations16``: int8 becomes TFLite 16x8 (int16 activations and input/output, int8 weights)."""
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model)
    converter = _configured(tf, converter, quant, calibration, input_shape, batch, recipe)
    if activations16:
        converter.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
        converter.inference_input_type = converter.inference_output_type = tf.int16
    return converter.convert()


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
