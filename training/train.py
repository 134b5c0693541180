"""Train a zoo model with its seed recipe (or overrides) and write a complete run directory.

A run directory holds ``model.keras``, ``card.json`` (see :mod:`edgeseq.card`), ``history.json``,
``curves.png`` and TensorBoard logs under ``tensorboard/``. Keras 3 runs on whatever backend is
installed and uses a GPU when one is visible; with a fixed seed a CPU run is repeatable bit for bit.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from edgeseq import __version__, atomic, card as cards, plots
from edgeseq.schema import Card, validated, write_document
from edgeseq.data import Split, is_canonical, load_split, locate, sha256_file
from edgeseq.fingerprint import cpu_name, package_versions
from edgeseq.metrics import score_outputs
from edgeseq.lazy import keras as _keras, require
from edgeseq.training import distribute as distribute_module, feed as feeds, zoo
from edgeseq.training.evaluate import headline, predict
from edgeseq.training.models import MODEL_NAME

_OPTIMIZERS = {"adam": "Adam", "rmsprop": "RMSprop", "sgd": "SGD"}


def describe_device(keras) -> dict:
    """The device Keras will train on: the first visible GPU, else the CPU."""
    backend = keras.backend.backend()
    info = {"backend": backend, "type": "cpu", "name": cpu_name(), "count": 1}
    if backend == "tensorflow":
        tf = require("tensorflow")
        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            details = tf.config.experimental.get_device_details(gpus[0])
            info.update(type="gpu", name=details.get("device_name", gpus[0].name), count=len(gpus))
    elif backend == "jax":
        jax = require("jax")
        devices = jax.devices()
        if devices[0].platform != "cpu":
            info.update(type="gpu", name=devices[0].device_kind, count=len(devices))
    elif backend == "torch":
        torch = require("torch")
        if torch.cuda.is_available():
            info.update(type="gpu", name=torch.cuda.get_device_name(0), count=torch.cuda.device_count())
    return info


def _make_deterministic(keras, seed: int, device: dict) -> None:
    keras.utils.set_random_seed(seed)  # Python, numpy and backend generators
    if device["backend"] == "tensorflow" and device["type"] == "cpu":
        require("tensorflow").config.experimental.enable_op_determinism()


def _epoch_timer(keras, on_epoch=None, samples: int = 0):
    """A callback timing each epoch; ``on_epoch(logs, seconds, samples_per_s)`` reports it (progress)."""
    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds = time.perf_counter() - self._start
            self.seconds.append(round(seconds, 3))
            if on_epoch:
                on_epoch(dict(logs or {}), seconds, samples / seconds if seconds > 0 else 0.0)

    return EpochTimer()


@dataclass
class TrainResult:
    run_dir: Path
    card: dict
    files: list[Path] = field(default_factory=list)


def train(
    name: str | zoo.ZooName,
    *,
    out_dir: str | Path,
    epochs: int | None = None,
    batch_size: int | None = None,
    learning_rate: float | None = None,
    schedule: str | None = None,
    seed: int = 0,
    limit: int | None = None,
    mixed_precision: bool = False,
    data_dir: str | Path | None = None,
    progress: bool = True,
    on_epoch=None,
    distribute: bool = False,
    steps_per_execution: int | None = None,
    train_split: Split | None = None,
    test_split: Split | None = None,
) -> TrainResult:
    """Train zoo model ``name`` and write its run directory; returns the card that was written.

    ``limit`` keeps the first N training images (quick runs); the card's test metrics always use the
    whole test split. ``train_split``/``test_split`` skip loading MNIST (tests, notebooks).
    ``distribute`` trains data-parallel over every visible device (:mod:`edgeseq.training.distribute`),
    keeping the recipe's batch size as the global batch. ``steps_per_execution`` is how many training
    steps run per call into the backend (:mod:`edgeseq.training.feed`; default 32, the same weights).
    """
    entry = zoo.get(name)
    recipe = entry.recipe.with_overrides(epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                                        schedule=schedule)
    source = locate(data_dir) if train_split is None or test_split is None else None
    train_data = (train_split or load_split("train", source=source)).head(limit)
    test_data = test_split or load_split("test", source=source)

    keras = _keras()
    device = describe_device(keras)
    plan = distribute_module.data_parallel(keras, recipe.batch_size) if distribute else None
    _make_deterministic(keras, seed, device)
    model, policy = _build(keras, entry, mixed_precision, device)
    x = train_data.images  # (N, 28, 28) float32 in [0, 1]: every zoo model's input
    y = zoo.targets(entry.task, train_data.labels)  # (N,) digits or (N, 5) character ids
    val_split = recipe.val_split if int(len(x) * recipe.val_split) >= 1 else 0.0
    fit_data, split, dropped = _fit_data(x, y, val_split, plan)
    feed = feeds.plan(device["backend"], recipe.batch_size, split[0], steps_per_execution)
    _compile(keras, model, recipe, split[0], feed.steps_per_execution)

    run_dir = Path(out_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    timer, callbacks, tensorboard = _callbacks(keras, run_dir, on_epoch, split[0])
    verbose = 0 if on_epoch or not progress else (1 if sys.stdout.isatty() else 2)
    started = time.perf_counter()
    try:
        fitted = model.fit(**fit_data, batch_size=recipe.batch_size, epochs=recipe.epochs, shuffle=True,
                           callbacks=callbacks, verbose=verbose)
    finally:
        if plan:
            distribute_module.single_device(keras)
    seconds = time.perf_counter() - started
    if plan:
        device = {**device, "count": plan.count, "distribution": plan.describe(dropped)}

    probs = predict(model, test_data.images, zoo.INPUT_SHAPE)
    test_metrics = headline(entry.task.value, score_outputs(entry.task.value, probs, test_data.labels))
    history = {"epoch": list(range(1, len(timer.seconds) + 1)), "epoch_seconds": timer.seconds}
    history.update({k: [round(float(v), 6) for v in vs] for k, vs in fitted.history.items()})
    files = _write_model(run_dir, model, history, entry)
    card = make_card(entry, recipe, model, seed=seed, limit=limit, policy=policy, device=device,
                     test_metrics=test_metrics, test_examples=len(test_data), history=history,
                     seconds=seconds, split=split, source=source,
                     model_file=run_dir / MODEL_NAME, tensorboard=tensorboard, feed=feed.describe())
    files.append(write_document(run_dir / cards.CARD_NAME, validated(Card, card)))
    if tensorboard:
        files.append(run_dir / "tensorboard")
    return TrainResult(run_dir, card, files)


def _build(keras, entry, mixed_precision: bool, device: dict):
    """The zoo model, under a mixed-precision policy when asked (float16 on GPU, bfloat16 on CPU)."""
    policy = None
    if mixed_precision:
        policy = "mixed_float16" if device["type"] == "gpu" else "mixed_bfloat16"
        keras.config.set_dtype_policy(policy)
    try:
        return entry.build(), policy
    finally:
        keras.config.set_dtype_policy("float32")


def _compile(keras, model, recipe, train_images: int, steps_per_execution: int = 1) -> None:
    """The recipe's optimizer (cosine-decayed over every step of the run when asked) and loss."""
    learning_rate = recipe.learning_rate
    if recipe.schedule == "cosine":
        steps = math.ceil(train_images / recipe.batch_size) * recipe.epochs
        learning_rate = keras.optimizers.schedules.CosineDecay(recipe.learning_rate, decay_steps=steps, alpha=0.01)
    optimizer = getattr(keras.optimizers, _OPTIMIZERS[recipe.optimizer])(learning_rate=learning_rate)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                  steps_per_execution=steps_per_execution)


