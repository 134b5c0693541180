"""Shared fixtures. Heavy frameworks are never imported here: tests that need Keras import it themselves."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # as edgeseq.lazy does, for tests that import Keras directly

REPO = Path(__file__).resolve().parents[1]


def write_idx(path: Path, array: np.ndarray, magic: int | None = None, gz: bool = True) -> Path:
    """Write a uint8 array as an IDX file (gzipped when ``gz``), as the MNIST originals are."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    magic = magic if magic is not None else (0x800 | array.ndim)
    header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)
    return path


def write_mnist_dir(directory: Path, train_images, train_labels, test_images, test_labels, gz: bool = True) -> Path:
    suffix = ".gz" if gz else ""
    write_idx(directory / f"train-images-idx3-ubyte{suffix}", train_images, gz=gz)
    write_idx(directory / f"train-labels-idx1-ubyte{suffix}", train_labels, gz=gz)
    write_idx(directory / f"t10k-images-idx3-ubyte{suffix}", test_images, gz=gz)
    write_idx(directory / f"t10k-labels-idx1-ubyte{suffix}", test_labels, gz=gz)
    return directory


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The real MNIST: $EDGESEQ_DATA_DIR, else ../shared/data/mnist beside the repository."""
    candidate = Path(os.environ.get("EDGESEQ_DATA_DIR") or REPO.parent / "shared" / "data" / "mnist")
    if not (candidate / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.fail(f"MNIST not found at {candidate}: set EDGESEQ_DATA_DIR to the folder with the IDX .gz files")
    return candidate


@pytest.fixture(scope="session")
def small_mnist_dir(tmp_path_factory, mnist_dir) -> Path:
    """A real-MNIST subset (600 train, 300 test images) written as IDX files, for fast end-to-end tests."""
    from edgeseq.data import load_split

    train, test = load_split("train", mnist_dir), load_split("test", mnist_dir)
    to_u8 = lambda images: np.round(images * 255).astype(np.uint8)  # noqa: E731
    return write_mnist_dir(tmp_path_factory.mktemp("small-mnist"), to_u8(train.images[:600]), train.labels[:600],
                           to_u8(test.images[:300]), test.labels[:300])


@pytest.fixture()
def synthetic_arrays():
    """Small random MNIST-shaped arrays: (images uint8 (N, 28, 28), labels uint8 (N,))."""
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (12, 28, 28), dtype=np.uint8), rng.integers(0, 10, 12, dtype=np.uint8)


@pytest.fixture(scope="session")
def splits(small_mnist_dir):
    from edgeseq.data import load_split

    return load_split("train", small_mnist_dir), load_split("test", small_mnist_dir)


def trained(model, splits, path, epochs=3):
    """Fit a Keras model a few epochs on the small split and save it to ``path``."""
    import keras

    train, _ = splits
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    model.fit(train.images.reshape((-1, *model.inputs[0].shape[1:])), train.labels, epochs=epochs, batch_size=32, verbose=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    return path


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory, splits):
    """A small MLP (no card: a user model) exported to all eight artifacts: (model path, ExportResult)."""
    keras = pytest.importorskip("keras")
    pytest.importorskip("tf2onnx")
    from edgeseq.export.bundle import export_bundle
    from edgeseq.formats import Format, Quant

    L = keras.layers
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((28, 28)), L.Flatten(), L.Dense(32, activation="relu"),
                              L.Dense(10, activation="softmax")])
    path = trained(model, splits, tmp_path_factory.mktemp("tiny") / "tiny.keras")
    result = export_bundle(path, formats=list(Format), quants=list(Quant), calibration_size=100,
                           train_split=splits[0], test_split=splits[1])
    return path, result


# In CI every test must run: a skip there means an extra failed to install, and must not pass as green.
_skipped: list[str] = []


def pytest_runtest_logreport(report):
    if report.skipped:
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    if os.environ.get("CI") and _skipped and exitstatus == 0:
        print(f"\nCI: {len(_skipped)} tests were skipped (first: {_skipped[0]}); failing the run")
        session.exitstatus = 1
