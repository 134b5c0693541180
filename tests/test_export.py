"""Export to every format and quantization, the bundle contract, verify, and what must fail loudly."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from edgeseq import bundle as bundles
from edgeseq.cli import app
from edgeseq.formats import Format, Quant
from edgeseq.verify import verify
from conftest import trained

keras = pytest.importorskip("keras")
pytest.importorskip("tf2onnx")
runner = CliRunner()


def test_every_format_and_quantization_is_produced(tiny_bundle):
    path, result = tiny_bundle
    artifacts = {a["id"]: a for a in result.manifest["artifacts"]}
    assert set(artifacts) == {f"{f.value}-{q.value}" for f in Format for q in Quant}
    assert result.failed == []
    for a in artifacts.values():
        file = result.bundle_dir / a["file"]
        assert a["status"] == "ok" and file.is_file() and a["bytes"] == file.stat().st_size
        assert a["sha256"] == bundles.sha256_file(file)
        assert a["recipe"] and a["coverage"]["macs"] == 28 * 28 * 32 + 32 * 10
    for fmt in ("tflite", "onnx"):
        fp32 = artifacts[f"{fmt}-fp32"]["bytes"]
        assert artifacts[f"{fmt}-int8"]["bytes"] < 0.4 * fp32 and artifacts[f"{fmt}-fp16"]["bytes"] < 0.6 * fp32
        assert artifacts[f"{fmt}-fp32"]["coverage"]["int8_mac_share"] == 0.0
        assert artifacts[f"{fmt}-int8"]["coverage"]["int8_mac_share"] >= 0.95
    tfl_int8 = artifacts["tflite-int8"]
    assert tfl_int8["inputs"][0]["dtype"] == "int8" and tfl_int8["outputs"][0]["dtype"] == "int8"
    assert tfl_int8["inputs"][0]["shape"] == [1, 28, 28] and tfl_int8["inputs"][0]["quantization"]["scale"] > 0
    assert tfl_int8["coverage"]["ops"]["int8"]["FULLY_CONNECTED"] == 2
    assert artifacts["onnx-fp32"]["inputs"][0]["shape"] == [None, 28, 28]
    selection = artifacts["onnx-int8"]["recipe"]["selection"]
    assert set(selection["agreement"]) == {"static QDQ", "dynamic integer"} and selection["images"] == 500  # 600 train - 100 calibration
    assert selection["agreement"][selection["chosen"]] == max(selection["agreement"].values())
    assert (artifacts["onnx-int8"]["recipe"].get("format") == "QDQ") == (selection["chosen"] == "static QDQ")


def test_manifest_and_reference_set(tiny_bundle, splits):
    path, result = tiny_bundle
    manifest = bundles.read_manifest(result.bundle_dir)
    assert manifest == json.loads((result.bundle_dir / "manifest.json").read_text())
    assert manifest["source"]["sha256"] == bundles.sha256_file(path) and manifest["source"]["card"] is False
    assert manifest["output"]["kind"] == "classify" and manifest["input"]["shape"] == [28, 28]
    assert manifest["calibration"]["images"] == 100
    assert {"tensorflow", "onnxruntime", "tf2onnx"} <= set(manifest["versions"])
    reference = bundles.read_reference(result.bundle_dir)
    _, test = splits
    assert reference.images.shape == (300, 28, 28) and reference.labels.tolist() == test.labels.tolist()
    np.testing.assert_allclose(reference.images, test.images, atol=1e-6)
    np.testing.assert_allclose(reference.outputs, keras.saving.load_model(path)(test.images), atol=1e-6)
    assert reference.test_sha256 == bundles.test_set_sha256(test.images, test.labels)


def test_verify_checks_every_artifact(tiny_bundle, small_mnist_dir):
    _, result = tiny_bundle
    report = verify(result.bundle_dir, data_dir=small_mnist_dir, write=False)
    rows = {r["id"]: r for r in report["artifacts"]}
    assert report["evaluated_on"].startswith("MNIST test set (300 images)")
    for fmt in ("tflite", "onnx"):
        fp32 = rows[f"{fmt}-fp32"]
        assert fp32["passed"], fp32["reasons"]
        assert fp32["parity"]["agreement"] == 1.0 and fp32["parity"]["max_abs_diff"] <= 1e-4
        assert rows[f"{fmt}-fp16"]["parity"]["agreement"] >= 0.99
        assert rows[f"{fmt}-int8"]["parity"]["agreement"] >= 0.95
    assert report["passed"] == all(r["passed"] for r in rows.values())


def test_verify_without_mnist_uses_the_reference_set(tiny_bundle, tmp_path, monkeypatch):
    _, result = tiny_bundle
    monkeypatch.setenv("EDGESEQ_DATA_DIR", str(tmp_path / "no-mnist-here"))
    report = verify(result.bundle_dir, write=False)
    assert report["evaluated_on"].startswith("bundle reference set (300 images")
    assert {r["id"]: r for r in report["artifacts"]}["onnx-fp32"]["passed"]


def _copy(result, tmp_path):
    return shutil.copytree(result.bundle_dir, tmp_path / "bundle")


def test_verify_fails_on_a_broken_artifact(tiny_bundle, tmp_path, small_mnist_dir):
    onnx = pytest.importorskip("onnx")
    bundle = _copy(tiny_bundle[1], tmp_path)
    manifest = json.loads((bundle / "manifest.json").read_text())
    entry = next(a for a in manifest["artifacts"] if a["id"] == "onnx-fp32")
    model = onnx.load(str(bundle / entry["file"]))
    weights = max(model.graph.initializer, key=lambda t: len(t.raw_data) or len(t.float_data))
    broken = onnx.numpy_helper.to_array(weights) * 1.5 + 0.05  # a converter bug, deliberately
    weights.CopyFrom(onnx.numpy_helper.from_array(broken.astype(np.float32), weights.name))
    onnx.save(model, str(bundle / entry["file"]))
    entry["sha256"] = bundles.sha256_file(bundle / entry["file"])  # the manifest agrees: only parity can tell
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    result = runner.invoke(app, ["verify", str(bundle), "--data-dir", str(small_mnist_dir)])
    assert result.exit_code == 1
    assert "onnx-fp32 FAIL: " in result.output and "max |diff|" in result.output
    assert "tflite-fp32 FAIL" not in result.output
    report = json.loads((bundle / "verify.json").read_text())
    assert not report["passed"] and (bundle / "verify.md").read_text().count("FAIL") >= 1


def test_verify_notices_a_changed_file(tiny_bundle, tmp_path, small_mnist_dir):
    bundle = _copy(tiny_bundle[1], tmp_path)
    target = next(bundle.glob("*-fp32.tflite"))
    data = bytearray(target.read_bytes())
    data[-100] ^= 0xFF
    target.write_bytes(bytes(data))
    result = runner.invoke(app, ["verify", str(bundle), "--data-dir", str(small_mnist_dir), "--json"])
    assert result.exit_code == 1
    row = next(r for r in json.loads(result.output)["artifacts"] if r["id"] == "tflite-fp32")
    assert row["status"] == "changed" and "SHA-256" in row["reasons"][0]


def test_user_conv_model_outside_the_zoo(tmp_path, splits):
    from edgeseq.export.bundle import export_bundle

    L = keras.layers
    model = keras.Sequential([keras.Input((28, 28, 1)), L.Conv2D(8, 3, activation="relu"), L.BatchNormalization(),
                              L.MaxPooling2D(), L.DepthwiseConv2D(3, activation="relu"), L.AveragePooling2D(2),
                              L.Flatten(), L.Dense(10, activation="softmax")])
    path = trained(model, splits, tmp_path / "conv.keras", epochs=2)
    result = export_bundle(path, formats=list(Format), quants=[Quant.fp32, Quant.int8], calibration_size=64,
                           train_split=splits[0], test_split=splits[1])
    assert result.failed == []
    report = verify(result.bundle_dir, write=False)
    rows = {r["id"]: r for r in report["artifacts"]}
    assert rows["tflite-fp32"]["passed"] and rows["onnx-fp32"]["passed"]
    assert rows["tflite-int8"]["coverage"]["ops"]["int8"].get("CONV_2D") == 1
    assert rows["tflite-int8"]["coverage"]["ops"]["int8"].get("DEPTHWISE_CONV_2D") == 1


def test_user_bidirectional_stacked_rnn(tmp_path, splits):
    from edgeseq.export.bundle import export_bundle

    L = keras.layers
    model = keras.Sequential([keras.Input((28, 28)), L.Bidirectional(L.LSTM(8, return_sequences=True)),
                              L.GRU(8), L.Dense(10, activation="softmax")])
    path = trained(model, splits, tmp_path / "birnn.keras", epochs=1)
    result = export_bundle(path, formats=list(Format), quants=[Quant.fp32], train_split=splits[0], test_split=splits[1])
    assert result.failed == []
    report = verify(result.bundle_dir, write=False)
    assert all(r["passed"] for r in report["artifacts"]), [r["reasons"] for r in report["artifacts"]]
    cov = {r["id"]: r["coverage"] for r in report["artifacts"]}
    # Loops are weighted by their 28 steps: the recurrent MACs dominate the 10-way head.
    assert cov["tflite-fp32"]["macs"] > 28 * 4 * 8 * (28 + 8) and cov["onnx-fp32"]["macs"] > 28 * 4 * 8 * (28 + 8)


def test_a_layer_that_cannot_be_exported_is_named(tmp_path, small_mnist_dir):
    L = keras.layers
    model = keras.Sequential([keras.Input((28, 28, 1)), L.Resizing(32, 32, interpolation="bicubic", name="upscale"),
                              L.Flatten(), L.Dense(10, activation="softmax")])
    model.save(tmp_path / "bicubic.keras")
    result = runner.invoke(app, ["export", str(tmp_path / "bicubic.keras"), "--format", "tflite", "--quant", "fp32",
                                 "--data-dir", str(small_mnist_dir), "--out", str(tmp_path / "b")])
    assert result.exit_code == 1
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    (entry,) = manifest["artifacts"]
    assert entry["status"] == "failed" and not (tmp_path / "b" / entry["file"]).exists()
    assert entry["error"].startswith("layer 'upscale' (Resizing) cannot be exported to tflite fp32: TF op ResizeBicubic")


def test_corrupt_or_foreign_model_files(tmp_path):
    text = tmp_path / "notes.keras"
    text.write_text("not a model")
    result = runner.invoke(app, ["export", str(text), "--out", str(tmp_path / "out")])
    assert result.exit_code == 1 and result.output.startswith("error: ") and "not a valid .keras file" in result.output
    assert not (tmp_path / "out" / "manifest.json").exists()
    onnx_file = tmp_path / "model.onnx"
    onnx_file.write_bytes(b"\x08\x07")
    result = runner.invoke(app, ["export", str(onnx_file)])
    assert result.exit_code == 1 and "not a Keras model file" in result.output


def test_unknown_format_or_quant_lists_the_valid_ones(tmp_path):
    result = runner.invoke(app, ["export", str(tmp_path / "x.keras"), "--format", "coreml"])
    assert result.exit_code == 1 and "unknown format 'coreml'; valid: tflite, onnx, all" in result.output
    result = runner.invoke(app, ["export", str(tmp_path / "x.keras"), "--quant", "int4"])
    assert "unknown quant 'int4'; valid: fp32, fp16, dynamic, int8, all" in result.output


def test_a_mixed_precision_model_exports_as_float32(tmp_path, small_mnist_dir, splits):
    from edgeseq.export.bundle import export_bundle
    from edgeseq.training.train import train

    run = train("mlp", out_dir=tmp_path / "mp", epochs=1, mixed_precision=True, train_split=splits[0],
                test_split=splits[1], progress=False)
    assert run.card["recipe"]["dtype_policy"] == "mixed_bfloat16"
    result = export_bundle(run.run_dir, formats=list(Format), quants=[Quant.fp32], train_split=splits[0],
                           test_split=splits[1])
    assert result.failed == [] and result.manifest["source"]["dtype_policy"] == "mixed_bfloat16"
    assert result.manifest["source"]["exported_as"].startswith("float32 (trained under mixed_bfloat16")
    report = verify(result.bundle_dir, data_dir=small_mnist_dir, write=False)
    assert all(r["passed"] for r in report["artifacts"]), [r["reasons"] for r in report["artifacts"]]


@pytest.mark.parametrize("layer", ["SimpleRNN", "GRU", "LSTM"])
def test_onnx_int8_runs_the_recurrent_cell_on_integer_kernels(layer, tmp_path, splits, small_mnist_dir):
    """Guard: an int8 artifact whose recurrent ops stay float must fail this test, whatever its accuracy."""
    from edgeseq.export.bundle import export_bundle

    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((28, 28)), getattr(keras.layers, layer)(16),
                              keras.layers.Dense(10, activation="softmax")])
    path = trained(model, splits, tmp_path / f"{layer}.keras", epochs=2)
    result = export_bundle(path, formats=[Format.onnx], quants=[Quant.fp32, Quant.int8], calibration_size=64,
                           train_split=splits[0], test_split=splits[1])
    entry = next(a for a in result.manifest["artifacts"] if a["id"] == "onnx-int8")
    coverage = entry["coverage"]
    assert entry["status"] == "ok" and coverage["int8_mac_share"] >= 0.95, coverage
    assert not set(coverage["float_mac_ops"]) & {"MatMul", "LSTM", "GRU", "RNN", "Gemm"} or \
        sum(coverage["float_mac_ops"].values()) <= 1, coverage["float_mac_ops"]  # at most the output layer
    onnx = pytest.importorskip("onnx")

    def initializers(graph):
        yield from graph.initializer
        for node in graph.node:
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    yield from initializers(attr.g)

    model = onnx.load(str(result.bundle_dir / entry["file"]))
    eight_bit = (onnx.TensorProto.INT8, onnx.TensorProto.UINT8)
    recurrent = [i for i in initializers(model.graph) if i.data_type in eight_bit and 16 in i.dims and
                 int(np.prod(i.dims)) in (16 * 16, 16 * 16 * {"SimpleRNN": 1, "GRU": 3, "LSTM": 4}[layer])]
    assert len(recurrent) == 1, [(i.name, list(i.dims)) for i in recurrent]  # stored once, in 8 bits
    report = verify(result.bundle_dir, data_dir=small_mnist_dir, write=False)
    row = next(r for r in report["artifacts"] if r["id"] == "onnx-int8")
    assert row["parity"]["agreement"] >= 0.9, row["parity"]
