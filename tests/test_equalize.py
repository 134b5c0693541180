"""Cross-layer equalization: the copy computes what the model computes, the channel ranges it evens out, the
tensors it must leave alone, and the int8 search taking it where one channel's range dwarfs the others."""

from __future__ import annotations

import numpy as np
import pytest

from edgeseq.formats import Quant
from conftest import trained

keras = pytest.importorskip("keras")
pytest.importorskip("tf2onnx")

TRAP = 300.0  # channel 0 of the trapped tensor spans this many times its original range


def _mixed(keras):
    """Every kind of pair, and what must not be one: a ReLU6 (capped), an Add (two readers), a Flatten."""
    L = keras.layers
    x = inputs = keras.Input((28, 28, 1))
    x = L.ReLU()(L.BatchNormalization(name="bn0")(L.Conv2D(8, 3, strides=2, use_bias=False, name="conv0")(x)))
    x = L.ReLU()(L.BatchNormalization(name="bn1")(L.DepthwiseConv2D(3, padding="same", name="dw1")(x)))
    x = L.Conv2D(16, 1, activation="relu", name="pw1")(x)
    y = L.ReLU(6.0)(L.Conv2D(16, 3, padding="same", name="capped")(x))  # ReLU6 is not homogeneous
    y = L.SeparableConv2D(16, 3, padding="same", name="sep")(y)
    x = L.Add()([x, y])  # pw1's output has two readers: not a pair
    x = L.MaxPooling2D(name="pool")(L.Conv2D(16, 3, activation="relu", name="conv2")(x))
    x = L.Dense(12, name="dense_hidden")(L.GlobalAveragePooling2D(name="gap")(L.Conv2D(24, 1, name="conv3")(x)))
    x = L.Flatten()(L.Reshape((3, 4))(L.ReLU()(x)))
    return keras.Model(inputs, L.Dense(10, activation="softmax", name="out")(x))


def test_equalized_copy_computes_the_same_and_evens_out_its_channels(splits):
    from edgeseq.export import equalize

    keras.utils.set_random_seed(0)
    model = _mixed(keras)
    for name in ("bn0", "bn1"):  # channels of very different ranges, as training leaves them
        gamma, beta, mean, var = model.get_layer(name).get_weights()
        spread = np.geomspace(0.05, 20, len(gamma)).astype(np.float32)
        model.get_layer(name).set_weights([gamma * spread, beta * spread, mean, var])
    images = splits[0].images[:256].reshape((-1, 28, 28, 1))
    copy, pairs = equalize.equalize(model, images)
    found = {(p.scaled, p.reader) for p in pairs}
    assert found == {("bn0", "dw1"), ("bn1", "pw1"), ("conv2", "conv3"), ("conv3", "dense_hidden"),
                     ("sep (depthwise)", "sep (pointwise)")}, found
    for p in pairs:
        assert p.spread_after <= p.spread_before + 1e-6, p
    by_reader = {p.reader: p for p in pairs}
    assert by_reader["dw1"].spread_before > 5 and by_reader["dw1"].spread_after < 1.01  # depthwise: full range each
    assert by_reader["conv3"].through == ("pool",)
    x = splits[1].images[:128].reshape((-1, 28, 28, 1))
    before, after = np.asarray(model(x)), np.asarray(copy(x))
    assert np.abs(before - after).max() < 1e-5
    changed = [layer.name for layer, other in zip(model.layers, copy.layers)
               if any(not np.array_equal(a, b) for a, b in zip(layer.get_weights(), other.get_weights()))]
    assert "capped" not in changed and "out" not in changed and "bn0" in changed and "dw1" in changed


def test_nothing_to_equalize_returns_the_model_itself(splits):
    from edgeseq.export import equalize

    L = keras.layers
    model = keras.Sequential([keras.Input((28, 28)), L.Flatten(), L.Dense(16, activation="relu6"), L.Dense(10)])
    same, pairs = equalize.equalize(model, splits[0].images[:32])
    assert same is model and pairs == []


