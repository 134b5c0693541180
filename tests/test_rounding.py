"""Weights rounded by output error: on the int8 grid a converter measures again, with less output error
than nearest rounding, on every kind of layer it rounds; and what a converter makes of the copy."""

from __future__ import annotations

import numpy as np
import pytest

from edgeseq.export import rounding


def _correlated(rng, n: int, d: int) -> np.ndarray:
    """Inputs whose features move together, as neighbouring pixels and channels do."""
    return rng.normal(size=(n, 4)) @ rng.normal(size=(4, d)) + 0.1 * rng.normal(size=(n, d))


def test_grid_rounding_has_less_output_error_and_keeps_the_scale_a_converter_measures():
    rng = np.random.default_rng(0)
    x = _correlated(rng, 4000, 48)
    w = rng.normal(size=(16, 48)) * rng.uniform(0.1, 3.0, size=(16, 1))  # channels of different ranges
    h = x.T @ x / len(x)
    done = rounding.grid_round(w, h)
    scale = np.abs(w).max(axis=1, keepdims=True) / 127
    steps = done / scale
    assert np.allclose(steps, np.round(steps), atol=1e-6) and np.abs(steps).max() <= 127 + 1e-6
    assert np.allclose(np.abs(done).max(axis=1), np.abs(w).max(axis=1))  # the same scale, measured again
    assert np.allclose(rounding.nearest(done), done)  # a converter's nearest rounding keeps every integer
    before = rounding.output_error(w, rounding.nearest(w), h)
    after = rounding.output_error(w, done, h)
    assert after < 0.5 * before, (before, after)
    assert np.isclose(np.mean((x @ (done - w).T) ** 2), after)  # the error the layer's outputs show


def test_patches_read_what_a_convolution_reads():
    keras = pytest.importorskip("keras")
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 9, 8, 3)).astype(np.float32)
    kernel = rng.normal(size=(3, 3, 3, 5)).astype(np.float32)
    for padding, strides, dilation in (("same", (1, 1), (1, 1)), ("valid", (2, 2), (1, 1)), ("same", (2, 1), (1, 1)),
                                       ("valid", (1, 1), (2, 2))):
        expected = np.asarray(keras.ops.conv(x, kernel, strides=strides, padding=padding, dilation_rate=dilation))
        rows = rounding.patches(x, (3, 3), strides, padding, dilation)
        got = (rows @ kernel.reshape(-1, 5)).reshape(expected.shape)
        assert np.allclose(got, expected, atol=1e-4), (padding, strides, dilation)


def _every_kind(keras):
    L = keras.layers
    x = inputs = keras.Input((28, 28, 1))
    x = L.Conv2D(8, 3, strides=2, activation="relu", name="conv")(x)
    x = L.DepthwiseConv2D(3, padding="same", depth_multiplier=2, activation="relu", name="dw")(x)
    x = L.SeparableConv2D(12, 3, padding="same", activation="relu", name="sep")(x)
    x = L.Reshape((13, 13 * 12))(x)
    x = L.Conv1D(8, 3, activation="relu", name="conv1d")(x)
    x = L.Dense(16, activation="relu", name="dense")(L.Flatten()(x))
    return keras.Model(inputs, L.Dense(10, activation="softmax", name="out")(x))


def test_every_roundable_layer_is_rounded_onto_its_grid_with_less_error(splits):
    keras = pytest.importorskip("keras")
    keras.utils.set_random_seed(3)
    model = _every_kind(keras)
    images = splits[0].images[:300].reshape((-1, 28, 28, 1))
    copy, records = rounding.round_weights(model, images)
    assert [r["layer"] for r in records] == ["conv", "dw", "sep", "conv1d", "dense", "out"]
    for record in records:
        before, after = record["output_error"]
        assert after < before, record
    layers = {layer.name: layer for layer in copy.layers}
    for name in ("conv", "conv1d", "dense", "out"):
        kernel = layers[name].get_weights()[0]
        w = kernel.reshape(-1, kernel.shape[-1]).T
        assert np.allclose(rounding.nearest(w), w, atol=1e-6), name  # on the grid: nearest rounding is a no-op
    depthwise = layers["dw"].get_weights()[0]  # (3, 3, 8, 2): each output channel its own grid
    for c in range(8):
        w = depthwise[:, :, c, :].reshape(-1, 2).T
        assert np.allclose(rounding.nearest(w), w, atol=1e-6)
    original = {layer.name: layer.get_weights() for layer in model.layers}
    assert np.array_equal(layers["out"].get_weights()[1], original["out"][1])  # biases stay
    agreement = (np.asarray(copy(images)).argmax(-1) == np.asarray(model(images)).argmax(-1)).mean()
    assert agreement > 0.97


def test_a_model_without_roundable_layers_is_returned_as_it_is():
    keras = pytest.importorskip("keras")
    model = keras.Sequential([keras.Input((28, 28)), keras.layers.LSTM(8, go_backwards=True),
                              keras.layers.Activation("softmax")])  # its states run backwards: not measured
    assert rounding.round_weights(model, np.zeros((4, 28, 28), np.float32)) == (model, [])


