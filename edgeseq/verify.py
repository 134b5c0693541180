"""``edgeseq verify``: run every artifact of a bundle and check it against the Keras original.

On the whole MNIST test set when it is available here (and is the split the bundle's reference
outputs were computed on), else on the bundle's own reference slice. Needs no TensorFlow.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from edgeseq import __version__, atomic, bundle as bundles, parity
from edgeseq.data import load_split, locate
from edgeseq.errors import DataError, EdgeseqError
from edgeseq.fingerprint import host
from edgeseq.formats import Thresholds
from edgeseq.report import verify_markdown
from edgeseq.runtimes import open_runner

REPORT_JSON = "verify.json"
REPORT_MD = "verify.md"


def evaluation_set(manifest: dict, reference: bundles.Reference, data_dir=None) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """(images, digits, keras outputs, description): the full test split when it matches, else the slice."""
    why = "no MNIST found here"
    if reference.test_outputs is not None:
        try:
            test = load_split("test", source=locate(data_dir, download=False))
            if bundles.test_set_sha256(test.images, test.labels) == reference.test_sha256:
                return test.images, test.labels, reference.test_outputs, f"MNIST test set ({len(test):,} images)"
            why = "the MNIST found here is not the split the bundle was made with"
        except DataError as exc:
            why = str(exc)
    return (reference.images, reference.labels, reference.outputs,
            f"bundle reference set ({len(reference.labels):,} images; {why})")


def verify(bundle_dir: str | Path, *, data_dir=None, thresholds: Thresholds | None = None,
           threads: int | None = None, write: bool = True, on_artifact=None) -> dict:
    """Check every artifact of ``bundle_dir``; returns the report (and writes verify.json / verify.md)."""
    bundle_dir = Path(bundle_dir)
    thresholds = thresholds or Thresholds()
    manifest = bundles.read_manifest(bundle_dir)
    reference = bundles.read_reference(bundle_dir)
    images, digits, keras_outputs, described = evaluation_set(manifest, reference, data_dir)
    kind = manifest["output"]["kind"]
    fp32_sizes = {a["format"]: a["bytes"] for a in manifest["artifacts"] if a["quant"] == "fp32" and a.get("status") == "ok"}
    rows = []
    for entry in manifest["artifacts"]:
        row = {"id": entry["id"], "format": entry["format"], "quant": entry["quant"], "file": entry["file"],
               "bytes": entry.get("bytes"), "coverage": entry.get("coverage"), "notes": entry.get("notes", []),
               "recipe": entry.get("recipe"), "thresholds": thresholds.for_quant(entry["quant"])}
        if entry.get("bytes") and fp32_sizes.get(entry["format"]):
            row["size_vs_fp32"] = round(entry["bytes"] / fp32_sizes[entry["format"]], 3)
        if entry.get("status") != "ok":
            rows.append({**row, "status": "failed", "passed": False, "reasons": [f"not produced: {entry.get('error')}"]})
        else:
            rows.append(_check(bundle_dir, entry, row, kind, images, digits, keras_outputs, thresholds, threads))
        if on_artifact:
            on_artifact(rows[-1])
    report = {
        "schema": "edgeseq.verify/1",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "edgeseq": __version__,
        "bundle": str(bundle_dir),
        "model": manifest["source"].get("name"),
        "kind": kind,
        "evaluated_on": described,
        "examples": int(len(digits)),
        "host": host(),
        "passed": all(r["passed"] for r in rows),
        "artifacts": rows,
    }
    if write:
        atomic.write_json(bundle_dir / REPORT_JSON, report)
        atomic.write_text(bundle_dir / REPORT_MD, verify_markdown(report))
    return report


def _check(bundle_dir: Path, entry: dict, row: dict, kind: str, images, digits, keras_outputs,
           thresholds: Thresholds, threads) -> dict:
    path = bundle_dir / entry["file"]
    if not path.is_file():
        return {**row, "status": "missing", "passed": False, "reasons": [f"{entry['file']} is missing from the bundle"]}
    if bundles.sha256_file(path) != entry.get("sha256"):
        return {**row, "status": "changed", "passed": False,
                "reasons": [f"{entry['file']} does not match the manifest's SHA-256 (changed or corrupted since export)"]}
    try:
        runner = open_runner(path, threads=threads)
        started = time.perf_counter()
        outputs = runner.run(images, batch=1)  # as on a device: batch 1 (dynamic quantization depends on the batch)
        seconds = time.perf_counter() - started
        result = parity.compare(kind, outputs.reshape(keras_outputs.shape), keras_outputs, digits)
    except (EdgeseqError, ValueError, RuntimeError) as exc:
        return {**row, "status": "error", "passed": False, "reasons": [f"running it failed: {str(exc).splitlines()[0][:300]}"]}
    reasons = parity.judge(entry["quant"], result, entry.get("coverage"), thresholds)
    return {**row, "status": "ok", "passed": not reasons, "reasons": reasons, "parity": result,
            "runtime": runner.describe(), "run_seconds": round(seconds, 2)}
