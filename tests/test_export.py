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
from edgeseq.schema import to_json
from edgeseq.verify import verify
from conftest import trained

keras = pytest.importorskip("keras")
pytest.importorskip("tf2onnx")
runner = CliRunner()


def test_every_format_and_quantization_is_produced(tiny_bundle):
    path, result = tiny_bundle
    artifacts = {a["id"]: a for a in to_json(result.manifest)["artifacts"]}
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
    io = tfl_int8["recipe"]["io"]  # int8, int16 where the search needed 16-bit activations, or a float head's output
    expected = {"int8": ("int8", "int8"), "int16": ("int16", "int16"), "int8 input, float32 output": ("int8", "float32")}
    assert (tfl_int8["inputs"][0]["dtype"], tfl_int8["outputs"][0]["dtype"]) == expected[io]
    assert "drift" not in tfl_int8  # nothing recurrent, no per-step report
    assert tfl_int8["inputs"][0]["shape"] == [1, 28, 28] and tfl_int8["inputs"][0]["quantization"]["scale"] > 0
    fc = {kind: ops.get("FULLY_CONNECTED", 0) for kind, ops in tfl_int8["coverage"]["ops"].items()}
    head_float = io.endswith("float32 output")  # the search left the head (Dense + softmax) float
    assert fc.get("int8", 0) == 2 - head_float and sum(fc.values()) == 2
    assert artifacts["onnx-fp32"]["inputs"][0]["shape"] == [None, 28, 28]
    found = artifacts["onnx-int8"]["search"]
    tried = {c["name"]: c for c in found["candidates"]}
    assert {"static QDQ", "dynamic integer", "dynamic integer per-channel"} <= set(tried)
    assert found["images"] == 500 and found["camera_like_images"] == 250  # 600 train - 100 calibration; half copied
    winner = tried[found["chosen"]]
    if winner["meets_target"]:  # the winner meets the target and no other meeting candidate outranks it
        assert all(c["integer_mac_share"] <= winner["integer_mac_share"] + 0.01 for c in tried.values()
                   if c["meets_target"] and c["worth_having"] == winner["worth_having"])
    else:
        assert winner["agreement"] == max(c["agreement"] for c in tried.values() if c["integer_mac_share"] >= 0.5)
    assert (artifacts["onnx-int8"]["recipe"].get("format") == "QDQ") == found["chosen"].startswith("static QDQ")
    assert artifacts["onnx-int8"]["recipe"]["candidate"] == found["chosen"]
    dynamic = artifacts["onnx-dynamic"]
    assert {"dynamic integer", "dynamic integer per-channel"} <= {c["name"] for c in dynamic["search"]["candidates"]}
    per = "per-channel" if "per-channel" in dynamic["search"]["chosen"] else "per-tensor"
    assert dynamic["recipe"]["weights"] == f"uint8 asymmetric {per}"
    for artifact in ("onnx-int8", "onnx-dynamic", "tflite-int8"):  # the search report travels with the bundle
        for suffix in ("json", "md"):
            assert (result.bundle_dir / f"sensitivity-{artifact}.{suffix}").is_file()
        assert artifacts[artifact]["search"]["files"][:2] == [f"sensitivity-{artifact}.json", f"sensitivity-{artifact}.md"]


def test_manifest_and_reference_set(tiny_bundle, splits):
    path, result = tiny_bundle
    manifest = to_json(bundles.read_manifest(result.bundle_dir))
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
    report = verify(result.bundle_dir, data_dir=small_mnist_dir)
    rows = {r["id"]: r for r in report["artifacts"]}
    assert report["evaluated_on"] == "MNIST test set (300 images, carried by the bundle)"
    for fmt in ("tflite", "onnx"):
        fp32 = rows[f"{fmt}-fp32"]
        assert fp32["passed"], fp32["reasons"]
        assert fp32["parity"]["agreement"] == 1.0 and fp32["parity"]["max_abs_diff"] <= 1e-4
        assert rows[f"{fmt}-fp16"]["parity"]["agreement"] >= 0.99
        assert rows[f"{fmt}-int8"]["parity"]["agreement"] >= 0.95
    assert report["passed"] == all(r["passed"] for r in rows.values())