def _on_grid(w: np.ndarray) -> bool:
    """Per output channel (the last axis), every weight on that channel's max|w| / 127 grid."""
    rows = w.reshape(-1, w.shape[-1]).T
    return bool(np.allclose(rounding.nearest(rows), rows, atol=1e-6))


@pytest.mark.parametrize("kind", ["SimpleRNN", "LSTM", "GRU"])
def test_recurrent_kernels_are_rounded_on_the_states_each_step_reads(splits, kind):
    """Both kernels on their grids with less output error; jointly (the concatenated SimpleRNN cell's one
    matrix), the two on one grid per output channel instead."""
    keras = pytest.importorskip("keras")
    keras.utils.set_random_seed(5)
    model = keras.Sequential([keras.Input((28, 28)), getattr(keras.layers, kind)(12, name="cell"),
                              keras.layers.Dense(10, activation="softmax", name="out")])
    images = splits[0].images[:200].reshape((-1, 28, 28)).astype(np.float32)
    copy, records = rounding.round_weights(model, images)
    assert [r["layer"] for r in records] == ["cell", "out"]
    assert all(r["output_error"][1] < r["output_error"][0] for r in records), records
    kernel, recurrent = copy.get_layer("cell").get_weights()[:2]
    assert _on_grid(kernel) and _on_grid(recurrent)
    bias = model.get_layer("cell").get_weights()[2]
    assert np.array_equal(copy.get_layer("cell").get_weights()[2], bias)  # biases stay
    if kind == "SimpleRNN":
        joint, records = rounding.round_weights(model, images, joint=True)
        stacked = np.concatenate(joint.get_layer("cell").get_weights()[:2], axis=0)
        assert _on_grid(stacked) and records[0]["output_error"][1] < records[0]["output_error"][0]
    agreement = (np.asarray(copy(images)).argmax(-1) == np.asarray(model(images)).argmax(-1)).mean()
    assert agreement > 0.97


def test_the_concatenated_cell_keeps_the_integers_the_joint_rounding_chose(splits):
    """The rounded SimpleRNN graph, quantized per channel as the int8 search does: the converter's
    integers times its scales are the rounded [kernel; recurrent kernel], exactly."""
    keras = pytest.importorskip("keras")
    tf = pytest.importorskip("tensorflow")
    from edgeseq.export import tflite, tflite_int8
    from edgeseq.export import tflite_graph as graph

    keras.utils.set_random_seed(6)
    model = keras.Sequential([keras.Input((28, 28)), keras.layers.SimpleRNN(16, name="cell"),
                              keras.layers.Dense(10, activation="softmax", name="out")])
    samples = splits[0].images[:64].reshape((-1, 28, 28)).astype(np.float32)
    with tflite._saved_model(tf, model, 1) as saved:
        graphs = {"keras cells": tflite._convert(tf, saved, tflite.Quant.fp32, None, (28, 28), 1, {})}
    fused, _ = tflite.rewrite.concat_simple_rnn(model)
    with tflite._saved_model(tf, fused, 1) as saved:
        graphs["concatenated SimpleRNN cell"] = tflite._convert(tf, saved, tflite.Quant.fp32, None, (28, 28), 1, {})
    models = tflite._rounded_graphs(tf, model, samples, 1, graphs)
    name = f"concatenated SimpleRNN cell, {tflite.ROUNDED}"
    assert set(models) == {f"keras cells, {tflite.ROUNDED}", name}
    stacked = np.concatenate(models[name].get_layer("cell").get_weights()[:2], axis=0).T  # (out, in)
    c = tflite_int8._Calibrated(tf, name, graphs[name], samples, 1, models[name])
    quantized = graph.load(c.quantize(per_channel=True))
    found = 0
    for subgraph in quantized.subgraphs:
        for tensor in subgraph.tensors:
            if tuple(tensor.shape) == stacked.shape and tensor.type == graph.INT8:
                data = np.frombuffer(bytes(bytearray(quantized.buffers[tensor.buffer].data)), np.int8)
                scales = np.asarray(tensor.quantization.scale, np.float32)[:, None]
                assert np.allclose(data.reshape(stacked.shape) * scales, stacked, atol=1e-6)
                found += 1
    assert found == 1


def test_the_16_bit_candidate_keeps_the_integers_the_rounding_chose(splits):
    """TFLite measures each channel's scale again and rounds to nearest: on the grid, it changes nothing."""
    keras = pytest.importorskip("keras")
    tf = pytest.importorskip("tensorflow")
    from ai_edge_litert.interpreter import Interpreter
    from edgeseq.export import tflite

    keras.utils.set_random_seed(4)
    L = keras.layers
    model = keras.Sequential([keras.Input((28, 28)), L.Flatten(), L.Dense(24, activation="relu"),
                              L.Dense(10, activation="softmax")])
    samples = splits[0].images[:200].reshape((-1, 28, 28)).astype(np.float32)
    rounded, _ = rounding.round_weights(model, samples)
    interpreter = Interpreter(model_content=tflite._sixteen(tf, model, samples, 1))
    interpreter.allocate_tensors()
    found = 0
    for detail in interpreter.get_tensor_details():
        for layer in rounded.layers[1:]:
            kernel = layer.get_weights()[0].T  # (out, in), as FULLY_CONNECTED stores it
            if detail["dtype"] == np.int8 and tuple(detail["shape"]) == kernel.shape:
                scales = detail["quantization_parameters"]["scales"][:, None]
                assert np.allclose(interpreter.get_tensor(detail["index"]) * scales, kernel, atol=1e-6)
                found += 1
    assert found == 2


