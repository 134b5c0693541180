"""MNIST from local files, found without guessing, and checked before use.

Where the data comes from, in order:

1. ``data_dir`` (the CLI's ``--data-dir``);
2. the environment variable ``EDGESEQ_DATA_DIR``;
3. the Keras cache (``$KERAS_HOME/datasets/mnist.npz``, default ``~/.keras/datasets``);
4. only when none of these exists: a download of Keras' ``mnist.npz`` into that cache, accepted only
   if its SHA-256 matches.

A directory may hold the four original IDX files (``train-images-idx3-ubyte.gz`` etc., gzipped or
not) or a Keras ``mnist.npz``. Every file is checked (magic number, header sizes against the payload,
images against labels, label range) and a problem is a :class:`DataError` naming the file.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import struct
import tempfile
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeseq.errors import DataError

ENV_VAR = "EDGESEQ_DATA_DIR"
SPLITS = ("train", "test")
IDX_NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
NPZ_NAME = "mnist.npz"
NPZ_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
NPZ_SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"
# SHA-256 of the four original gzipped IDX files, to tell canonical MNIST from a look-alike.
CANONICAL_SHA256 = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
_IDX_IMAGES_MAGIC = 0x00000803  # unsigned byte, 3 dimensions
_IDX_LABELS_MAGIC = 0x00000801  # unsigned byte, 1 dimension
IMAGE_SHAPE = (28, 28)


@dataclass(frozen=True)
class Split:
    """One split of MNIST."""

    images: np.ndarray  # (N, 28, 28) float32 in [0, 1], ink bright on dark
    labels: np.ndarray  # (N,) uint8 in 0..9

    def __len__(self) -> int:
        return len(self.labels)

    def head(self, n: int | None) -> "Split":
        """The first ``n`` examples (all of them when ``n`` is None)."""
        if n is None:
            return self
        if n <= 0:
            raise DataError(f"limit must be a positive number of images, got {n}")
        return Split(self.images[:n], self.labels[:n])


@dataclass(frozen=True)
class Source:
    """Where MNIST was found: a directory of IDX files or an ``mnist.npz`` file."""

    kind: str  # "idx" or "npz"
    path: Path  # the directory (idx) or the file (npz)
    origin: str  # "argument", "environment", "keras-cache" or "download"

    def describe(self) -> dict:
        return {"kind": self.kind, "path": str(self.path), "origin": self.origin}


def keras_cache_dir() -> Path:
    """Keras' dataset cache, found the way Keras finds it, without importing Keras."""
    home = os.environ.get("KERAS_HOME")
    base = Path(home) if home else Path.home() / ".keras"
    return base / "datasets"


