"""The MNIST loader: where data is found, good files in each format, and each kind of bad file."""

from __future__ import annotations

import gzip
import hashlib

import numpy as np
import pytest
from conftest import write_idx, write_mnist_dir

from edgeseq import data
from edgeseq.errors import DataError


@pytest.fixture()
def good_dir(tmp_path, synthetic_arrays):
    images, labels = synthetic_arrays
    return write_mnist_dir(tmp_path / "mnist", images, labels, images[:5], labels[:5])


def test_idx_gz_loads_as_float_in_unit_range(good_dir, synthetic_arrays):
    images, labels = synthetic_arrays
    split = data.load_split("train", good_dir)
    assert split.images.dtype == np.float32 and split.images.shape == (12, 28, 28)
    assert split.images.min() >= 0.0 and split.images.max() <= 1.0
    np.testing.assert_allclose(split.images, images / 255.0, atol=1e-7)
    np.testing.assert_array_equal(split.labels, labels)
    assert len(data.load_split("test", good_dir)) == 5


def test_uncompressed_idx_loads(tmp_path, synthetic_arrays):
    images, labels = synthetic_arrays
    directory = write_mnist_dir(tmp_path / "raw", images, labels, images, labels, gz=False)
    assert len(data.load_split("test", directory)) == 12


def test_npz_loads(tmp_path, synthetic_arrays):
    images, labels = synthetic_arrays
    np.savez(tmp_path / "mnist.npz", x_train=images, y_train=labels, x_test=images[:3], y_test=labels[:3])
    source = data.locate(tmp_path)
    assert source.kind == "npz"
    assert len(data.load_split("test", source=source)) == 3


def test_real_mnist_sizes_and_checksums(mnist_dir):
    source = data.locate(mnist_dir)
    assert data.is_canonical(source) is True
    test = data.load_split("test", source=source)
    assert test.images.shape == (10000, 28, 28) and np.bincount(test.labels).sum() == 10000


def test_truncated_gzip_names_file(good_dir):
    path = good_dir / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz is truncated"):
        data.load_split("train", good_dir)


def test_corrupt_gzip_names_file(good_dir):
    (good_dir / "train-labels-idx1-ubyte.gz").write_bytes(b"this is not gzip at all")
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte\.gz is not a valid gzip file"):
        data.load_split("train", good_dir)


def test_wrong_magic_names_file(good_dir, synthetic_arrays):
    images, _ = synthetic_arrays
    write_idx(good_dir / "t10k-images-idx3-ubyte.gz", images, magic=0x0801)  # labels magic on an image file
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz is not an IDX images file"):
        data.load_split("test", good_dir)


def test_header_size_disagreeing_with_payload(good_dir, synthetic_arrays):
    images, _ = synthetic_arrays
    path = good_dir / "train-images-idx3-ubyte.gz"
    raw = gzip.decompress(path.read_bytes())
    with gzip.open(path, "wb") as f:  # header claims 12 images, payload holds 11 and a half
        f.write(raw[: len(raw) - 28 * 14])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz header says 12x28x28 = 9408 bytes of data but the file has 9016"):
        data.load_split("train", good_dir)


def test_image_and_label_counts_must_match(good_dir, synthetic_arrays):
    _, labels = synthetic_arrays
    write_idx(good_dir / "train-labels-idx1-ubyte.gz", labels[:7])
    with pytest.raises(DataError, match="12 images but 7 labels"):
        data.load_split("train", good_dir)


def test_label_out_of_range(good_dir, synthetic_arrays):
    _, labels = synthetic_arrays
    bad = labels.copy()
    bad[3] = 42
    write_idx(good_dir / "t10k-labels-idx1-ubyte.gz", bad[:5])
    with pytest.raises(DataError, match="label 42 is not a digit"):
        data.load_split("test", good_dir)


def test_wrong_image_size(tmp_path):
    rng = np.random.default_rng(1)
    small = rng.integers(0, 255, (4, 32, 32), dtype=np.uint8)
    directory = write_mnist_dir(tmp_path / "m", small, np.zeros(4, np.uint8), small, np.zeros(4, np.uint8))
    with pytest.raises(DataError, match=r"images are \(4, 32, 32\), expected \(N, 28, 28\)"):
        data.load_split("train", directory)