def test_verify_without_mnist_gives_the_verdicts_it_gives_with_it(tiny_bundle, tmp_path, monkeypatch, small_mnist_dir):
    _, result = tiny_bundle
    with_mnist = verify(result.bundle_dir, data_dir=small_mnist_dir)
    monkeypatch.setenv("EDGESEQ_DATA_DIR", str(tmp_path / "no-mnist-here"))
    without = verify(result.bundle_dir)
    assert without["evaluated_on"] == "MNIST test set (300 images, carried by the bundle)"
    parity = lambda report: {r["id"]: (r["passed"], r["parity"]) for r in report["artifacts"]}  # noqa: E731
    assert parity(without) == parity(with_mnist)


def test_a_short_reference_slice_falls_back_and_says_how_sure_it_is(tiny_bundle, tmp_path, monkeypatch, small_mnist_dir):
    """An exporter's --reference-size shorter than the test split: MNIST found here is used, else the
    slice, whose every agreement carries its 95 % interval (and a miss it cannot tell is inconclusive)."""
    bundle = _copy(tiny_bundle[1], tmp_path)
    with np.load(bundle / "reference.npz") as f:
        arrays = {k: f[k] for k in f.files}
    np.savez_compressed(bundle / "reference.npz", inputs=arrays["inputs"][:40], labels=arrays["labels"][:40],
                        outputs=arrays["outputs"][:40], test_outputs=arrays["outputs"], test_sha256=arrays["test_sha256"])
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["reference"]["examples"] = 40
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    assert verify(bundle, data_dir=small_mnist_dir)["evaluated_on"] == "MNIST test set (300 images)"
    monkeypatch.setenv("EDGESEQ_DATA_DIR", str(tmp_path / "no-mnist-here"))
    report = verify(bundle)
    assert report["evaluated_on"].startswith("bundle reference set (40 images; ") and report["examples"] == 40
    for row in report["artifacts"]:
        p = row["parity"]
        assert p["agreement_low"] <= p["agreement"] <= p["agreement_high"] and p["agreement_high"] - p["agreement_low"] > 0.05
        for reason in (r for r in row["reasons"] if r.startswith("agreement")):
            assert ("inconclusive on 40 images" in reason) == (p["agreement_high"] >= row["thresholds"]["min_agreement"])


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
    entry["bytes"] = (bundle / entry["file"]).stat().st_size
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
    assert result.exit_code == 4 and result.stderr.startswith("error: ") and len(result.stderr.splitlines()) == 1
    envelope = json.loads(result.stdout)  # --json: the failure in the same envelope as a result
    assert envelope["ok"] is False and envelope["exit_code"] == 4 and envelope["result"] is None
    assert "does not match the manifest's SHA-256" in result.stderr and envelope["error"] == result.stderr.strip()


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
    report = verify(result.bundle_dir)
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
    report = verify(result.bundle_dir)
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
    assert result.exit_code == 4 and result.output.startswith("error: ") and "not a valid .keras file" in result.output
    assert not (tmp_path / "out" / "manifest.json").exists()
    onnx_file = tmp_path / "model.onnx"
    onnx_file.write_bytes(b"\x08\x07")
    result = runner.invoke(app, ["export", str(onnx_file)])
    assert result.exit_code == 4 and "not a Keras model file" in result.output


def test_unknown_format_or_quant_lists_the_valid_ones(tmp_path):
    result = runner.invoke(app, ["export", str(tmp_path / "x.keras"), "--format", "coreml"], env={"COLUMNS": "200"})
    assert result.exit_code == 2 and "'coreml' is not one of 'tflite', 'onnx'" in result.output
    result = runner.invoke(app, ["export", str(tmp_path / "x.keras"), "--quant", "int4"], env={"COLUMNS": "200"})
    assert result.exit_code == 2 and "'int4' is not one of 'fp32', 'fp16', 'dynamic', 'int8'" in result.output