def _callbacks(keras, run_dir: Path, on_epoch, train_images: int):
    """(epoch timer, callbacks, whether TensorBoard logs are written)."""
    timer = _epoch_timer(keras, on_epoch, train_images)
    tensorboard = importlib.util.find_spec("tensorboard") is not None and importlib.util.find_spec("tensorflow") is not None
    callbacks = [timer] + ([keras.callbacks.TensorBoard(log_dir=str(run_dir / "tensorboard"))] if tensorboard else [])
    return timer, callbacks, tensorboard


def _write_model(run_dir: Path, model, history: dict, entry) -> list[Path]:
    """model.keras (atomically), history.json and curves.png."""
    with atomic.atomic_path(run_dir / MODEL_NAME) as tmp:
        model.save(tmp)
    return [run_dir / MODEL_NAME, atomic.write_json(run_dir / "history.json", history),
            plots.training_curves(history, run_dir / "curves.png", f"{entry.name.value}: training curves")]


def _fit_data(x, y, val_split: float, plan) -> tuple[dict, tuple[int, int], int]:
    """``model.fit`` data arguments, (training, validation) image counts, and images dropped: the last
    ``val_split`` of the images hold out for validation; data parallel, each part is trimmed to a multiple
    of the device count so that every batch splits evenly."""
    n_val = int(len(x) * val_split)
    n_train = len(x) - n_val
    train_n, val_n = (plan.trimmed(n_train), plan.trimmed(n_val)) if plan else (n_train, n_val)
    data = {"x": x[:train_n], "y": y[:train_n]}
    if val_n:
        data["validation_data"] = (x[n_train : n_train + val_n], y[n_train : n_train + val_n])
    return data, (train_n, val_n), (n_train - train_n) + (n_val - val_n)


