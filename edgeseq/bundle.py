"""The bundle: the contract between the machine that exports and the device that runs.

A bundle directory holds the artifacts, ``manifest.json`` (each artifact's hash, size, format,
quantization, tensors with their quantization parameters, int8 coverage, the recipe used; the source
model's hash, preprocessing and output meaning from the card; library versions) and ``reference.npz``
(a fixed slice of test inputs with the Keras model's outputs and true labels, plus the Keras outputs
on the whole test set when MNIST was available). Reading it needs numpy only.
"""

from __future__ import annotations

import hashlib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeseq.data import sha256_file  # noqa: F401  (re-exported for bundle readers)
from edgeseq.documents import read_document
from edgeseq.errors import DataError, ModelError

SCHEMA = "edgeseq.bundle/1"
MANIFEST = "manifest.json"
REFERENCE = "reference.npz"


def test_set_sha256(images: np.ndarray, labels: np.ndarray) -> str:
    """Fingerprint of a test split (float images in [0, 1] as uint8, labels), to know the data matches."""
    digest = hashlib.sha256(np.round(np.asarray(images) * 255).astype(np.uint8).tobytes())
    digest.update(np.asarray(labels, dtype=np.uint8).tobytes())
    return digest.hexdigest()


def read_manifest(bundle_dir: str | Path) -> dict:
    bundle_dir = Path(bundle_dir)
    path = bundle_dir / MANIFEST
    if not bundle_dir.is_dir():
        raise ModelError(f"bundle {bundle_dir} does not exist or is not a directory")
    if not path.is_file():
        raise ModelError(f"{bundle_dir} is not an edgeseq bundle (no {MANIFEST})")
    return read_document(path, SCHEMA, ("artifacts", "input", "output"), "bundle manifest")


@dataclass(frozen=True)
class Reference:
    """The Keras original's outputs on known inputs, for parity checks without TensorFlow."""

    images: np.ndarray  # (R, 28, 28) float32 in [0, 1]: the first R test images
    labels: np.ndarray  # (R,) uint8
    outputs: np.ndarray  # (R, ...) float32 Keras outputs
    test_outputs: np.ndarray | None  # (10000, ...) float32 Keras outputs on the full test set, if known
    test_sha256: str | None  # test_set_sha256 of the split test_outputs belong to


def read_reference(bundle_dir: str | Path) -> Reference:
    path = Path(bundle_dir) / REFERENCE
    if not path.is_file():
        raise DataError(f"bundle {bundle_dir} has no {REFERENCE}")
    try:
        with np.load(path, allow_pickle=False) as f:
            test_outputs = f["test_outputs"] if "test_outputs" in f.files else None
            sha = str(f["test_sha256"]) if "test_sha256" in f.files else None
            return Reference(f["inputs"].astype(np.float32) / np.float32(255.0), f["labels"].astype(np.uint8),
                             f["outputs"].astype(np.float32), test_outputs, sha)
    except KeyError as exc:
        raise DataError(f"{path} lacks array {exc}") from exc
    except (zipfile.BadZipFile, ValueError, EOFError, OSError) as exc:
        raise DataError(f"{path} is not a readable reference set ({exc})") from exc


def ok_artifacts(manifest: dict) -> list[dict]:
    """The artifacts that were produced (failed conversions stay in the manifest with their reason)."""
    return [a for a in manifest["artifacts"] if a.get("status") == "ok"]


def find_artifact(manifest: dict, artifact_id: str) -> dict:
    for entry in manifest["artifacts"]:
        if entry["id"] == artifact_id:
            return entry
    raise ModelError(f"bundle has no artifact {artifact_id!r}; it has {', '.join(a['id'] for a in manifest['artifacts'])}")
