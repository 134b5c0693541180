"""edgeseq bench: each runtime, the report schema, --compare, bad artifacts, shape mismatches, the
fingerprint (the base install on a fresh venv: tests/test_base_install.py)."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest
from typer.testing import CliRunner

from edgeseq import bench, fingerprint
from edgeseq.cli import app
from edgeseq.errors import DocumentError, InvalidValueError

runner = CliRunner()
QUICK = bench.BenchConfig(warmup=2, runs=15)


def _check_latency(stats: dict, batch: int = 1):
    assert stats["batch"] == batch and stats["runs"] == stats["samples_total"] >= len(stats["samples_us"])
    assert stats["min_us"] <= stats["p50_us"] <= stats["p90_us"] <= stats["p99_us"] <= stats["max_us"]
    assert stats["throughput_per_s"] > 0 and stats["cv"] >= 0 and isinstance(stats["unstable"], bool)


def test_bench_report_covers_every_runtime(tiny_bundle, small_mnist_dir):
    _, result = tiny_bundle
    config = bench.BenchConfig(warmup=2, runs=15, batch_sizes=(1, 4), threads=1)
    report = bench.bench([result.bundle_dir], config, data_dir=small_mnist_dir, keras=True)
    assert report["schema"] == "edgeseq.bench/1" and report["interrupted"] is False
    assert report["config"]["threads"] == 1 and report["config"]["batch_sizes"] == [1, 4]
    rows = {r["id"]: r for r in report["artifacts"]}
    assert set(rows) == {"keras"} | {f"{f}-{q}" for f in ("tflite", "onnx") for q in ("fp32", "fp16", "dynamic", "int8")}
    for row in rows.values():
        assert "error" not in row, row.get("error")
        _check_latency(row["latency"][0])
        assert row["accuracy"]["evaluated_on"] == "MNIST test set (300 images, carried by the bundle)"
        assert 0 < row["accuracy"]["accuracy"] <= 1 and row["accuracy"]["agreement"] > 0.9
    assert rows["tflite-int8"]["runtime"]["runtime"] == "ai-edge-litert"
    assert rows["tflite-fp32"]["latency"][1] == {"batch": 4, "error": "artifact has a fixed batch of 1"}
    _check_latency(rows["onnx-fp32"]["latency"][1], batch=4)
    assert rows["onnx-int8"]["runtime"]["node_providers"].get("CPUExecutionProvider", 0) > 0
    assert rows["keras"]["runtime"]["runtime"].startswith("keras") and rows["keras"]["accuracy"]["agreement"] == 1.0
    for fmt in ("tflite", "onnx"):  # integer artifacts timed again beside their fp32, in this run
        for quant in ("int8", "dynamic"):
            against = rows[f"{fmt}-{quant}"]["vs_fp32"]
            assert against["fp32"] == f"{fmt}-fp32" and against["method"] == "side by side"
            assert against["p50_ratio"] == round(against["p50_us"] / against["fp32_p50_us"], 4) > 0
    assert "vs_fp32" not in rows["onnx-fp16"] and "vs_fp32" not in rows["keras"]
    cold = rows["onnx-fp32"]["cold_start"]
    assert cold["load_and_first_inference_ms"] > 0 and cold["peak_rss_mb"] >= cold["rss_before_load_mb"] > 0
    assert cold["load_ms"] + cold["first_inference_ms"] == pytest.approx(cold["load_and_first_inference_ms"], abs=0.02)
    assert "tensorrt_engine_build_ms" not in cold  # CPU: no engine to build
    for key in ("cpu", "cpu_count", "os", "python", "governor", "temperatures_c", "pi_throttled", "jetson_power_mode"):
        assert key in report["device"]


def test_cli_writes_json_markdown_and_plots(tiny_bundle, small_mnist_dir, tmp_path):
    _, result = tiny_bundle
    out = tmp_path / "report"
    cli = runner.invoke(app, ["bench", str(result.bundle_dir / "tiny-fp32.onnx"), str(result.bundle_dir / "tiny-int8.tflite"),
                              "--runs", "10", "--warmup", "1", "--no-cold-start", "--out", str(out),
                              "--data-dir", str(small_mnist_dir)])
    assert cli.exit_code == 0, cli.output
    assert "onnx-fp32" in cli.output and "tflite-int8" in cli.output and "p50 µs" in cli.output
    report = json.loads((out / "bench.json").read_text())
    assert [r["id"] for r in report["artifacts"]] == ["onnx-fp32", "tflite-int8"]  # files found in their bundle
    assert (out / "bench.md").read_text().startswith("# edgeseq bench")
    assert (out / "latency.png").stat().st_size > 0 and (out / "accuracy_latency.png").stat().st_size > 0


def _report(p50s: dict, accuracy: float = 0.9) -> dict:
    rows = [{"id": k, "file": f"{k}.tflite", "format": "tflite", "bytes": 1, "latency": [{"batch": 1, "p50_us": v}],
             "accuracy": {"accuracy": accuracy}} for k, v in p50s.items()]
    return {"schema": bench.SCHEMA, "edgeseq": "0", "config": {}, "device": {"cpu": "x"}, "created": "t", "artifacts": rows}


def test_compare_flags_regressions(tmp_path):
    before, after = _report({"a": 100.0, "b": 100.0, "gone": 5.0}), _report({"a": 104.0, "b": 150.0, "new": 1.0}, 0.85)
    diff = bench.compare(before, after)
    rows = {r["id"]: r for r in diff["rows"]}
    assert rows["a"]["p50_change"] == pytest.approx(0.04) and rows["a"]["regressions"] == ["accuracy 90.00% -> 85.00%"]
    assert rows["b"]["regressions"][0] == "p50 100 -> 150 us (+50%)"
    assert diff["only_before"] == ["gone"] and diff["only_after"] == ["new"] and diff["regressed"]
    (tmp_path / "a.json").write_text(json.dumps(before))
    (tmp_path / "b.json").write_text(json.dumps(_report({"a": 90.0, "b": 100.0, "gone": 5.0})))
    ok = runner.invoke(app, ["bench", "--compare", str(tmp_path / "a.json"), str(tmp_path / "b.json")])
    assert ok.exit_code == 0 and "-10.0%" in ok.output
    (tmp_path / "c.json").write_text(json.dumps(after))
    bad = runner.invoke(app, ["bench", "--compare", str(tmp_path / "a.json"), str(tmp_path / "c.json")])
    assert bad.exit_code == 1 and "+50.0%" in bad.output
    with pytest.raises(DocumentError, match="not an edgeseq bench report"):
        bench.compare({"schema": "other"}, after)


def test_missing_and_corrupt_artifacts(tmp_path):
    missing = runner.invoke(app, ["bench", str(tmp_path / "nope.tflite")])
    assert missing.exit_code == 4 and missing.output.strip() == f"error: {tmp_path / 'nope.tflite'} does not exist"
    corrupt = tmp_path / "broken.tflite"
    corrupt.write_bytes(b"\x00" * 100)
    result = runner.invoke(app, ["bench", str(corrupt), "--out", str(tmp_path / "o"), "--no-accuracy", "--no-cold-start"])
    assert result.exit_code == 1 and "error: broken.tflite: " in result.output and "not a TFLite flatbuffer" in result.output
    assert json.loads((tmp_path / "o" / "bench.json").read_text())["artifacts"][0]["error"]
    other = tmp_path / "weights.bin"
    other.write_bytes(b"x")
    assert "neither a bundle directory nor a .tflite/.onnx artifact" in runner.invoke(app, ["bench", str(other)]).output


def test_artifact_whose_input_does_not_fit_the_data(tmp_path, small_mnist_dir):
    onnx = pytest.importorskip("onnx")
    h = onnx.helper
    graph = h.make_graph([h.make_node("ReduceMean", ["x"], ["y"], axes=[2], keepdims=0)], "g",
                         [h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [None, 32, 10])],
                         [h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [None, 32])])
    path = tmp_path / "wide.onnx"
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 13)])
    model.ir_version = 8  # what ONNX Runtime reads everywhere
    onnx.save(model, str(path))
    report = bench.bench([path], QUICK, data_dir=small_mnist_dir)
    (row,) = report["artifacts"]
    _check_latency(row["latency"][0])  # timing works on inputs of its own shape
    assert row["accuracy"]["error"] == "wide.onnx takes inputs of shape (32, 10) per example; got (28, 28)"


def test_fingerprint_without_and_with_pi_tools(tmp_path, monkeypatch):
    plain = fingerprint.device()
    assert plain["pi_throttled"] is None and plain["jetson_power_mode"] is None
    assert plain["cpu_count"] == os.cpu_count() and plain["python"]
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "vcgencmd").write_text("#!/bin/sh\necho throttled=0x50005\n")
    (tools / "nvpmodel").write_text("#!/bin/sh\necho 'NV Power Mode: MAXN'\necho 0\n")
    for tool in tools.iterdir():
        tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tools}{os.pathsep}{os.environ['PATH']}")
    info = fingerprint.device()
    assert info["pi_throttled"] == {"raw": "0x50005", "now": ["under-voltage", "throttled"],
                                    "since_boot": ["under-voltage", "throttled"]}
    assert info["jetson_power_mode"] == "MAXN"
    assert any(w.startswith("Raspberry Pi reports under-voltage, throttled (now") for w in fingerprint.warnings(info))


def test_side_by_side_timing_shares_a_slow_spell():
    """A machine that slows down 3x for a stretch: timed one after the other, two equal steps differ ~3x;
    timed in alternating rounds, both see the spell alike and their medians stay equal."""
    calls = {"n": 0, "spell": range(0)}

    def spin(us: float):
        def step():
            calls["n"] += 1
            end = time.perf_counter() + (3.0 if calls["n"] in calls["spell"] else 1.0) * us / 1e6
            while time.perf_counter() < end:
                pass
        return step

    calls["spell"] = range(101, 201)  # exactly the second step's calls
    one, other = (bench.time_step(spin(200), warmup=0, runs=100, seconds=None) for _ in range(2))
    assert np.median(other) / np.median(one) > 2
    calls.update(n=0, spell=range(150, 250))  # a quarter of the calls, in the middle
    a, b = bench.side_by_side([spin(200), spin(200)], rounds=10, round_seconds=0.004, warmup=0)
    assert len(a) == len(b) >= 10 * 3
    assert 0.8 < float(np.median(a) / np.median(b)) < 1.25


def test_latency_stats_and_budget():
    stats = bench.latency_stats(np.array([1000, 2000, 3000, 4000], dtype=np.int64), batch=2)
    assert stats["mean_us"] == 2.5 and stats["min_us"] == 1.0 and stats["max_us"] == 4.0 and stats["p50_us"] == 2.5
    assert stats["throughput_per_s"] == pytest.approx(2 * 1e6 / 2.5)
    samples = bench.time_step(lambda: None, warmup=0, runs=1, seconds=0.05)
    assert len(samples) > 10  # a time budget runs as many as fit
    with pytest.raises(InvalidValueError):
        bench.BenchConfig(runs=0)
    with pytest.raises(InvalidValueError, match="finite"):
        bench.BenchConfig(seconds=float("nan"))


def test_ctrl_c_still_writes_what_was_measured(tiny_bundle, tmp_path, monkeypatch):
    _, result = tiny_bundle
    real = bench._bench_one
    calls = []

    def interrupted_on_the_third(target, config, data_dir, cache):
        calls.append(target.id)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(target, config, data_dir, cache)

    monkeypatch.setattr(bench, "_bench_one", interrupted_on_the_third)
    cli = runner.invoke(app, ["bench", str(result.bundle_dir), "--runs", "5", "--warmup", "0", "--no-cold-start",
                              "--no-accuracy", "--out", str(tmp_path)])
    assert cli.exit_code == 130 and "interrupted" in cli.output
    report = json.loads((tmp_path / "bench.partial.json").read_text())
    assert report["interrupted"] is True and report["partial"] is True and [r["id"] for r in report["artifacts"]] == calls[:2]
    assert "**Interrupted**" in (tmp_path / "bench.partial.md").read_text()
    assert not (tmp_path / "bench.json").exists()  # a partial run never takes the complete report's name