def test_a_mixed_precision_model_exports_as_float32(tmp_path, small_mnist_dir, splits):
    from edgeseq.export.bundle import export_bundle
    from edgeseq.training.train import train

    run = train("mlp", out_dir=tmp_path / "mp", epochs=1, mixed_precision=True, train_split=splits[0],
                test_split=splits[1], progress=False)
    assert run.card["recipe"]["dtype_policy"] == "mixed_bfloat16"
    result = export_bundle(run.run_dir, formats=list(Format), quants=[Quant.fp32], train_split=splits[0],
                           test_split=splits[1])
    assert result.failed == [] and result.manifest.source.dtype_policy == "mixed_bfloat16"
    assert result.manifest.source.exported_as.startswith("float32 (trained under mixed_bfloat16")
    report = verify(result.bundle_dir, data_dir=small_mnist_dir)
    assert all(r["passed"] for r in report["artifacts"]), [r["reasons"] for r in report["artifacts"]]


def _recurrent(layer: str, units: int = 16):
    L = keras.layers
    if layer == "Bidirectional":
        return L.Bidirectional(L.SimpleRNN(units // 2))
    return getattr(L, layer)(units)


@pytest.mark.parametrize("layer", ["SimpleRNN", "GRU", "LSTM", "Bidirectional"])
def test_int8_runs_the_recurrent_cell_on_integer_kernels(layer, tmp_path, splits, small_mnist_dir):
    """Guard, both formats: an int8 artifact whose recurrent ops stay float, or that stores a cell's weights
    once per time step, must fail this test, whatever its accuracy."""
    from edgeseq.export.bundle import export_bundle
    from edgeseq.export import drift, tflite_graph

    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((28, 28)), _recurrent(layer), keras.layers.Dense(10, activation="softmax")])
    path = trained(model, splits, tmp_path / f"{layer}.keras", epochs=2)
    result = export_bundle(path, formats=list(Format), quants=[Quant.fp32, Quant.int8], calibration_size=64,
                           train_split=splits[0], test_split=splits[1])
    entries = {a["id"]: a for a in to_json(result.manifest)["artifacts"]}
    for fmt in Format:
        entry = entries[f"{fmt.value}-int8"]
        coverage = entry["coverage"]
        assert entry["status"] == "ok" and coverage["int8_mac_share"] >= 0.95, (fmt, entry.get("error"), coverage)
        assert not set(coverage["float_mac_ops"]) & {"MatMul", "LSTM", "GRU", "RNN", "Gemm", "FULLY_CONNECTED"} or \
            sum(coverage["float_mac_ops"].values()) <= 1, coverage["float_mac_ops"]  # at most the output layer
    report = verify(result.bundle_dir, data_dir=small_mnist_dir)
    rows = {r["id"]: r for r in report["artifacts"]}
    for fmt in Format:
        assert rows[f"{fmt.value}-int8"]["parity"]["agreement"] >= 0.9, rows[f"{fmt.value}-int8"]["parity"]

    # TFLite: int8 in, int8 out unless the head was left float, the loop kept (weights once, in int8)
    tfl = entries["tflite-int8"]
    out = "float32" if tfl["recipe"]["io"] == "int8 input, float32 output" else "int8"
    assert tfl["inputs"][0]["dtype"] == "int8" and tfl["outputs"][0]["dtype"] == out, tfl["recipe"]
    winner = next(c for c in tfl["search"]["candidates"] if c["name"] == tfl["search"]["chosen"])
    head = model.layers[-1].name
    state_float = any(label.endswith("(non-MAC ops)") or label not in (head, f"{head} (non-MAC ops)")
                      for label in winner["float_layers"])
    # the loop state is carried in int8, unless the search left the cell's non-MAC ops (its state) float, or
    # the whole cell with int8 weights (hybrid kernels: integer MACs, float state)
    if state_float and not any(label.endswith("(non-MAC ops)") for label in winner["float_layers"]):
        assert "hybrid kernels" in tfl["recipe"]["float_layers"] and tfl["coverage"]["int8_mac_share"] >= 0.95, tfl["recipe"]
    assert tfl["recipe"]["while_loop"]["int8_loop_variables"] >= 1 or state_float, (tfl["recipe"], winner)
    flat = tflite_graph.load((result.bundle_dir / tfl["file"]).read_bytes())
    assert tflite_graph.while_ops(flat), "the recurrence must stay a loop"
    constants = [(t.type, flat.buffers[t.buffer].data.size) for g in flat.subgraphs for t in g.tensors
                 if flat.buffers[t.buffer].data is not None]
    float_weights = [n for kind, n in constants if kind == tflite_graph.FLOAT32 and n > 4 * 64]
    int8_bytes = sum(n for kind, n in constants if kind == tflite_graph.INT8)
    # only the output layer (16 x 10) may stay float, and only where the search chose to leave it so
    assert all(n <= 16 * 10 * 4 for n in float_weights) and (not float_weights or winner["float_layers"]), \
        (float_weights, winner)
    # stored once, one byte a weight (plus the int8 initial states); one copy per step would be ~28x
    assert int8_bytes <= model.count_params() + 64, (int8_bytes, model.count_params())

    # the per-time-step drift report, both formats: one row per step and state, read back from the bundle
    states = {"LSTM": 2, "Bidirectional": 1}.get(layer, 1)
    float_states = {}
    for fmt in Format:
        entry = entries[f"{fmt.value}-int8"]
        assert entry["drift"]["steps"] == 28 and f"drift-{fmt.value}-int8.md" in entry["drift"]["files"], fmt
        rows = json.loads((result.bundle_dir / f"drift-{fmt.value}-int8.json").read_text())["rows"]
        assert len(rows) == 28 * states and {r["step"] for r in rows} == set(range(1, 29)), (fmt, len(rows))
        assert all(0 <= r["mean_abs"] <= r["max_abs"] < np.inf and r["mean_abs"] < 0.5 for r in rows), (fmt, rows)
        # the probe really stops at step t: the float state moves over the steps, and int8 rounding shows
        assert len({round(r["float_mean_abs"], 6) for r in rows if r["state"] == 0}) > 10, (fmt, rows)
        assert max(r["mean_abs"] for r in rows) > 0, (fmt, rows)
        float_states[fmt] = [sorted(r["float_mean_abs"] for r in rows if r["step"] == t) for t in range(1, 29)]
        fp32 = result.bundle_dir / entries[f"{fmt.value}-fp32"]["file"]
        same = drift.step_drift(fp32, fp32, splits[1].images[:3])  # an artifact against itself: no drift at all
        assert same["steps"] == 28 and all(r["max_abs"] == 0 for r in same["rows"]), fmt
    # the op profile (perf matrix's measured "why") times every op, loop-body ops once per step
    from edgeseq.export.op_profile import by_op, op_profile

    profile = op_profile(result.bundle_dir / tfl["file"], runs=20)
    body_ops = [r for r in profile["rows"] if r["in_loop"]]
    assert body_ops and all(r["executions"] == 28 for r in body_ops), profile["rows"]
    assert not [r for r in profile["rows"] if "error" in r], profile["rows"]
    assert by_op(profile)["FULLY_CONNECTED@loop"] > 0 and profile["total_us"] > 0, profile

    # both formats' float probes see the same state after every step (both are the Keras model); a
    # Bidirectional layer has two loops and each converter puts a different direction first
    assert layer == "Bidirectional" or np.allclose(float_states[Format.tflite], float_states[Format.onnx], rtol=1e-3, atol=1e-5), float_states

    if layer == "Bidirectional":
        return
    onnx = pytest.importorskip("onnx")

    def initializers(graph):
        yield from graph.initializer
        for node in graph.node:
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    yield from initializers(attr.g)

    if layer in ("GRU", "SimpleRNN"):  # fp32 runs ORT's GRU/RNN kernel (one op); int8 the unrolled cell, integer
        op = {"GRU": "GRU", "SimpleRNN": "RNN"}[layer]
        fp32_ops = {n.op_type for n in onnx.load(str(result.bundle_dir / entries["onnx-fp32"]["file"])).graph.node}
        assert op in fp32_ops and "Loop" not in fp32_ops and f"ONNX {op}" in entries["onnx-fp32"]["recipe"]["fused"]
        assert f"{op} unrolled" in entries["onnx-int8"]["recipe"]["from"]
    entry = entries["onnx-int8"]
    model = onnx.load(str(result.bundle_dir / entry["file"]))
    eight_bit = (onnx.TensorProto.INT8, onnx.TensorProto.UINT8)
    recurrent = [i for i in initializers(model.graph) if i.data_type in eight_bit and 16 in i.dims and
                 int(np.prod(i.dims)) in (16 * 16, 16 * 16 * {"SimpleRNN": 1, "GRU": 3, "LSTM": 4}[layer])]
    assert len(recurrent) == 1, [(i.name, list(i.dims)) for i in recurrent]  # stored once, in 8 bits


