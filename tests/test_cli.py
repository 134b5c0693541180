"""The commands through Typer's test runner: train -> run directory and card -> evaluate, and bad input."""

from __future__ import annotations

import json
import hashlib

import pytest
from typer.testing import CliRunner

from edgeseq.cli import app

pytest.importorskip("keras")
runner = CliRunner()


@pytest.fixture(scope="module")
def lstm_run(tmp_path_factory, small_mnist_dir):
    out = tmp_path_factory.mktemp("runs") / "lstm"
    result = runner.invoke(app, ["train", "lstm", "--epochs", "1", "--limit", "400", "--out", str(out),
                                 "--data-dir", str(small_mnist_dir), "--quiet"])
    assert result.exit_code == 0, result.output
    return out, result.output


def test_train_writes_the_run_directory(lstm_run):
    out, output = lstm_run
    for name in ("model.keras", "card.json", "history.json", "curves.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert any((out / "tensorboard").rglob("events.out.tfevents.*"))
    assert "trained lstm (81,674 parameters) on cpu" in output
    assert "1 epoch on 367 images" in output  # 400 minus the 1/12 validation hold-out
    assert f"run directory: {out}" in output
    history = json.loads((out / "history.json").read_text())
    assert history["epoch"] == [1] and len(history["loss"]) == 1 and "val_accuracy" in history
    assert not list(out.glob(".*tmp*")), "a temporary file was left behind"


def test_card_says_everything_later_stages_need(lstm_run):
    out, _ = lstm_run
    card = json.loads((out / "card.json").read_text())
    assert card["schema"] == "edgeseq.card/1" and card["name"] == "lstm" and card["parameters"] == 81_674
    assert card["input"] == {"name": "image", "shape": [None, 28, 28], "dtype": "float32"}
    assert card["preprocessing"]["range"] == [0.0, 1.0] and card["preprocessing"]["scale"] == "pixel / 255"
    assert card["output"]["kind"] == "classify" and card["output"]["labels"] == [str(d) for d in range(10)]
    assert card["recipe"] == {"epochs": 1, "batch_size": 64, "learning_rate": 0.002, "optimizer": "adam",
                              "schedule": "cosine", "val_split": pytest.approx(1 / 12), "loss": "sparse_categorical_crossentropy",
                              "seed": 0, "limit": 400, "dtype_policy": "float32"}
    test = card["metrics"]
    assert test["test_examples"] == 300 and 0.0 <= test["test"]["accuracy"] <= 1.0
    assert test["seed_target"] == {"metric": "accuracy", "value": 0.988}
    assert test["meets_seed_target"] is (test["test"]["accuracy"] >= 0.988)
    assert card["training"]["device"]["type"] == "cpu" and card["training"]["device"]["backend"] == "tensorflow"
    assert card["training"]["seconds"] > 0 and card["training"]["epochs"] == 1
    assert {"keras", "tensorflow", "numpy", "python", "edgeseq"} <= set(card["versions"])
    assert card["data"]["origin"] == "argument" and card["data"]["canonical_mnist"] is False
    digest = hashlib.sha256((out / "model.keras").read_bytes()).hexdigest()
    assert card["model_file"] == {"name": "model.keras", "sha256": digest, "bytes": (out / "model.keras").stat().st_size}


def test_evaluate_reports_the_cards_accuracy(lstm_run, small_mnist_dir, tmp_path):
    out, _ = lstm_run
    card = json.loads((out / "card.json").read_text())
    result = runner.invoke(app, ["evaluate", str(out / "model.keras"), "--data-dir", str(small_mnist_dir),
                                 "--out", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)["result"]
    assert report["metrics"]["accuracy"] == pytest.approx(card["metrics"]["test"]["accuracy"], abs=1e-6)
    assert report["examples"] == 300 and sum(map(sum, report["confusion"])) == 300
    for name in ("confusion.png", "correct.png", "wrong.png", "evaluation.json"):
        assert (tmp_path / name).stat().st_size > 0
    table = runner.invoke(app, ["evaluate", str(out), "--data-dir", str(small_mnist_dir), "--out", str(tmp_path), "--limit", "50"])
    assert table.exit_code == 0 and "50 test images" in table.output and "accuracy" in table.output


def test_seq2seq_evaluation_has_word_and_char_accuracy(tmp_path, small_mnist_dir):
    out = tmp_path / "s2s"
    assert runner.invoke(app, ["train", "seq2seq", "--epochs", "1", "--limit", "300", "--out", str(out),
                               "--data-dir", str(small_mnist_dir), "-q"]).exit_code == 0
    result = runner.invoke(app, ["evaluate", str(out), "--data-dir", str(small_mnist_dir), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)["result"]
    assert set(report["metrics"]) == {"word_accuracy", "char_accuracy", "char_error_rate"}
    assert len(report["confusion"][0]) == 11  # a column for words that name no digit
    samples = (out / "samples.md").read_text()
    assert samples.startswith("| # | true | predicted | ok |") and samples.count("\n") == 22


def test_zoo_lists_six_models_with_parameter_counts():
    result = runner.invoke(app, ["zoo", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.stdout)["result"]}
    assert list(rows) == ["mlp", "rnn", "rnn128", "lstm", "gru", "seq2seq"]
    assert rows["mlp"]["parameters"] == 63_018 and rows["rnn"]["batch_size"] == 150
    text = runner.invoke(app, ["zoo"]).output
    assert "63,018" in text and "98.8% accuracy" in text


def _one_line_error(result, fragment: str):
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], result.output
    assert "Traceback" not in result.output


def test_missing_model_is_one_line(tmp_path):
    _one_line_error(runner.invoke(app, ["evaluate", str(tmp_path / "nope.keras")]), "does not exist")


def test_corrupt_model_is_one_line(tmp_path, lstm_run):
    out, _ = lstm_run
    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes((out / "model.keras").read_bytes()[:5000])
    _one_line_error(runner.invoke(app, ["evaluate", str(truncated)]), "not a valid .keras file")
    text = tmp_path / "notes.keras"
    text.write_text("hello")
    _one_line_error(runner.invoke(app, ["evaluate", str(text)]), "not a valid .keras file")
    weird = tmp_path / "model.onnx"
    weird.write_bytes(b"\x08\x07")
    _one_line_error(runner.invoke(app, ["evaluate", str(weird)]), "not a Keras model file")


def test_bad_data_dir_is_one_line(tmp_path):
    _one_line_error(runner.invoke(app, ["train", "mlp", "--data-dir", str(tmp_path / "none"), "--out", str(tmp_path / "o")]),
                    "does not exist")
    assert not (tmp_path / "o" / "model.keras").exists()


def test_invalid_choices_are_rejected(tmp_path):
    assert runner.invoke(app, ["train", "resnet"]).exit_code == 2
    bad_lr = runner.invoke(app, ["train", "mlp", "--lr", "-1", "--out", str(tmp_path)])
    assert bad_lr.exit_code == 2 and "-1.0 is not > 0" in bad_lr.output and "Traceback" not in bad_lr.output
