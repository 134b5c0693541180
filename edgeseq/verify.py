"""``edgeseq verify``: run every artifact of a bundle and check it against the Keras original.

On the whole MNIST test set: the bundle carries it (inputs, labels, Keras outputs), so a device with no
MNIST verifies on the images export judged on. A bundle exported with a shorter reference slice uses the
test split found here when it is the one the bundle was made with, else the slice, and every agreement
comes with its 95 % interval so a small set's verdict says how sure it is. Needs no TensorFlow.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from edgeseq import __version__, atomic, bundle as bundles, parity
from edgeseq.data import load_split, locate
from edgeseq.errors import DataError, EdgeseqError, InvalidValueError, OutputError
from edgeseq.fingerprint import host
from edgeseq.formats import Format, Quant, Thresholds
from edgeseq.report import verify_markdown
from edgeseq.runtimes import open_runner
from edgeseq.schema import Artifact, Manifest, VerifyReport, validated, write_document

REPORT_JSON = "verify.json"
REPORT_MD = "verify.md"


def evaluation_set(manifest: Manifest, reference: bundles.Reference, data_dir=None,
                   limit: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """(images, digits, keras outputs, description): the whole test split (carried by the bundle, or found
    here when the bundle holds a slice and the split matches), else the bundle's slice; the first ``limit``."""
    if reference.whole_split:
        found = (reference.images, reference.labels, reference.outputs,
                 f"MNIST test set ({len(reference.labels):,} images, carried by the bundle)")
    else:
        found = _test_split_here(reference, data_dir)
    images, digits, outputs, described = found
    if limit is not None and limit < len(digits):
        images, digits, outputs = images[:limit], digits[:limit], outputs[:limit]
        described = f"the first {limit:,} of the {described}"
    return images, digits, outputs, described


def _test_split_here(reference: bundles.Reference, data_dir) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
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
           threads: int | None = None, limit: int | None = None, formats=None, on_start=None,
           on_artifact=None) -> dict:
    """Check every artifact of ``bundle_dir`` (or those of ``formats``: a device with one runtime checks
    what it can run); returns the report (see :func:`write_report`).

    The manifest, the reference set and every artifact's size and SHA-256 are checked before anything
    runs: a bundle that was changed since export is refused (:class:`~edgeseq.errors.IntegrityError`)."""
    bundle_dir = Path(bundle_dir)
    thresholds = thresholds or Thresholds()
    manifest = bundles.read_manifest(bundle_dir)
    reference = bundles.read_reference(bundle_dir, manifest)
    paths = dict(zip((a.id for a in manifest.ok_artifacts()), bundles.check_artifacts(bundle_dir, manifest)))
    images, digits, keras_outputs, described = evaluation_set(manifest, reference, data_dir, limit)
    entries = [a for a in manifest.artifacts if formats is None or a.format in set(formats)]
    if not entries:
        raise InvalidValueError(f"bundle {bundle_dir} has no {' or '.join(Format(f).value for f in formats)} artifacts")
    if on_start:
        on_start(len(entries))
    fp32s = {a.format: a for a in manifest.ok_artifacts() if a.quant is Quant.fp32}
    fp32_sizes = {f: a.bytes for f, a in fp32s.items()}
    rows = []
    for entry in entries:
        row = {"id": entry.id, "format": entry.format.value, "quant": entry.quant.value, "file": entry.file,
               "bytes": entry.bytes, "coverage": entry.coverage_json(), "notes": list(entry.notes),
               "recipe": entry.recipe, "thresholds": thresholds.for_quant(entry.quant)}
        if entry.bytes and fp32_sizes.get(entry.format):
            row["size_vs_fp32"] = round(entry.bytes / fp32_sizes[entry.format], 3)
        if entry.ok and entry.quant in (Quant.int8, Quant.dynamic):
            row["flags"] = integer_flags(entry, row.get("size_vs_fp32"), fp32s.get(entry.format))
        if not entry.ok:
            rows.append({**row, "status": "failed", "passed": False, "reasons": [f"not produced: {entry.error}"]})
        else:
            rows.append(_check(paths[entry.id], entry, row, manifest.kind, images, digits, keras_outputs, thresholds, threads))
        if on_artifact:
            on_artifact(rows[-1])
    report = {
        "schema": VerifyReport.SCHEMA,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "edgeseq": __version__,
        "bundle": str(bundle_dir),
        "model": manifest.source.name,
        "kind": manifest.kind,
        "evaluated_on": described,
        "examples": int(len(digits)),
        "host": host(),
        "passed": all(r["passed"] for r in rows),
        "artifacts": rows,
    }
    validated(VerifyReport, report)
    return report


def integer_flags(entry: Artifact, size_vs_fp32: float | None, fp32: Artifact | None = None) -> list[str]:
    """What makes an integer artifact not worth having: its size here (and, given its format's ``fp32``
    entry, what keeps it large), its latency as the export measured it (side by side with fp32, batch 1:
    :mod:`edgeseq.export.search`); ``edgeseq bench`` re-times it."""
    winner = entry.search.winner() if entry.search else None
    flags = parity.worth_flags(size_vs_fp32, winner.p50_vs_fp32 if winner else None, parity.size_why(entry, fp32))
    return [f"{flag} (measured at export)" if flag.startswith("slower") else flag for flag in flags]


def write_report(report: dict, out_dir: str | Path) -> list[Path]:
    """verify.json (validated) and verify.md in ``out_dir``, each written atomically."""
    out_dir = Path(out_dir)
    files = [write_document(out_dir / REPORT_JSON, validated(VerifyReport, report))]
    try:
        files.append(atomic.write_text(out_dir / REPORT_MD, verify_markdown(report)))
    except OSError as exc:
        raise OutputError(f"cannot write {out_dir / REPORT_MD} ({exc.strerror or exc})") from None
    return files


def _check(path: Path, entry: Artifact, row: dict, kind: str, images, digits, keras_outputs,
           thresholds: Thresholds, threads) -> dict:
    try:
        runner = open_runner(path, threads=threads)
        started = time.perf_counter()
        outputs = runner.run(images, batch=1)  # as on a device: batch 1 (dynamic quantization depends on the batch)
        seconds = time.perf_counter() - started
        result = parity.compare(kind, outputs.reshape(keras_outputs.shape), keras_outputs, digits)
    except (EdgeseqError, ValueError, RuntimeError) as exc:
        return {**row, "status": "error", "passed": False, "reasons": [f"running it failed: {str(exc).splitlines()[0][:300]}"]}
    reasons = parity.judge(entry.quant, result, row["coverage"], thresholds)
    return {**row, "status": "ok", "passed": not reasons, "reasons": reasons, "parity": result,
            "runtime": runner.describe(), "run_seconds": round(seconds, 2)}
