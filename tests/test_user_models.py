"""Any user .keras model is first class: its input is adapted and its output meaning inferred."""

from __future__ import annotations

import numpy as np
import pytest

from edgeseq.errors import ModelError

keras = pytest.importorskip("keras")


def _save(model, path):
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.save(path)
    return path


def test_conv_model_with_channel_input(tmp_path, small_mnist_dir):
    from edgeseq.training.evaluate import evaluate

    L = keras.layers
    model = keras.Sequential([keras.Input((28, 28, 1)), L.Conv2D(4, 3, activation="relu"), L.BatchNormalization(),
                              L.MaxPooling2D(), L.DepthwiseConv2D(3), L.GlobalAveragePooling2D(),
                              L.Dense(10, activation="softmax")])
    path = _save(model, tmp_path / "mine.keras")
    result = evaluate(path, data_dir=small_mnist_dir, limit=40)
    assert result.kind == "classify" and result.examples == 40 and 0 <= result.metrics["accuracy"] <= 1
    assert (tmp_path / "confusion.png").is_file()


def test_flat_input_mlp(tmp_path, small_mnist_dir):
    from edgeseq.training.evaluate import evaluate

    model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(10, activation="softmax")])
    result = evaluate(_save(model, tmp_path / "flat.keras"), data_dir=small_mnist_dir, limit=20)
    assert result.examples == 20


def test_unknown_output_meaning_is_explained(tmp_path, small_mnist_dir):
    from edgeseq.training.evaluate import evaluate

    model = keras.Sequential([keras.Input((28, 28)), keras.layers.Flatten(), keras.layers.Dense(3)])
    with pytest.raises(ModelError, match=r"cannot tell what output shape \(3,\) means"):
        evaluate(_save(model, tmp_path / "three.keras"), data_dir=small_mnist_dir, limit=5)


def test_input_that_is_not_an_mnist_image(tmp_path, small_mnist_dir):
    from edgeseq.errors import DataError
    from edgeseq.training.evaluate import evaluate

    model = keras.Sequential([keras.Input((32, 32)), keras.layers.Flatten(), keras.layers.Dense(10)])
    with pytest.raises(DataError, match=r"model input \(32, 32\) holds 1024 values"):
        evaluate(_save(model, tmp_path / "big.keras"), data_dir=small_mnist_dir, limit=5)
    assert np.prod((32, 32)) == 1024
