"""edgeseq pipeline: every stage into one run folder, with a report whose links resolve."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from edgeseq.cli import app

pytest.importorskip("keras")
runner = CliRunner()


def _links_resolve(run_dir):
    report = (run_dir / "report.md").read_text()
    links = re.findall(r"\]\(([^)]+)\)", report)
    assert links and all((run_dir / link).exists() for link in links), links
    return report


def test_pipeline_on_a_zoo_model(tmp_path, small_mnist_dir):
    out = tmp_path / "run"
    result = runner.invoke(app, ["pipeline", "mlp", "--quick", "--out", str(out), "--runs", "20",
                                 "--data-dir", str(small_mnist_dir)])
    assert result.exit_code in (0, 1), result.output  # 1 when an artifact fails its thresholds: said in the verdict
    lines = result.output.splitlines()
    assert lines[0] == "== train mlp (quick: 1 epoch)" and any(line.startswith("Verdict: ") for line in lines)
    assert f"report: {out / 'report.md'}" in result.output
    report = _links_resolve(out)
    assert report.startswith("# edgeseq pipeline: mlp\n\n**Verdict: ")
    assert report.count("| tflite-") == 4 and report.count("| onnx-") == 4 and "Keras per-sample latency" in report
    for name in ("model.keras", "card.json", "curves.png", "bundle/manifest.json", "bundle/verify.json", "bench/bench.json"):
        assert (out / name).is_file(), name
    assert (result.exit_code == 0) == ("failing:" not in result.output)
    page = (out / "report.html").read_text()  # the HTML twin: same verdict, figures inline, no file it needs beside it
    assert page.startswith("<!DOCTYPE html>") and "<b>Verdict: " in page and page.count("<tr>") == 9
    assert page.count('src="data:image/png;base64,') >= 3 and 'src="curves.png"' not in page
    document = json.loads((out / "pipeline.json").read_text())
    assert document["schema"] == "edgeseq.pipeline/1" and document["passed"] == (result.exit_code == 0)
    assert len(document["artifacts"]) == 8 and {"report.md", "report.html", "pipeline.json"} <= set(document["files"])


def test_pipeline_on_a_users_keras_file(tiny_bundle, tmp_path, small_mnist_dir):
    path, _ = tiny_bundle
    out = tmp_path / "mine"
    result = runner.invoke(app, ["pipeline", str(path), "--out", str(out), "--runs", "10", "--data-dir", str(small_mnist_dir),
                                 "--json", "--quiet"])
    assert result.exit_code in (0, 1), result.output
    envelope = json.loads(result.stdout)  # --json: the pipeline's typed report in the common envelope
    assert envelope["command"] == "pipeline" and envelope["exit_code"] == result.exit_code
    assert envelope["result"] == json.loads((out / "pipeline.json").read_text()) and "== " not in result.stderr
    assert (out / "model.keras").read_bytes() == path.read_bytes() and not (out / "curves.png").exists()
    assert _links_resolve(out).startswith("# edgeseq pipeline: tiny")


def test_pipeline_refuses_what_it_cannot_run(tmp_path):
    result = runner.invoke(app, ["pipeline", str(tmp_path / "nothing.keras"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 4 and "does not exist" in result.output.splitlines()[-1]
    assert result.output.splitlines()[-1].startswith("error: ") and "Traceback" not in result.output
    assert not (tmp_path / "o").exists()
