"""Each zoo model builds with its documented shape and size, trains a few steps, and trains repeatably."""

from __future__ import annotations

import numpy as np
import pytest

from edgeseq.errors import InvalidValueError, UnknownChoiceError
from edgeseq.training import zoo

keras = pytest.importorskip("keras")

EXPECTED_PARAMS = {"mlp": 63_018, "rnn": 28_360, "rnn128": 21_386, "lstm": 81_674, "gru": 61_962, "seq2seq": 258_704}


@pytest.fixture(scope="module")
def tiny_data(mnist_dir):
    from edgeseq.data import load_split

    return load_split("train", mnist_dir).head(256)


@pytest.mark.parametrize("name", [n.value for n in zoo.ZooName])
def test_builds_and_trains_a_few_steps(name, tiny_data):
    entry = zoo.get(name)
    model = entry.build()
    assert model.count_params() == EXPECTED_PARAMS[name]
    assert tuple(model.inputs[0].shape) == (None, 28, 28)
    expected_out = (None, 10) if entry.task is zoo.Task.classify else (None, 5, 16)
    assert tuple(model.outputs[0].shape) == expected_out
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    x, y = tiny_data.images, zoo.targets(entry.task, tiny_data.labels)
    before = float(model.evaluate(x, y, verbose=0))
    model.fit(x, y, batch_size=32, epochs=2, verbose=0)
    after = float(model.evaluate(x, y, verbose=0))
    assert np.isfinite(after) and after < before, f"{name}: loss {before:.3f} -> {after:.3f} did not drop"
    probs = np.asarray(model(x[:4]))
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, rtol=1e-5)


def test_recipes_follow_the_seeds():
    assert zoo.get("rnn").recipe.batch_size == 150
    assert zoo.get("rnn128").recipe.epochs == 30 and zoo.get("rnn128").recipe.batch_size == 128
    assert zoo.get("lstm").recipe.epochs == 10 and zoo.get("lstm").recipe.optimizer == "adam"
    assert {e.seed_target for e in zoo.ZOO.values()} == {0.879, 0.977, 0.973, 0.988, 0.985}
    assert zoo.get("seq2seq").seed_metric == "word_accuracy"


def test_recipe_overrides_and_validation():
    recipe = zoo.get("lstm").recipe.with_overrides(epochs=1, batch_size=None)
    assert recipe.epochs == 1 and recipe.batch_size == 64 and recipe.schedule == "cosine"
    with pytest.raises(InvalidValueError, match="learning_rate must be > 0"):
        recipe.with_overrides(learning_rate=0.0)
    with pytest.raises(UnknownChoiceError, match="valid: adam, rmsprop, sgd"):
        zoo.Recipe(optimizer="adagrad")
    with pytest.raises(UnknownChoiceError, match="valid: constant, cosine"):
        recipe.with_overrides(schedule="step")


def test_unknown_zoo_name_lists_valid_ones():
    with pytest.raises(UnknownChoiceError, match="unknown zoo model 'resnet'; valid: mlp, rnn, rnn128, lstm, gru, seq2seq"):
        zoo.get("resnet")


def test_same_seed_same_weights_on_cpu(tmp_path, mnist_dir):
    from edgeseq.data import load_split
    from edgeseq.training.train import train

    train_split, test_split = load_split("train", mnist_dir).head(300), load_split("test", mnist_dir).head(100)
    runs = [train("rnn128", out_dir=tmp_path / f"run{i}", epochs=1, seed=seed, train_split=train_split,
                  test_split=test_split, progress=False) for i, seed in enumerate((7, 7, 8))]
    weights = [keras.saving.load_model(r.run_dir / "model.keras").get_weights() for r in runs]
    for a, b in zip(weights[0], weights[1]):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, c) for a, c in zip(weights[0], weights[2])), "a different seed gave the same weights"
    assert runs[0].card["metrics"]["test"] == runs[1].card["metrics"]["test"]


def test_steps_per_execution_changes_speed_not_weights(tmp_path, mnist_dir):
    """Several steps per call into the backend run the same steps on the same batches: the same model."""
    from edgeseq.data import load_split
    from edgeseq.training.train import train

    train_split, test_split = load_split("train", mnist_dir).head(1000), load_split("test", mnist_dir).head(100)
    runs = [train("mlp", out_dir=tmp_path / f"spe{spe}", epochs=2, seed=3, steps_per_execution=spe,
                  train_split=train_split, test_split=test_split, progress=False) for spe in (1, None)]
    feeds = [r.card["training"]["feed"] for r in runs]
    assert feeds[0]["steps_per_execution"] == 1
    assert feeds[1]["steps_per_execution"] == 8  # the default 32, capped at one epoch: ceil(900 / 128)
    assert feeds[1]["batch_size"] == 128 and "prefetch" in feeds[1]["pipeline"]  # the test session is on TensorFlow
    weights = [keras.saving.load_model(r.run_dir / "model.keras").get_weights() for r in runs]
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)
    assert runs[0].card["training"]["final"] == runs[1].card["training"]["final"]


def test_feed_plan_limits():
    from edgeseq.errors import InvalidValueError
    from edgeseq.training.feed import STEPS_PER_EXECUTION, plan

    assert plan("jax", 64, 48_000).steps_per_execution == STEPS_PER_EXECUTION
    assert plan("tensorflow", 64, 100).steps_per_execution == 2  # never past one epoch
    assert plan("tensorflow", 64, 48_000, 5).steps_per_execution == 5
    assert plan("torch", 64, 48_000).steps_per_execution == 1  # Keras' torch trainer takes nothing else
    with pytest.raises(InvalidValueError, match="PyTorch trainer runs one step per execution, not 8"):
        plan("torch", 64, 48_000, 8)
    with pytest.raises(InvalidValueError, match="at least 1, got 0"):
        plan("jax", 64, 48_000, 0)