def make_card(entry, recipe, model, *, seed, limit, policy, device, test_metrics, test_examples, history,
              seconds, split: tuple[int, int], source, model_file: Path, tensorboard: bool,
              feed: dict | None = None) -> dict:
    """The model card of a freshly trained zoo model (schema in :mod:`edgeseq.card`)."""
    n_train, n_val = split
    metric, target = entry.seed_metric, entry.seed_target
    final = {k: v[-1] for k, v in history.items() if k not in ("epoch", "epoch_seconds")}
    return {
        "schema": cards.SCHEMA,
        "name": entry.name.value,
        "source": "zoo",
        "summary": entry.summary,
        "parameters": int(model.count_params()),
        "input": {"name": model.inputs[0].name, "shape": [None, *zoo.INPUT_SHAPE], "dtype": "float32"},
        "output": cards.spell_output() if entry.task is zoo.Task.spell else cards.classify_output(),
        "preprocessing": cards.PREPROCESSING,
        "recipe": {**dataclasses.asdict(recipe), "loss": "sparse_categorical_crossentropy", "seed": seed,
                   "limit": limit, "dtype_policy": policy or "float32"},
        "metrics": {
            "test": test_metrics,
            "test_examples": test_examples,
            "seed_target": {"metric": metric, "value": target},
            "meets_seed_target": bool(test_metrics[metric] >= target),
        },
        "training": {
            "seconds": round(seconds, 2),
            "epochs": len(history["epoch"]),
            "epoch_seconds": history["epoch_seconds"],
            "train_images": n_train,
            "validation_images": n_val,
            "final": final,
            "device": device,
            **({"feed": feed} if feed else {}),
            "tensorboard": "tensorboard/" if tensorboard else None,
        },
        "data": {**source.describe(), "canonical_mnist": is_canonical(source)} if source else {"kind": "in-memory"},
        "versions": {"edgeseq": __version__, "python": sys.version.split()[0], "keras_backend": device["backend"],
                     **package_versions("keras", "tensorflow", "jax", "torch", "numpy")},
        "model_file": {"name": model_file.name, "sha256": sha256_file(model_file), "bytes": model_file.stat().st_size},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def seed_check(card: dict) -> tuple[str, float, float, bool]:
    """(metric, achieved, seed target, met) from a card."""
    target = card["metrics"]["seed_target"]
    achieved = card["metrics"]["test"][target["metric"]]
    return target["metric"], achieved, target["value"], achieved >= target["value"]