def test_dynamic_range_of_a_recurrent_model_runs_the_rounded_kernels(splits, tmp_path):
    """TFLite dynamic range of a WHILE loop quantizes the rounded copy's kernels (those of 1,024 weights or
    more: the converter leaves smaller ones float, so those keep their own values), and keeps its integers."""
    keras = pytest.importorskip("keras")
    pytest.importorskip("tensorflow")
    from edgeseq.export import tflite
    from edgeseq.export import tflite_graph as graph

    keras.utils.set_random_seed(7)
    model = keras.Sequential([keras.Input((28, 28)), keras.layers.SimpleRNN(40, name="cell"),
                              keras.layers.Dense(10, activation="softmax", name="out")])
    samples = splits[0].images[:64].reshape((-1, 28, 28)).astype(np.float32)
    recipe = tflite.convert(model, tmp_path / "m.tflite", tflite.Quant.dynamic, samples)
    assert recipe["rounded"] == ["cell"] and tflite.ROUNDED in recipe["weights"]
    rounded, _ = rounding.round_weights(model, samples, min_elements=tflite.DYNAMIC_MIN_ELEMENTS)
    kernels = {w.shape[::-1]: w.T for w in rounded.get_layer("cell").get_weights()[:2]}  # (out, in)
    flatbuffer = graph.load((tmp_path / "m.tflite").read_bytes())
    found = 0
    for subgraph in flatbuffer.subgraphs:  # the cell's weights are in the WHILE body
        for tensor in subgraph.tensors:
            kernel = kernels.get(tuple(tensor.shape))
            if tensor.type == graph.INT8 and kernel is not None:
                data = np.frombuffer(bytes(bytearray(flatbuffer.buffers[tensor.buffer].data)), np.int8)
                scales = np.asarray(tensor.quantization.scale, np.float32)
                scales = scales[:, None] if len(scales) == len(kernel) else scales
                assert np.allclose(data.reshape(kernel.shape) * scales, kernel, atol=1e-6)
                found += 1
    assert found == 2


def test_onnx_integer_graphs_of_an_unrolled_cell_run_the_rounded_kernels(splits, tmp_path):
    """ORT's dynamic quantizer, int8 per-channel, on the rounded copy's unrolled SimpleRNN: its integers
    times its scales are the rounded kernels, exactly (ORT's symmetric grid is the one they were rounded
    on); the small output layer the integer graphs keep float keeps its own weights."""
    keras = pytest.importorskip("keras")
    pytest.importorskip("tensorflow")
    onnx = pytest.importorskip("onnx")
    from edgeseq.export import onnx as onnx_export
    from edgeseq.export import onnx_quant

    keras.utils.set_random_seed(8)
    model = keras.Sequential([keras.Input((28, 28)), keras.layers.SimpleRNN(16, name="cell"),
                              keras.layers.Dense(10, activation="softmax", name="out")])
    samples = splits[0].images[:64].reshape((-1, 28, 28)).astype(np.float32)
    source = tmp_path / "fp32.onnx"
    onnx_export.convert_fp32(model, source, fuse=False, keep_names=True)
    rounded = onnx_export._rounded(model, samples, source, tmp_path / "rounded.onnx")
    assert rounded.layers == ["cell"]
    copy, _ = rounding.round_weights(model, samples, skip=frozenset({"out"}))
    kernels = {w.shape: w for w in copy.get_layer("cell").get_weights()[:2]}  # (in, out), as MatMul reads them
    family = onnx_quant._dynamic_family(tmp_path, rounded.path, 28, 0, rounded.keras, on_grid=True)
    assert list(family.variants) == [", int8 per-channel"]
    graph = onnx.load(str(family.build("candidate", [], **family.variants[", int8 per-channel"]))).graph
    arrays = {i.name: onnx.numpy_helper.to_array(i) for i in graph.initializer}
    found = set()
    for node in graph.node:
        if node.op_type == "DynamicQuantizeMatMul" and node.input[1] in arrays:
            q, scale = arrays[node.input[1]], arrays[node.input[2]]
            kernel = kernels.get(q.shape)
            if q.dtype == np.int8 and kernel is not None:
                assert np.allclose(q * scale.reshape(1, -1), kernel, atol=1e-6)
                found.add(q.shape)
    assert found == set(kernels)
    head = [onnx.numpy_helper.to_array(i) for i in onnx.load(str(rounded.path)).graph.initializer
            if tuple(i.dims) == (16, 10)]
    assert len(head) == 1 and np.array_equal(head[0], model.get_layer("out").get_weights()[0])