def test_tflite_int8_decoder_keeps_a_wide_initial_state(tmp_path, splits):
    """A decoder whose initial state is a code far outside tanh's [-1, 1] (the zoo's seq2seq): the int8 loop
    variable must be carried in a range that holds the start value, not only what each step returns
    (carried in the tanh range, the code is clipped to 1 at step 0: 59 % agreement instead of 98 %)."""
    from edgeseq.export import tflite
    from edgeseq.runtimes import open_runner

    L = keras.layers
    keras.utils.set_random_seed(5)
    image = keras.Input((28, 28))
    code = L.Dense(16, activation="relu", name="encoder")(L.Flatten()(image))  # (batch, 16)
    hidden = L.SimpleRNN(16, return_sequences=True)(L.RepeatVector(5)(code), initial_state=[code])
    model = keras.Model(image, L.Dense(10, activation="softmax")(hidden))  # (batch, 5, 10)
    encoder = model.get_layer("encoder")
    kernel, bias = encoder.get_weights()
    encoder.set_weights([kernel * 6, bias])
    images = splits[0].images
    assert float(np.max(encoder(images.reshape(-1, 784)))) > 4  # the start value is well beyond 1
    # no search (selection None): the first standard candidate, whose loop state is int8 (a search may
    # leave the whole cell float with int8 weights instead, which carries no int8 loop variable to check)
    recipe = tflite.convert(model, tmp_path / "decoder.tflite", "int8", images[:64], selection=None)
    assert recipe["while_loop"]["int8_loop_variables"] >= 2
    outputs = open_runner(tmp_path / "decoder.tflite").run(images[300:600])
    expected = np.asarray(model(images[300:600]))
    agreement = (outputs.argmax(-1) == expected.argmax(-1)).all(axis=1).mean()
    assert agreement >= 0.95 and np.abs(outputs - expected).max() < 0.2, (agreement, np.abs(outputs - expected).max())


def test_verify_images_checks_the_first_n_only(tiny_bundle, tmp_path):
    out = tmp_path / "reports"
    done = CliRunner().invoke(app, ["verify", str(tiny_bundle[1].bundle_dir), "--images", "50", "--out", str(out), "--json"])
    report = json.loads(done.stdout)["result"]
    assert report["examples"] == 50 and report["evaluated_on"].startswith("the first 50 of the MNIST test set")
    assert all(r["parity"]["examples"] == 50 for r in report["artifacts"] if r["status"] == "ok")
    assert done.exit_code == (0 if report["passed"] else 1)


def test_verify_format_checks_that_formats_artifacts_only(tiny_bundle, tmp_path):
    done = CliRunner().invoke(app, ["verify", str(tiny_bundle[1].bundle_dir), "--format", "onnx", "--images", "20",
                                    "--out", str(tmp_path), "--json"])
    report = json.loads(done.stdout)["result"]
    assert {r["format"] for r in report["artifacts"]} == {"onnx"} and len(report["artifacts"]) == 4