def test_corrupt_npz_names_file(tmp_path):
    (tmp_path / "mnist.npz").write_bytes(b"PK\x03\x04 broken")
    with pytest.raises(DataError, match=r"mnist\.npz is not a readable \.npz file"):
        data.load_split("train", tmp_path)


def test_npz_without_arrays(tmp_path):
    np.savez(tmp_path / "mnist.npz", something=np.zeros(3))
    with pytest.raises(DataError, match="has no x_train array"):
        data.load_split("train", tmp_path)


def test_missing_and_incomplete_directories(tmp_path, good_dir):
    with pytest.raises(DataError, match=r"does-not-exist \(--data-dir\) does not exist"):
        data.locate(tmp_path / "does-not-exist")
    (good_dir / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"lacks t10k-labels-idx1-ubyte\.gz"):
        data.locate(good_dir)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="has neither the four IDX"):
        data.locate(empty)


def test_argument_beats_environment_beats_cache(tmp_path, good_dir, monkeypatch, synthetic_arrays):
    images, labels = synthetic_arrays
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    (tmp_path / "keras" / "datasets").mkdir(parents=True)
    np.savez(tmp_path / "keras" / "datasets" / "mnist.npz", x_train=images, y_train=labels, x_test=images, y_test=labels)
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    assert data.locate().origin == "keras-cache"
    monkeypatch.setenv(data.ENV_VAR, str(good_dir))
    assert data.locate().origin == "environment" and data.locate().path == good_dir
    assert data.locate(good_dir).origin == "argument"
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match=f"nowhere \\({data.ENV_VAR}\\) does not exist"):
        data.locate()


def _serve_npz(tmp_path, synthetic_arrays):
    images, labels = synthetic_arrays
    served = tmp_path / "served.npz"
    np.savez(served, x_train=images, y_train=labels, x_test=images, y_test=labels)
    return served.as_uri(), hashlib.sha256(served.read_bytes()).hexdigest()


def test_download_is_checked_then_cached(tmp_path, monkeypatch, synthetic_arrays):
    url, digest = _serve_npz(tmp_path, synthetic_arrays)
    monkeypatch.setattr(data, "NPZ_URL", url)
    monkeypatch.setattr(data, "NPZ_SHA256", digest)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    source = data.locate()
    assert source.origin == "download" and source.path == tmp_path / "home" / "datasets" / "mnist.npz"
    assert len(data.load_split("train", source=source)) == 12
    assert data.locate().origin == "keras-cache"  # second time: no download


def test_download_with_wrong_checksum_keeps_nothing(tmp_path, monkeypatch, synthetic_arrays):
    url, _ = _serve_npz(tmp_path, synthetic_arrays)
    monkeypatch.setattr(data, "NPZ_URL", url)
    monkeypatch.setattr(data, "NPZ_SHA256", "0" * 64)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    with pytest.raises(DataError, match="SHA-256 .* not kept"):
        data.locate()
    assert list((tmp_path / "home" / "datasets").iterdir()) == []
    with pytest.raises(DataError, match="no local MNIST found"):
        data.locate(download=False)


def test_unreachable_download_explains_offline_options(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "NPZ_URL", (tmp_path / "absent.npz").as_uri())
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    with pytest.raises(DataError, match="could not download MNIST .* pass --data-dir or set EDGESEQ_DATA_DIR"):
        data.locate()


def test_adapt_images_to_model_inputs():
    images = np.zeros((3, 28, 28), np.float32)
    assert data.adapt_images(images, (784,)).shape == (3, 784)
    assert data.adapt_images(images, (28, 28, 1)).shape == (3, 28, 28, 1)
    with pytest.raises(DataError, match=r"model input \(32, 32\) holds 1024 values"):
        data.adapt_images(images, (32, 32))


def test_head_limits_and_rejects_nonsense(good_dir):
    split = data.load_split("train", good_dir)
    assert len(split.head(4)) == 4 and len(split.head(None)) == 12
    with pytest.raises(DataError):
        split.head(0)