@pytest.fixture(scope="module")
def trapped_cnn(tmp_path_factory, splits):
    """A small CNN, then channel 0 of the tensor between its batch norm and its depthwise conv made TRAP
    times larger, the depthwise kernel's channel 0 as much smaller: the same function, but one int8 scale
    for that tensor leaves its other channels a few levels."""
    L = keras.layers
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((28, 28, 1)), L.Conv2D(8, 3, strides=2, use_bias=False, name="conv"),
                              L.BatchNormalization(name="bn"), L.ReLU(name="relu"),
                              L.DepthwiseConv2D(3, name="dw"), L.ReLU(), L.GlobalAveragePooling2D(),
                              L.Dense(10, activation="softmax", name="out")])
    model = keras.models.load_model(trained(model, splits, tmp_path_factory.mktemp("trap") / "m.keras", epochs=6))
    gamma, beta, mean, var = model.get_layer("bn").get_weights()
    gamma[0], beta[0] = gamma[0] * TRAP, beta[0] * TRAP
    model.get_layer("bn").set_weights([gamma, beta, mean, var])
    kernel, bias = model.get_layer("dw").get_weights()
    kernel[:, :, 0, :] /= TRAP
    model.get_layer("dw").set_weights([kernel, bias])
    return model


def _int8(model, fmt: str, path, train) -> dict:
    """The int8 search of ``fmt`` on ``model``: 200 calibration images, 400 selection images; its recipe."""
    from edgeseq.export import onnx as to_onnx
    from edgeseq.export import tflite
    from edgeseq.export.search import Selection

    calibration = train.images[:200].reshape((-1, 28, 28, 1))
    selection = Selection.of(model, train.images[200:600].reshape((-1, 28, 28, 1)), train.labels[200:600])
    if fmt == "tflite":
        return tflite.convert(model, path, Quant.int8, calibration, selection=selection)
    fp32 = path.with_name("fp32.onnx")
    to_onnx.convert(model, fp32, Quant.fp32)
    return to_onnx.convert(model, path, Quant.int8, calibration, fp32_path=fp32, selection=selection)


@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_the_int8_search_takes_the_equalized_graph_where_a_channel_dwarfs_the_others(tmp_path, splits, trapped_cnn,
                                                                                     fmt):
    from edgeseq.runtimes import open_runner

    train, test = splits
    path = tmp_path / f"m.{fmt}"
    recipe = _int8(trapped_cnn, fmt, path, train)
    assert "cross-layer equalization" in {c["stage"] for c in recipe["search"]["candidates"]}
    assert "channels equalized" in recipe["candidate"], recipe["search"]["why"]
    assert ("bn", "dw") in [(p["from"], p["to"]) for p in recipe["equalized"]]
    x = test.images[:300].reshape((-1, 28, 28, 1))
    reference = np.asarray(trapped_cnn(x)).argmax(-1)
    agreement = (open_runner(path).run(x).argmax(-1) == reference).mean()
    plain = max(c["agreement"] for c in recipe["search"]["candidates"] if c["stage"] == "standard")
    assert agreement >= 0.98 and plain < 0.98, (agreement, plain)


@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_an_equalization_that_fails_is_a_remedy_less_not_a_failed_export(tmp_path, splits, trapped_cnn, fmt,
                                                                         monkeypatch):
    from edgeseq.export import equalize

    def broken(model, calibration, alpha=equalize.ALPHA):
        raise ValueError("equalized model differs from the original by 1.00e+00")

    monkeypatch.setattr(equalize, "equalize", broken)
    train = splits[0]
    path = tmp_path / f"m.{fmt}"
    recipe = _int8(trapped_cnn, fmt, path, train)
    assert path.is_file() and "channels equalized" not in recipe["candidate"]
    assert any(s.startswith("cross-layer equalization: equalized model differs")
               for s in recipe["search"].get("skipped", [])), recipe["search"].get("skipped")
