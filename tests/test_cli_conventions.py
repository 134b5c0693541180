"""The CLI behaves like the tools users know: --version, typed choices in --help, exit 2 for invalid values,
one meaning per short flag, one progress display (bar on a terminal, plain lines elsewhere), --json on
every command in one envelope, and bench reports that stay small with a stability flag that one outlier
cannot fool."""

from __future__ import annotations

import io
import json
import os
import pty
import select
import shutil
import subprocess
import sys

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from edgeseq import bench
from edgeseq.cli import app
from edgeseq.progress import Progress

runner = CliRunner()
WIDE = {"COLUMNS": "200", "TERMINAL_WIDTH": "200"}
COMMANDS = ["train", "evaluate", "export", "verify", "bench", "webcam", "demo-video", "demo-scenes", "pipeline", "zoo"]


def test_version_names_edgeseq_python_and_the_runtimes():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    line = result.output.strip()
    assert line.startswith("edgeseq 0.1.0 (Python ") and "onnxruntime " in line and "ai-edge-litert " in line
    assert runner.invoke(app, ["-V"]).output == result.output


def test_commands_are_listed_in_the_order_of_the_work():
    group = typer.main.get_command(app)
    assert list(group.commands) == COMMANDS


CHOICES = {
    ("export", "--format"): ["tflite", "onnx"],
    ("export", "--quant"): ["fp32", "fp16", "dynamic", "int8"],
    ("bench", "--provider"): ["cpu", "cuda", "tensorrt"],
    ("train", "--schedule"): ["constant", "cosine"],
    ("train", "NAME"): ["mlp", "rnn", "rnn128", "lstm", "gru", "seq2seq"],
}


@pytest.mark.parametrize("command, option", list(CHOICES), ids=[f"{c} {o}" for c, o in CHOICES])
def test_every_choice_is_listed_in_help(command, option):
    help_text = runner.invoke(app, [command, "--help"], env=WIDE).output
    assert "|".join(CHOICES[(command, option)]) in help_text.replace(" ", ""), help_text


INVALID = {
    "train": ["train", "mlp", "--schedule", "linear"],
    "evaluate": ["evaluate", "m.keras", "--limit", "0"],
    "export": ["export", "m.keras", "--quant", "int4"],
    "verify": ["verify", "b", "--min-agreement-int8", "nan"],
    "bench": ["bench", "b", "--provider", "gpu"],
    "webcam": ["webcam", "b", "--max-frames", "0"],
    "demo-video": ["demo-video", "d.mp4", "--max-digits", "9"],
    "demo-scenes": ["demo-scenes", "s", "--per-condition", "0"],
    "pipeline": ["pipeline", "mlp", "--runs", "0"],
    "zoo": ["zoo", "--format", "csv"],
}


@pytest.mark.parametrize("command", COMMANDS)
def test_an_invalid_value_exits_2_on_every_command(command):
    result = runner.invoke(app, INVALID[command])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output


def test_no_short_flag_has_two_meanings():
    meanings: dict[str, set[str]] = {}
    for name, command in typer.main.get_command(app).commands.items():
        for param in command.params:
            shorts = [o for o in param.opts + param.secondary_opts if o.startswith("-") and not o.startswith("--")]
            longs = [o for o in param.opts if o.startswith("--")]
            for short in shorts:
                meanings.setdefault(short, set()).add(longs[0] if longs else param.name)
    assert {s: m for s, m in meanings.items() if len(m) > 1} == {}
    assert meanings["-q"] == {"--quiet"} and meanings["-f"] == {"--format"}


@pytest.mark.parametrize("command", [c for c in COMMANDS if c not in ("zoo", "evaluate")])  # nothing long to quiet
def test_quiet_everywhere(command):
    help_text = runner.invoke(app, [command, "--help"], env=WIDE).output
    assert "--quiet" in help_text and "--json" in help_text


# ----------------------------------------------------------------------------------- progress

def test_progress_is_a_bar_on_a_terminal_and_plain_lines_elsewhere():
    terminal = io.StringIO()
    with Progress("verify", 3, stream=terminal, terminal=True) as shown:
        for name in ("a", "b", "c"):
            shown.advance(name)
    assert "━" in terminal.getvalue() and "3/3" in terminal.getvalue()
    plain = io.StringIO()
    with Progress("verify", 3, stream=plain, terminal=False) as shown:
        for name in ("a", "b", "c"):
            shown.advance(name)
    lines = plain.getvalue().splitlines()
    assert [line.split(" (")[0] for line in lines] == ["verify [1/3] a", "verify [2/3] b", "verify [3/3] c"]
    assert "ETA" in lines[0] and "ETA" not in lines[-1] and "\x1b[" not in plain.getvalue()
    quiet = io.StringIO()
    with Progress("verify", 3, stream=quiet, quiet=True, terminal=True) as shown:
        shown.advance("a")
    assert quiet.getvalue() == ""


def test_plain_lines_are_rate_limited_but_the_last_is_shown():
    plain = io.StringIO()
    with Progress("webcam", 500, stream=plain, terminal=False, every=3600) as shown:
        for _ in range(500):
            shown.advance()
    lines = plain.getvalue().splitlines()
    assert len(lines) == 2 and lines[0].startswith("webcam [1/500]") and lines[1].startswith("webcam [500/500]")