def _idx_file(directory: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (directory / name).is_file():
            return directory / name
    return None


def _source_in(directory: Path, origin: str, how: str) -> Source:
    if not directory.exists():
        raise DataError(f"MNIST directory {directory} ({how}) does not exist")
    if directory.is_file():
        if directory.suffix == ".npz":
            return Source("npz", directory, origin)
        raise DataError(f"MNIST location {directory} ({how}) is a file; expected a directory or mnist.npz")
    stems = [stem for pair in IDX_NAMES.values() for stem in pair]
    found = [s for s in stems if _idx_file(directory, s)]
    if len(found) == len(stems):
        return Source("idx", directory, origin)
    if (directory / NPZ_NAME).is_file():
        return Source("npz", directory / NPZ_NAME, origin)
    if found:
        missing = sorted(set(stems) - set(found))
        raise DataError(f"MNIST directory {directory} ({how}) lacks {', '.join(m + '.gz' for m in missing)}")
    raise DataError(f"MNIST directory {directory} ({how}) has neither the four IDX .gz files nor {NPZ_NAME}")


def locate(data_dir: str | os.PathLike | None = None, *, download: bool = True) -> Source:
    """Find MNIST: argument, then ``EDGESEQ_DATA_DIR``, then the Keras cache, then a checked download."""
    if data_dir is not None:
        return _source_in(Path(data_dir).expanduser(), "argument", "--data-dir")
    env = os.environ.get(ENV_VAR)
    if env:
        return _source_in(Path(env).expanduser(), "environment", ENV_VAR)
    cached = keras_cache_dir() / NPZ_NAME
    if cached.is_file():
        return Source("npz", cached, "keras-cache")
    if not download:
        raise DataError(f"no local MNIST found; pass --data-dir or set {ENV_VAR} to a folder with the IDX .gz files")
    return Source("npz", download_npz(cached), "download")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_npz(target: Path, url: str | None = None, sha256: str | None = None) -> Path:
    """Download Keras' ``mnist.npz`` to ``target`` and keep it only if its SHA-256 matches."""
    url = url or NPZ_URL
    sha256 = sha256 or NPZ_SHA256
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".mnist-", suffix=".part", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            shutil.copyfileobj(response, out)
        actual = sha256_file(tmp)
        if actual != sha256:
            raise DataError(f"downloaded {url} has SHA-256 {actual[:12]}…, expected {sha256[:12]}…; not kept")
        os.replace(tmp, target)
    except OSError as exc:
        raise DataError(
            f"could not download MNIST from {url} ({exc}); pass --data-dir or set {ENV_VAR} "
            f"to a folder with the four IDX .gz files or {NPZ_NAME}"
        ) from exc
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except EOFError as exc:
        raise DataError(f"{path} is truncated (the gzip stream ends early)") from exc
    except (gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(f"{path} is not a valid gzip file ({exc})") from exc
    except OSError as exc:
        raise DataError(f"cannot read {path} ({exc})") from exc


def read_idx(path: Path, expected_magic: int) -> np.ndarray:
    """An IDX file as a uint8 array shaped as its header says, after checking header against payload."""
    raw = _read_bytes(path)
    ndim = expected_magic & 0xFF
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise DataError(f"{path} is too short to be an IDX file ({len(raw)} bytes)")
    (magic,) = struct.unpack(">I", raw[:4])
    if magic != expected_magic:
        kind = {_IDX_IMAGES_MAGIC: "images", _IDX_LABELS_MAGIC: "labels"}.get(expected_magic, "IDX")
        raise DataError(f"{path} is not an IDX {kind} file (magic 0x{magic:08x}, expected 0x{expected_magic:08x})")
    dims = struct.unpack(f">{ndim}I", raw[4:header_len])
    expected = int(np.prod(dims))
    payload = len(raw) - header_len
    if payload != expected:
        raise DataError(
            f"{path} header says {'x'.join(map(str, dims))} = {expected} bytes of data but the file has {payload}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header_len).reshape(dims)


def _checked(images: np.ndarray, labels: np.ndarray, where: str) -> Split:
    if images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE:
        raise DataError(f"{where}: images are {images.shape}, expected (N, 28, 28)")
    if labels.ndim != 1:
        raise DataError(f"{where}: labels are {labels.shape}, expected (N,)")
    if len(images) != len(labels):
        raise DataError(f"{where}: {len(images)} images but {len(labels)} labels")
    if len(labels) and int(labels.max()) > 9:
        raise DataError(f"{where}: label {int(labels.max())} is not a digit 0-9")
    return Split(images.astype(np.float32) / np.float32(255.0), labels.astype(np.uint8))


def _load_idx(directory: Path, split: str) -> Split:
    image_stem, label_stem = IDX_NAMES[split]
    image_path = _idx_file(directory, image_stem)
    label_path = _idx_file(directory, label_stem)
    if image_path is None or label_path is None:
        raise DataError(f"{directory} lacks the MNIST {split} files {image_stem}.gz / {label_stem}.gz")
    images = read_idx(image_path, _IDX_IMAGES_MAGIC)
    labels = read_idx(label_path, _IDX_LABELS_MAGIC)
    return _checked(images, labels, f"{image_path.name} / {label_path.name}")


def _load_npz(path: Path, split: str) -> Split:
    try:
        with np.load(path, allow_pickle=False) as f:
            for key in (f"x_{split}", f"y_{split}"):
                if key not in f.files:
                    raise DataError(f"{path} has no {key} array; not a Keras mnist.npz")
            images, labels = f[f"x_{split}"], f[f"y_{split}"]
    except (zipfile.BadZipFile, ValueError, EOFError, OSError, zlib.error) as exc:
        raise DataError(f"{path} is not a readable .npz file ({exc})") from exc
    if images.dtype != np.uint8:
        raise DataError(f"{path}: x_{split} is {images.dtype}, expected uint8 pixels")
    return _checked(images, labels, str(path))


def load_split(split: str, data_dir: str | os.PathLike | None = None, *, source: Source | None = None) -> Split:
    """Load ``"train"`` or ``"test"`` as float32 images in [0, 1] and uint8 labels."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    source = source or locate(data_dir)
    if source.kind == "idx":
        return _load_idx(source.path, split)
    return _load_npz(source.path, split)


def is_canonical(source: Source) -> bool | None:
    """True when a directory holds the original MNIST IDX files byte for byte (None for npz)."""
    if source.kind != "idx":
        return None
    for name, digest in CANONICAL_SHA256.items():
        path = source.path / name
        if not path.is_file() or sha256_file(path) != digest:
            return False
    return True


def adapt_images(images: np.ndarray, input_shape: tuple) -> np.ndarray:
    """Reshape (N, 28, 28) images to a model's input shape (batch dim excluded), e.g. (784,) or (28, 28, 1)."""
    target = tuple(int(d) for d in input_shape)
    per_image = int(np.prod(images.shape[1:]))
    if int(np.prod(target)) != per_image:
        raise DataError(
            f"model input {target} holds {int(np.prod(target))} values per example; "
            f"MNIST images have {per_image} ({images.shape[1:]})"
        )
    return images.reshape((len(images),) + target)
