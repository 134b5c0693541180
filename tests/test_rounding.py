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
    model = keras.Sequential([keras.Input((28, 28)), keras.layers.LSTM(8), keras.layers.Activation("softmax")])
    assert rounding.round_weights(model, np.zeros((4, 28, 28), np.float32)) == (model, [])


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