def _in_a_pty(args: list[str]) -> tuple[int, str]:
    master, slave = pty.openpty()
    process = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    out = b""
    while True:
        ready, _, _ = select.select([master], [], [], 120)
        if not ready:
            break
        try:
            data = os.read(master, 65536)
        except OSError:
            break
        if not data:
            break
        out += data
    os.close(master)
    return process.wait(), out.decode(errors="replace")


def test_verify_shows_a_bar_in_a_terminal_and_lines_in_a_log(tiny_bundle, tmp_path, small_mnist_dir):
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle[1].bundle_dir, bundle)
    args = ["verify", str(bundle), "--data-dir", str(small_mnist_dir), "--min-agreement-int8", "0.9"]
    code, screen = _in_a_pty([sys.executable, "-m", "edgeseq", *args])
    assert code == 0, screen
    assert "━" in screen and "8/8" in screen and "verify [" not in screen
    logged = runner.invoke(app, args)
    assert logged.exit_code == 0 and "━" not in logged.stderr
    assert [line.split(" (")[0] for line in logged.stderr.splitlines() if line.startswith("verify [")][-1] \
        .startswith("verify [8/8] onnx-int8")
    silent = runner.invoke(app, args + ["--quiet"])
    assert "verify [" not in silent.stderr


# ----------------------------------------------------------------------------------- --json, one envelope

def _envelope(result, command: str) -> dict:
    document = json.loads(result.stdout)
    assert set(document) == {"schema", "command", "edgeseq", "ok", "exit_code", "error", "result"}
    assert document["schema"] == "edgeseq.cli/1" and document["command"] == command
    assert document["exit_code"] == result.exit_code and document["ok"] == (result.exit_code == 0)
    return document


def test_json_on_every_command(tiny_bundle, tmp_path, small_mnist_dir):
    model, exported = tiny_bundle
    data = ["--data-dir", str(small_mnist_dir)]
    bundle = tmp_path / "bundle"
    shutil.copytree(exported.bundle_dir, bundle)
    runs = {
        "train": ["train", "mlp", "--epochs", "1", "--limit", "100", "--out", str(tmp_path / "run"), *data],
        "evaluate": ["evaluate", str(model), "--out", str(tmp_path / "eval"), "--limit", "50", *data],
        "export": ["export", str(model), "-f", "tflite", "--quant", "fp32", "--out", str(tmp_path / "b2"), *data],
        "verify": ["verify", str(bundle), *data],
        "bench": ["bench", str(bundle / "tiny-fp32.tflite"), "--runs", "5", "--no-cold-start", "--out", str(tmp_path / "bb")],
        "demo-video": ["demo-video", str(tmp_path / "demo.mp4"), "--frames", "3", *data],
        "demo-scenes": ["demo-scenes", str(tmp_path / "scenes"), "--per-condition", "1", "--condition", "plain", *data],
        "webcam": ["webcam", str(bundle), "--source", str(tmp_path / "demo.mp4"), "--headless", "--out", str(tmp_path / "w")],
        "zoo": ["zoo"],
    }
    for command, args in runs.items():
        result = runner.invoke(app, args + ["--json"])
        document = _envelope(result, command)
        assert document["result"] is not None, (command, result.output)
    assert _envelope(runner.invoke(app, runs["verify"] + ["--json"]), "verify")["result"]["artifacts"][0]["id"] == "tflite-fp32"
    failed = runner.invoke(app, ["verify", str(tmp_path / "nowhere"), "--json"])
    document = _envelope(failed, "verify")
    assert failed.exit_code == 4 and document["error"].startswith("error: bundle ") and document["result"] is None


# ----------------------------------------------------------------------------------- lean bench reports

def test_a_10_s_bench_of_the_mlp_stays_under_1_mb(tiny_bundle, tmp_path):
    artifact = tiny_bundle[1].bundle_dir / "tiny-fp32.tflite"
    result = runner.invoke(app, ["bench", str(artifact), "--seconds", "10", "--warmup", "10", "--no-cold-start",
                                 "--no-accuracy", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    size = (tmp_path / "bench.json").stat().st_size
    latency = json.loads((tmp_path / "bench.json").read_text())["artifacts"][0]["latency"][0]
    assert size < 1_000_000 and latency["samples_total"] > 100_000 and len(latency["samples_us"]) == bench.SAMPLES_KEPT
    assert sum(latency["histogram_us"]["counts"]) == latency["samples_total"] == latency["runs"]
    raw = runner.invoke(app, ["bench", str(artifact), "--seconds", "0.5", "--warmup", "0", "--no-cold-start",
                              "--no-accuracy", "--raw", "--out", str(tmp_path / "raw")])
    kept = json.loads((tmp_path / "raw" / "bench.json").read_text())["artifacts"][0]["latency"][0]
    assert raw.exit_code == 0 and len(kept["samples_us"]) == kept["samples_total"] > bench.SAMPLES_KEPT


def test_stability_is_robust_to_one_outlier_and_flags_real_spread():
    rng = np.random.default_rng(0)
    steady = (1600 + rng.normal(0, 20, 5000)).astype(np.int64)
    steady[1234] = 5_000_000  # one 5 ms hiccup among 1.6 µs runs: a coefficient of variation of thousands of %
    stats = bench.latency_stats(steady, batch=1)
    assert stats["cv"] > 10 and stats["spread"] < 0.05 and stats["tail_ratio"] < 1.1
    config = bench.BenchConfig()
    assert not stats["spread"] > config.max_spread
    noisy = rng.lognormal(np.log(1600), 0.5, 5000).astype(np.int64)
    assert bench.latency_stats(noisy, batch=1)["spread"] > config.max_spread
