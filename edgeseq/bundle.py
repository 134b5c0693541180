"""The bundle: the contract between the machine that exports and the device that runs.

A bundle directory holds the artifacts, ``manifest.json`` (a :class:`~edgeseq.schema.Manifest`: each
artifact's hash, size, format, quantization, tensors, int8 coverage and recipe; the source model's hash,
preprocessing and output meaning from the card; library versions) and ``reference.npz`` (test inputs
with the Keras model's outputs and true labels: by default the whole test split, so that a device with no
MNIST verifies on the images export judged on; a shorter slice also carries the Keras outputs on the whole
split). Reading it needs numpy only.

Every reader goes through this module, which refuses what it cannot trust: a malformed manifest or
reference set, an artifact whose size or SHA-256 differs from the manifest's, a path that leads out of
the bundle (``..``, absolute, a symlink out), and a Keras source whose hash does not match.
"""

from __future__ import annotations

import hashlib
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List, Optional

import numpy as np

from edgeseq.data import sha256_file
from edgeseq.errors import DataError, IntegrityError, ModelError
from edgeseq.schema import Artifact, Manifest, read_document

SCHEMA = Manifest.SCHEMA
MANIFEST = "manifest.json"
REFERENCE = "reference.npz"

__all__ = ["Artifact", "Manifest", "Reference", "MANIFEST", "REFERENCE", "SCHEMA", "artifact_path", "check_artifacts",
           "is_bundle", "read_manifest", "read_reference", "sha256_file", "source_model", "test_set_sha256"]


def test_set_sha256(images: np.ndarray, labels: np.ndarray) -> str:
    """Fingerprint of a test split (float images in [0, 1] as uint8, labels), to know the data matches."""
    digest = hashlib.sha256(np.round(np.asarray(images) * 255).astype(np.uint8).tobytes())
    digest.update(np.asarray(labels, dtype=np.uint8).tobytes())
    return digest.hexdigest()


def is_bundle(directory: str | Path) -> bool:
    return (Path(directory) / MANIFEST).is_file()


def read_manifest(bundle_dir: str | Path) -> Manifest:
    """The bundle's manifest, validated (a malformed field is one :class:`DocumentError` line)."""
    bundle_dir = Path(bundle_dir)
    if not bundle_dir.is_dir():
        raise ModelError(f"bundle {bundle_dir} does not exist or is not a directory")
    if not (bundle_dir / MANIFEST).exists():
        raise ModelError(f"{bundle_dir} is not an edgeseq bundle (no {MANIFEST})")
    return read_document(bundle_dir / MANIFEST, Manifest)


def _inside(bundle_dir: Path, relative: str) -> Path:
    """``bundle_dir / relative``, refused when it resolves outside the bundle (a symlink out)."""
    path = bundle_dir / relative
    root = bundle_dir.resolve()
    try:
        path.resolve().relative_to(root)
    except ValueError:
        raise IntegrityError(f"{path} leads outside the bundle (to {path.resolve()}): refused") from None
    return path


def artifact_path(bundle_dir: str | Path, artifact: Artifact) -> Path:
    """The artifact's file, once it is inside the bundle and has the size and SHA-256 the manifest records."""
    bundle_dir = Path(bundle_dir)
    path = _inside(bundle_dir, artifact.file)
    if not path.is_file():
        raise IntegrityError(f"bundle {bundle_dir}: {artifact.id} ({artifact.file}) is missing from the bundle")
    size = path.stat().st_size
    if size != artifact.bytes:
        raise IntegrityError(f"bundle {bundle_dir}: {artifact.file} is {size:,} bytes, the manifest records "
                             f"{artifact.bytes:,} (changed or truncated since export): refused")
    if sha256_file(path) != artifact.sha256:
        raise IntegrityError(f"bundle {bundle_dir}: {artifact.file} does not match the manifest's SHA-256 "
                             "(changed or corrupted since export): refused")
    return path


def check_artifacts(bundle_dir: str | Path, manifest: Manifest, ids: Optional[Iterable[str]] = None) -> List[Path]:
    """Every produced artifact (or those in ``ids``) checked with :func:`artifact_path`, before anything runs."""
    wanted = set(ids) if ids is not None else None
    return [artifact_path(bundle_dir, a) for a in manifest.ok_artifacts() if wanted is None or a.id in wanted]


def source_model(manifest: Manifest) -> Path:
    """The Keras model the bundle was exported from, only when it is here with the recorded SHA-256."""
    path = Path(manifest.source.model)
    if not path.is_file():
        raise ModelError(f"the bundle's source model {path} is not on this machine")
    if manifest.source.bytes is not None and path.stat().st_size != manifest.source.bytes:
        raise IntegrityError(f"{path} has changed since the bundle was exported (size differs): refused")
    if sha256_file(path) != manifest.source.sha256:
        raise IntegrityError(f"{path} has changed since the bundle was exported (SHA-256 differs): refused")
    return path


