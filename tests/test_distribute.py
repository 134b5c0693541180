"""Data-parallel training over several devices (JAX's virtual CPU devices stand in for GPUs), proven
against a single-device run of the same recipe."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from edgeseq.cli import app
from edgeseq.errors import InvalidValueError
from edgeseq.training.distribute import Plan

pytest.importorskip("jax")
keras = pytest.importorskip("keras")
runner = CliRunner()
TWO_DEVICES = {"KERAS_BACKEND": "jax", "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu",
               "CUDA_VISIBLE_DEVICES": "-1"}


def _train_on_jax(out, small_mnist_dir, *extra: str) -> dict:
    """``edgeseq train mlp`` in a fresh process on the JAX backend (a backend is chosen at Keras import)."""
    done = subprocess.run([sys.executable, "-m", "edgeseq", "train", "mlp", "--epochs", "1", "--limit", "600",
                           "--out", str(out), "--data-dir", str(small_mnist_dir), "--json", "-q", *extra],
                          capture_output=True, text=True, env={**os.environ, **TWO_DEVICES}, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)["result"]["card"]


def test_two_devices_train_the_model_one_device_trains(tmp_path, small_mnist_dir):
    spread = _train_on_jax(tmp_path / "two", small_mnist_dir, "--distribute")
    alone = _train_on_jax(tmp_path / "one", small_mnist_dir)
    device = spread["training"]["device"]
    assert device["backend"] == "jax" and device["count"] == 2
    assert device["distribution"] == {"strategy": "keras.distribution.DataParallel", "devices": ["cpu:0", "cpu:1"],
                                      "count": 2, "global_batch": 128, "per_device_batch": 64,
                                      "images_dropped_to_split_evenly": 0}
    assert spread["recipe"]["batch_size"] == alone["recipe"]["batch_size"] == 128  # the seed's global batch
    assert "distribution" not in alone["training"]["device"] and alone["training"]["device"]["count"] == 1
    assert spread["training"]["train_images"] == alone["training"]["train_images"] == 550
    # The same recipe, data and seed: the same model within float rounding of the all-reduce.
    a = keras.saving.load_model(tmp_path / "two" / "model.keras")
    b = keras.saving.load_model(tmp_path / "one" / "model.keras")
    x = np.random.default_rng(0).random((256, 28, 28)).astype(np.float32)
    assert float(np.abs(np.asarray(a(x)) - np.asarray(b(x))).max()) < 1e-4
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wa, wb, atol=1e-4)
    assert abs(spread["metrics"]["test"]["accuracy"] - alone["metrics"]["test"]["accuracy"]) <= 1 / 300


def test_uneven_splits_are_trimmed_and_said():
    plan = Plan(("gpu:0", "gpu:1", "gpu:2"), global_batch=96)
    assert plan.per_device_batch == 32 and plan.trimmed(550) == 549 and plan.trimmed(50) == 48
    assert plan.describe(3)["images_dropped_to_split_evenly"] == 3


def test_distribution_needs_the_jax_backend_and_an_even_batch(tmp_path, small_mnist_dir):
    from edgeseq.training.distribute import data_parallel

    if keras.backend.backend() != "jax":  # the test session runs Keras on TensorFlow
        result = runner.invoke(app, ["train", "mlp", "--distribute", "--epochs", "1", "--limit", "100",
                                     "--out", str(tmp_path / "x"), "--data-dir", str(small_mnist_dir)])
        assert result.exit_code == 2 and "runs on the JAX backend (KERAS_BACKEND=jax)" in result.output
        assert not (tmp_path / "x" / "model.keras").exists()

    class FakeKeras:  # three devices, as on a three-GPU box
        class backend:
            backend = staticmethod(lambda: "jax")

        class distribution:
            list_devices = staticmethod(lambda: ["gpu:0", "gpu:1", "gpu:2"])

    with pytest.raises(InvalidValueError, match="batch size 128 does not split evenly over 3 devices"):
        data_parallel(FakeKeras, 128)
