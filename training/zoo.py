"""The seed model zoo: the architectures our users start from, each with its default (seed) recipe.

Every zoo model reads the same input, a (batch, 28, 28) float32 image in [0, 1] (the recurrent models
read it as 28 time steps of 28 pixels), so one preprocessing serves them all. Classifiers output
(batch, 10) probabilities; ``seq2seq`` outputs (batch, 5, 16) probabilities over ``labels.VOCAB``.
Keras is imported only when a model is built.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import Enum
from typing import Callable

from edgeseq import labels
from edgeseq.errors import InvalidValueError, UnknownChoiceError
from edgeseq.lazy import keras as _keras

INPUT_SHAPE = (28, 28)  # one image, rows as time steps


class ZooName(str, Enum):
    mlp = "mlp"
    rnn = "rnn"
    rnn128 = "rnn128"
    lstm = "lstm"
    gru = "gru"
    seq2seq = "seq2seq"


class Task(str, Enum):
    classify = "classify"  # (batch, 10) digit probabilities
    spell = "spell"  # (batch, 5, 16) character probabilities spelling the digit's name


OPTIMIZERS = ("adam", "rmsprop", "sgd")


class Schedule(str, Enum):
    """Learning-rate schedule (library and ``edgeseq train --schedule``)."""

    constant = "constant"
    cosine = "cosine"  # decay to 1 % of the learning rate over all steps


SCHEDULES = tuple(s.value for s in Schedule)


@dataclass(frozen=True)
class Recipe:
    """How a model is trained. Frozen; derive variants with :meth:`with_overrides`."""

    epochs: int = 10
    batch_size: int = 128
    learning_rate: float = 1e-3
    optimizer: str = "adam"
    schedule: str = "constant"
    val_split: float = 1 / 12  # the last 5,000 of 60,000 training images watch for over-fitting

    def __post_init__(self):
        if self.epochs < 1:
            raise InvalidValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise InvalidValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not self.learning_rate > 0:
            raise InvalidValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.optimizer not in OPTIMIZERS:
            raise UnknownChoiceError("optimizer", self.optimizer, list(OPTIMIZERS))
        if self.schedule not in SCHEDULES:
            raise UnknownChoiceError("schedule", self.schedule, list(SCHEDULES))
        if not 0 <= self.val_split < 1:
            raise InvalidValueError(f"val_split must be in [0, 1), got {self.val_split}")

    def with_overrides(self, **overrides) -> "Recipe":
        """A copy with the given fields replaced; ``None`` values keep the recipe's own."""
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})


@dataclass(frozen=True)
class ZooEntry:
    name: ZooName
    summary: str
    task: Task
    build: Callable[[], object]  # () -> keras.Model, uncompiled
    recipe: Recipe
    seed_metric: str  # "accuracy" or "word_accuracy", on the 10k test set
    seed_target: float  # the seed's result, to reach or beat


def _classifier(name: str, body: Callable) -> object:
    keras = _keras()
    inputs = keras.Input(INPUT_SHAPE, name="image")
    hidden = body(keras, inputs)
    # float32 output even under a mixed-precision policy, so probabilities stay exact.
    outputs = keras.layers.Dense(10, activation="softmax", dtype="float32", name="digit")(hidden)
    return keras.Model(inputs, outputs, name=name)


def build_mlp():
    def body(keras, x):
        L = keras.layers
        x = L.Flatten(name="flatten")(x)  # (batch, 784)
        x = L.Dense(64, activation="elu", name="dense_64")(x)
        x = L.Dropout(0.9, name="dropout_90")(x)
        x = L.Dense(128, activation="relu", name="dense_128")(x)
        x = L.Dropout(0.7, name="dropout_70")(x)
        return L.Dense(32, activation="elu", name="dense_32")(x)

    return _classifier("mlp", body)


def _recurrent(name: str, layer: str, units: int):
    def body(keras, x):
        return getattr(keras.layers, layer)(units, name=layer.lower())(x)  # (batch, units), last step

    return lambda: _classifier(name, body)