@dataclass(frozen=True)
class Reference:
    """The Keras original's outputs on known inputs, for parity checks without TensorFlow."""

    images: np.ndarray  # (R, 28, 28) float32 in [0, 1]: the first R test images
    labels: np.ndarray  # (R,) uint8
    outputs: np.ndarray  # (R, ...) float32 Keras outputs
    test_outputs: np.ndarray | None  # (10000, ...) float32 Keras outputs on the full test set, if known
    test_sha256: str | None  # test_set_sha256 of the split test_outputs belong to

    @property
    def whole_split(self) -> bool:
        """The inputs are the whole test split itself (their fingerprint is the split's)."""
        return self.test_sha256 is not None and test_set_sha256(self.images, self.labels) == self.test_sha256


def _array(f, name: str, path: Path) -> np.ndarray:
    if name not in f.files:
        raise DataError(f"{path} is not a complete reference set (no {name!r} array)")
    return f[name]


def read_reference(bundle_dir: str | Path, manifest: Manifest | None = None) -> Reference:
    """``reference.npz``, checked for shapes, dtypes and finite values (and against ``manifest``)."""
    bundle_dir = Path(bundle_dir)
    path = bundle_dir / REFERENCE
    if not path.is_file():
        raise DataError(f"bundle {bundle_dir} has no {REFERENCE}")
    path = _inside(bundle_dir, REFERENCE)
    try:
        with np.load(path, allow_pickle=False) as f:
            inputs, labels, outputs = (_array(f, n, path) for n in ("inputs", "labels", "outputs"))
            sha = str(f["test_sha256"]) if "test_sha256" in f.files else None
            # a whole-split reference stores the outputs once; a partial slice carries the split's beside it
            test_outputs = f["test_outputs"] if "test_outputs" in f.files else (outputs if sha else None)
    except DataError:
        raise
    except (zipfile.BadZipFile, ValueError, EOFError, OSError, KeyError, zipfile.LargeZipFile) as exc:
        raise DataError(f"{path} is not a readable reference set ({type(exc).__name__}: {str(exc)[:120]})") from None
    reference = Reference(inputs, labels, outputs, test_outputs, sha)
    _check_reference(reference, path, manifest)
    found = Reference(inputs.astype(np.float32) / np.float32(255.0), labels.astype(np.uint8), outputs.astype(np.float32),
                      None if test_outputs is None else test_outputs.astype(np.float32), sha)
    if test_outputs is outputs and not found.whole_split:
        raise DataError(f"{path} is not a valid reference set: it has no test_outputs, so its inputs must be the "
                        "whole test split its fingerprint names, and they are not")
    return found


def _check_reference(ref: Reference, path: Path, manifest: Manifest | None) -> None:
    def bad(why: str):
        return DataError(f"{path} is not a valid reference set: {why}")

    if ref.images.dtype != np.uint8:
        raise bad(f"inputs are {ref.images.dtype}, uint8 expected")
    n = len(ref.labels) if ref.labels.ndim == 1 else -1
    if n < 1 or ref.images.ndim < 2 or len(ref.images) != n or ref.outputs.ndim < 2 or len(ref.outputs) != n:
        raise bad(f"inputs {ref.images.shape}, labels {ref.labels.shape} and outputs {ref.outputs.shape} do not "
                  "hold one row per example")
    if ref.labels.dtype.kind not in "iu" or ref.labels.min() < 0 or ref.labels.max() > 9:
        raise bad("labels are not digits 0-9")
    if int(np.prod(ref.images.shape[1:])) != 28 * 28:
        raise bad(f"inputs are {ref.images.shape[1:]} per example, 28x28 images expected")
    for name, array in (("outputs", ref.outputs), ("test_outputs", ref.test_outputs)):
        if array is not None and (array.dtype.kind != "f" or not np.isfinite(array).all()):
            raise bad(f"{name} are not finite floats")
    if ref.test_outputs is not None and ref.test_outputs.shape[1:] != ref.outputs.shape[1:]:
        raise bad(f"test_outputs {ref.test_outputs.shape} and outputs {ref.outputs.shape} differ per example")
    if manifest is not None:
        if list(ref.outputs.shape[1:]) != manifest.output.shape:
            raise bad(f"outputs are {list(ref.outputs.shape[1:])} per example, the manifest says {manifest.output.shape}")
        if n != manifest.reference.examples:
            raise bad(f"it holds {n} examples, the manifest says {manifest.reference.examples}")
        if ref.test_outputs is not None and ref.test_sha256 != manifest.reference.test_sha256:
            raise bad("its test-set fingerprint differs from the manifest's (from another export?)")