def build_seq2seq():
    """CNN encoder whose 128-d code is the initial state (and every step's input) of a SimpleRNN decoder."""
    keras = _keras()
    L = keras.layers
    image = keras.Input(INPUT_SHAPE, name="image")
    x = L.Reshape((28, 28, 1), name="to_channels")(image)
    x = L.Conv2D(32, 3, activation="relu", name="conv_32")(x)  # (batch, 26, 26, 32)
    x = L.MaxPooling2D(name="pool_1")(x)  # (batch, 13, 13, 32)
    x = L.Conv2D(64, 3, activation="relu", name="conv_64")(x)  # (batch, 11, 11, 64)
    x = L.MaxPooling2D(name="pool_2")(x)  # (batch, 5, 5, 64)
    x = L.Flatten(name="flatten")(x)
    code = L.Dense(128, activation="relu", name="encoder")(x)  # (batch, 128)
    steps = L.RepeatVector(labels.WORD_LEN, name="repeat")(code)  # (batch, 5, 128)
    hidden = L.SimpleRNN(128, return_sequences=True, name="decoder")(steps, initial_state=[code])
    chars = L.Dense(len(labels.VOCAB), activation="softmax", dtype="float32", name="chars")(hidden)
    return keras.Model(image, chars, name="seq2seq")  # (batch, 5, 16)


ZOO: dict[ZooName, ZooEntry] = {
    ZooName.mlp: ZooEntry(
        ZooName.mlp, "784 -> Dense 64 elu -> Dropout 0.9 -> Dense 128 relu -> Dropout 0.7 -> Dense 32 elu -> 10",
        Task.classify, build_mlp, Recipe(epochs=30, batch_size=128), "accuracy", 0.879),
    ZooName.rnn: ZooEntry(
        ZooName.rnn, "SimpleRNN(150) over 28 rows of 28 pixels -> Dense 10",
        Task.classify, _recurrent("rnn", "SimpleRNN", 150), Recipe(epochs=20, batch_size=150, schedule="cosine"),
        "accuracy", 0.977),
    ZooName.rnn128: ZooEntry(
        ZooName.rnn128, "SimpleRNN(128) over 28 rows -> Dense 10",
        Task.classify, _recurrent("rnn128", "SimpleRNN", 128), Recipe(epochs=30, batch_size=128, schedule="cosine"),
        "accuracy", 0.973),
    ZooName.lstm: ZooEntry(
        ZooName.lstm, "LSTM(128) over 28 rows -> Dense 10 softmax",
        Task.classify, _recurrent("lstm", "LSTM", 128),
        Recipe(epochs=10, batch_size=64, learning_rate=2e-3, schedule="cosine"), "accuracy", 0.988),
    ZooName.gru: ZooEntry(
        ZooName.gru, "GRU(128) over 28 rows -> Dense 10",
        Task.classify, _recurrent("gru", "GRU", 128),
        Recipe(epochs=10, batch_size=64, learning_rate=2e-3, schedule="cosine"), "accuracy", 0.985),
    ZooName.seq2seq: ZooEntry(
        ZooName.seq2seq, "CNN encoder (conv32-pool-conv64-pool-dense128) -> SimpleRNN(128) decoder spelling 5 chars",
        Task.spell, build_seq2seq, Recipe(epochs=10, batch_size=128), "word_accuracy", 0.985),
}


def get(name: str | ZooName) -> ZooEntry:
    """The zoo entry called ``name``; an unknown name raises, listing the valid ones."""
    try:
        return ZOO[ZooName(name)]
    except ValueError:
        raise UnknownChoiceError("zoo model", name, [n.value for n in ZooName]) from None


def targets(task: Task, digit_labels):
    """Training targets for a task: digits (N,) for classify, character ids (N, 5) for spell."""
    return labels.encode_words(digit_labels) if task is Task.spell else digit_labels
