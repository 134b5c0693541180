"""Export a Keras model into a bundle: artifacts, ``manifest.json`` and ``reference.npz``.

Conversions run in a crash-isolated worker (:mod:`edgeseq.export.isolation`): a converter that
segfaults marks its artifact failed, with the reason, and the others go on.
"""

from __future__ import annotations

import errno
import math
import re
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from edgeseq import __version__, atomic, camera_like
from edgeseq import bundle as bundles
from edgeseq.data import Split, adapt_images, load_split, locate, sha256_file
from edgeseq.errors import DocumentError, InvalidValueError, MissingDependencyError, ModelError, OutputError
from edgeseq.export import search
from edgeseq.fingerprint import package_versions
from edgeseq.formats import EXTENSIONS, Format, Quant, artifact_id
from edgeseq.outputs import writable
from edgeseq.parity import size_parts, worth_flags
from edgeseq.runtimes import open_runner
from edgeseq.schema import Artifact, Manifest, Storage, validated, write_document
from edgeseq.training.models import as_float32, card_for, describe, load_model, resolve_model_path

REFERENCE_SIZE = 10_000  # test images whose inputs travel with the bundle: all of MNIST's, so a device verifies as export did
DEFAULT_CALIBRATION = 300  # training images for int8 calibration
CAMERA_LIKE_SHARE = 0.5  # of the calibration and selection images, re-rendered as a camera sees a digit
# Held-out training images the int8 search measures candidates on (see selection_slice): all 5,000 of the
# zoo's validation images. 2,000 were too few and, taken from the end, too easy: on images 58k-60k five
# int8 artifacts of benchmarks/int8_robustness.py disagreed with Keras 0.25-0.35 % of the time, on 55k-58k
# 0.40-1.03 % and on the test set 0.31-0.85 % (those images hold 5-7.5 % of digits Keras is unsure of,
# against 6-11 %); on 5,000 one standard error at 99.5 % is 0.1 pt.
SELECTION_SIZE = 5000
SELECTION_CAMERA_COPIES = 1000  # camera-like copies of every k-th selection image: 0.5 pt SE at the 97 % target
MIN_SELECTION = 100  # fewer held-out images cannot tell int8 candidates apart


@dataclass(frozen=True)
class Job:
    fmt: Format
    quant: Quant
    path: str  # where the artifact goes
    onnx_fp32: str | None = None  # an fp32 ONNX to derive from, when it exists

    @property
    def id(self) -> str:
        return artifact_id(self.fmt, self.quant)


# ----------------------------------------------------------------- worker side (spawned process)

def _worker_setup(model_path: str, calibration: np.ndarray, selection: np.ndarray, selection_labels: np.ndarray,
                  camera_from: int | None = None):
    from edgeseq.export.search import Selection
    from edgeseq.training.models import as_float32, load_model

    model = as_float32(load_model(model_path))[0]
    return model, calibration, Selection.of(model, selection, selection_labels, camera_from)


def _worker_convert(context, job: Job) -> dict:
    model, calibration, selection = context
    if job.fmt is Format.tflite:
        from edgeseq.export import tflite

        return tflite.convert(model, Path(job.path), job.quant, calibration, selection=selection)
    from edgeseq.export import onnx

    fp32 = Path(job.onnx_fp32) if job.onnx_fp32 and Path(job.onnx_fp32).is_file() else None
    return onnx.convert(model, Path(job.path), job.quant, calibration, fp32_path=fp32, selection=selection)


# ----------------------------------------------------------------- parent side

@dataclass
class ExportResult:
    bundle_dir: Path
    manifest: Manifest
    failed: list[Artifact] = field(default_factory=list)


def _layer_in_error(model, message: str) -> str | None:
    """The Keras layer a converter error names: graph scopes are ``model_1/<layer>_1/op``."""
    for layer in model.layers:
        if re.search(rf"(^|[/\"'\s]){re.escape(layer.name)}(_\d+)?/", message):
            return f"layer {layer.name!r} ({type(layer).__name__})"
    return None


def _failure_reason(model, error: str, fmt: Format, quant: Quant, log: str) -> str:
    """One line: which layer, which TF op, why; the whole converter output stays in the log."""
    layer = _layer_in_error(model, error)
    op = re.search(r"'tf\.(\w+)' op is neither a custom op nor a flex op", error) or \
        re.search(r'fused\["(\w+):"', error)
    first = error.strip().splitlines()[0][:240] if error.strip() else "unknown error"
    if layer:
        why = f"TF op {op.group(1)} has no {fmt.value} kernel" if op else first
        return f"{layer} cannot be exported to {fmt.value} {quant.value}: {why} (details in {log})"
    return f"{first} (details in {log})"


def _quant_notes(entry: dict) -> list[str]:
    """Say plainly what was not quantized."""
    cov = entry.get("coverage") or {}
    notes = []
    if entry["quant"] in ("dynamic", "int8") and cov:
        float_macs = cov.get("float_mac_ops") or {}
        if float_macs:
            notes.append("left in float: " + ", ".join(f"{op} x{n}" for op, n in float_macs.items())
                         + f" ({1 - cov['int8_mac_share']:.1%} of MACs)")
        float_ops = sorted(set((cov.get("ops") or {}).get("float", {})) - set(float_macs))
        if float_ops:
            notes.append("float elementwise/other ops: " + ", ".join(float_ops))
    recipe = entry.get("recipe") or {}
    fallback = recipe.get("dynamic_fallback")
    if fallback:
        notes.append(f"static QDQ could not reach {', '.join(fallback)}: dynamic int8 kernels used instead")
    loops = recipe.get("while_loop")
    if loops:
        notes.append(f"int8 recipe: {loops['cell']}, {recipe.get('weights')}, WHILE loop kept (weights stored once), "
                     f"{loops['int8_loop_variables']} loop variables carried in int8, "
                     f"{loops['saturating_ranges_clamped']} tanh/sigmoid input ranges clamped at saturation")
    found = entry.get("search")
    if found:
        copies = f" and {found['camera_like_images']:,} camera-like copies" if found.get("camera_like_images") else ""
        notes.append(f"int8 search on {found['images']:,} held-out training images{copies}, {len(found['candidates'])} "
                     f"candidates: {found['chosen']}: {found['why']}")
    return notes


def check_target(bundle_dir: Path, model_sha256: str, force: bool) -> None:
    """Refuse to replace a file, a folder of other files, or another model's bundle (unless ``force``)."""
    why = writable(bundle_dir.parent)  # before TensorFlow loads and the converters run
    if why:
        raise OutputError(f"cannot write the bundle {bundle_dir} ({why})")
    if not bundle_dir.exists():
        return
    if not bundle_dir.is_dir():
        raise OutputError(f"bundle destination {bundle_dir} is a file, not a folder")
    if force or not any(bundle_dir.iterdir()):
        return
    if not bundles.is_bundle(bundle_dir):
        raise OutputError(f"{bundle_dir} holds files that are not an edgeseq bundle: refusing to replace it "
                          "(choose another destination, or force the replacement)")
    try:
        existing = bundles.read_manifest(bundle_dir).source
    except DocumentError:
        raise OutputError(f"{bundle_dir} holds a bundle whose manifest cannot be read: refusing to replace it "
                          "(force the replacement if it is yours)") from None
    if existing.sha256 != model_sha256:
        raise OutputError(f"{bundle_dir} holds the bundle of another model ({existing.name}, {existing.file}, "
                          f"SHA-256 {existing.sha256[:12]}...): refusing to replace it (choose another destination, "
                          "or force the replacement)")


def check_calibration(calibration_size: int, train_images: int, quants: list[Quant]) -> None:
    if calibration_size < 1:
        raise InvalidValueError(f"calibration needs at least 1 image, got {calibration_size}")
    if Quant.int8 in quants or Quant.dynamic in quants:
        if train_images - calibration_size < MIN_SELECTION:
            raise InvalidValueError(
                f"calibration takes {calibration_size} of the {train_images} training images, leaving "
                f"{max(train_images - calibration_size, 0)} held out; choosing between int8 candidates needs at "
                f"least {MIN_SELECTION} (use at most {max(train_images - MIN_SELECTION, 0)} calibration images)")


def export_bundle(
    model_path: str | Path,
    *,
    formats: list[Format],
    quants: list[Quant],
    out_dir: str | Path | None = None,
    calibration_size: int = DEFAULT_CALIBRATION,
    data_dir: str | Path | None = None,
    reference_size: int = REFERENCE_SIZE,
    on_artifact: Callable[[str, str], None] | None = None,
    on_start: Callable[[int], None] | None = None,
    train_split: Split | None = None,
    test_split: Split | None = None,
    force: bool = False,
) -> ExportResult:
    """Convert ``model_path`` to every format x quantization asked for and write a bundle directory.

    The bundle is built in a staging folder beside ``out_dir`` and swapped in whole at the end: an
    interrupted, failed or killed export leaves the previous bundle as it was. A destination holding
    another model's bundle, or files that are no bundle, is refused unless ``force``.
    ``on_start(n)`` is called once the model has loaded and n conversions are about to run;
    ``on_artifact(artifact_id, status)`` as each conversion ends (progress display).
    """
    model_path = resolve_model_path(model_path)
    card = card_for(model_path)  # a malformed card fails now, before TensorFlow loads
    if calibration_size < 1:
        check_calibration(calibration_size, 0, quants)
    bundle_dir = Path(out_dir) if out_dir else model_path.parent / "bundle"
    model_sha = sha256_file(model_path)
    check_target(bundle_dir, model_sha, force)
    source = locate(data_dir) if train_split is None or test_split is None else None
    train_split = train_split or load_split("train", source=source)
    test_split = test_split or load_split("test", source=source)
    check_calibration(calibration_size, len(train_split), quants)
    try:
        with atomic.staged_directory(bundle_dir) as staging:
            manifest, failed = _build(model_path, model_sha, card, staging, bundle_dir, formats, quants,
                                      calibration_size, reference_size, train_split, test_split, on_start, on_artifact)
    except OSError as exc:
        if exc.errno not in _OUTPUT_ERRNOS:
            raise
        raise OutputError(f"cannot write the bundle {bundle_dir} ({exc.strerror})") from None
    return ExportResult(bundle_dir, manifest, failed)


_OUTPUT_ERRNOS = {errno.EROFS, errno.ENOSPC, errno.EACCES, errno.EPERM, errno.EDQUOT, errno.ENOTDIR, errno.EEXIST}


def _build(model_path: Path, model_sha: str, card, staging: Path, bundle_dir: Path, formats, quants,
           calibration_size: int, reference_size: int, train_split: Split, test_split: Split,
           on_start, on_artifact) -> tuple[Manifest, list[Artifact]]:
    """Everything the bundle holds, written into ``staging``; returns its manifest and failed artifacts."""
    from edgeseq.export.isolation import run_isolated

    model, trained_policy = as_float32(load_model(model_path))  # devices run float32 weights
    info = describe(model, model_path)
    reference, reference_seconds = _write_reference(model, info, staging, test_split, reference_size)
    calibration, selection, selection_labels, clean = _int8_images(train_split, calibration_size, info.input_shape)
    stem = model_path.stem if model_path.stem != "model" else ((card.name if card else None) or "model")
    jobs = _plan(staging, stem, formats, quants)
    if on_start:
        on_start(len(jobs))
    outcomes = run_isolated(
        jobs, _worker_convert, _worker_setup, (str(model_path), calibration, selection, selection_labels, clean),
        staging / "logs",
        log_name=lambda job: f"{job.id}.log",
        on_done=(lambda o: on_artifact(o.job.id, "ok" if o.ok else "failed")) if on_artifact else None)
    time_steps = info.input_shape[0] if len(info.input_shape) >= 2 else None
    artifacts = [_entry(outcome, model, time_steps) for outcome in outcomes]
    _flag_integer(artifacts)
    _add_step_drift(artifacts, staging, adapt_images(test_split.images[:DRIFT_IMAGES], info.input_shape),
                    f"{bundle_dir.parent.name}")
    _add_search_reports(artifacts, staging, stem)
    manifest = validated(Manifest, {
        "schema": bundles.SCHEMA,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source": {"model": str(model_path.resolve()), "file": model_path.name, "sha256": model_sha,
                   "bytes": model_path.stat().st_size,
                   "name": (card.name if card else None) or stem, "card": card is not None,
                   "parameters": int(model.count_params()), "dtype_policy": trained_policy,
                   "exported_as": "float32" + (f" (trained under {trained_policy}; reference outputs are the float32 model's)"
                                               if trained_policy != "float32" else ""),
                   "test_metrics": card.test_metrics() if card else None},
        "input": {"name": "image", "shape": list(info.input_shape), "dtype": "float32"},
        "output": info.output.model_dump(exclude_none=True),
        "preprocessing": card.preprocessing.model_dump() if card else _default_preprocessing(),
        "calibration": {"images": int(len(calibration)),
                        "source": f"the first N MNIST training images, the last {CAMERA_LIKE_SHARE:.0%} of them re-rendered "
                                  "camera-like (edgeseq.camera_like); the selection adds camera-like copies of "
                                  f"every k-th of its images, at most {SELECTION_CAMERA_COPIES:,}",
                        "selection_images": clean, "selection_camera_like": int(len(selection) - clean)},
        "reference": {"file": bundles.REFERENCE, "examples": reference, "test_examples": len(test_split),
                      "test_sha256": bundles.test_set_sha256(test_split.images, test_split.labels),
                      "seconds": round(reference_seconds, 2)},
        "versions": {"edgeseq": __version__, "python": sys.version.split()[0],
                     **package_versions("tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime", "ai-edge-litert",
                                        "onnxconverter-common", "numpy")},
        "artifacts": artifacts,
    })
    write_document(staging / bundles.MANIFEST, manifest)
    return manifest, [a for a in manifest.artifacts if not a.ok]


def _int8_images(train_split: Split, calibration_size: int, input_shape: tuple):
    """(calibration images, selection images, their labels, how many of the selection are clean), each
    in the model's input shape. Half of the calibration images are re-rendered camera-like
    (edgeseq.camera_like), and the selection (held-out training images, after the calibration ones, on which
    a recipe chooses between candidates) gets camera-like copies of up to SELECTION_CAMERA_COPIES of its
    images, spread over it, after the clean ones: int8 ranges and choices made on clean MNIST alone do not
    hold on digits cut from a frame."""
    calibration = camera_like.mixed(train_split.images[:calibration_size], CAMERA_LIKE_SHARE, seed=11)
    held_out = selection_slice(len(train_split), calibration_size)
    clean, labels = train_split.images[held_out], train_split.labels[held_out]
    copies = camera_copies(len(clean))
    selection = np.concatenate([clean, camera_like.render(clean[copies], seed=12)])
    return (adapt_images(calibration, input_shape), adapt_images(selection, input_shape),
            np.concatenate([labels, labels[copies]]), len(clean))


def camera_copies(clean: int) -> slice:
    """Which of ``clean`` selection images get a camera-like copy: half of them, at most
    SELECTION_CAMERA_COPIES, evenly spread (every k-th)."""
    step = max(2, math.ceil(clean / SELECTION_CAMERA_COPIES))
    return slice(step - 1, clean, step)


def selection_slice(train_images: int, calibration_size: int) -> slice:
    """The held-out images the int8 search measures on: the last SELECTION_SIZE training images (the
    zoo's validation images, which fitting never sees), never overlapping the first N calibration ones."""
    return slice(max(calibration_size, train_images - SELECTION_SIZE), train_images)


def _write_reference(model, info, staging: Path, test_split: Split, reference_size: int) -> tuple[int, float]:
    """The Keras model's outputs on the whole test split; inputs of the first R travel along. Returns (R, s).

    When R covers the split (the default), the device verifies on exactly the images export judged on, with
    no MNIST there: the outputs are stored once (``test_outputs`` only for a partial slice)."""
    from edgeseq.training.evaluate import predict

    started = time.perf_counter()
    test_outputs = predict(model, test_split.images, info.input_shape)  # (N, ...) float32
    r = min(reference_size, len(test_split))
    arrays = {"inputs": np.round(test_split.images[:r] * 255).astype(np.uint8), "labels": test_split.labels[:r],
              "outputs": test_outputs[:r],
              "test_sha256": np.array(bundles.test_set_sha256(test_split.images, test_split.labels))}
    if r < len(test_split):
        arrays["test_outputs"] = test_outputs
    with open(staging / bundles.REFERENCE, "wb") as f:
        np.savez_compressed(f, **arrays)
    return r, time.perf_counter() - started


def _plan(staging: Path, stem: str, formats, quants) -> list[Job]:
    """One job per format x quantization, in a fixed order (ONNX fp32 first: the others derive from it)."""
    jobs = []
    for fmt in sorted(set(formats), key=list(Format).index):
        onnx_fp32 = str(staging / f"{stem}-fp32.onnx") if fmt is Format.onnx and Quant.fp32 in quants else None
        for quant in sorted(set(quants), key=list(Quant).index):
            jobs.append(Job(fmt, quant, str(staging / f"{stem}-{quant.value}{EXTENSIONS[fmt]}"), onnx_fp32))
    return jobs


def _entry(outcome, model, time_steps: int | None) -> dict:
    """The manifest entry of one conversion: its file, hash, tensors, coverage and notes, or why it failed."""
    job: Job = outcome.job
    entry = {"id": job.id, "format": job.fmt.value, "quant": job.quant.value, "file": Path(job.path).name,
             "convert_seconds": round(outcome.seconds, 2), "log": f"logs/{job.id}.log"}
    if not outcome.ok:
        reason = _failure_reason(model, outcome.error or "", job.fmt, job.quant, entry["log"])
        Path(job.path).unlink(missing_ok=True)
        return {**entry, "status": "failed", "error": reason}
    path = Path(job.path)
    recipe = dict(outcome.result)
    found = recipe.pop("search", None)
    entry.update(status="ok", recipe=recipe, bytes=path.stat().st_size, sha256=sha256_file(path))
    if found:
        entry["search"] = found
    try:
        runner = open_runner(path)
        entry.update(runner.tensors())
        entry["runtime_check"] = "loads"
    except ModelError as exc:  # converted but the runtime cannot even load it: keep, report
        entry.update(status="failed", error=f"converted, but the runtime cannot load it: {exc}")
    entry["coverage"] = _coverage(path, job.fmt, time_steps)
    entry["storage"] = _storage(path, job.fmt)
    entry["notes"] = _quant_notes(entry)
    return entry


def _flag_integer(artifacts: list[dict]) -> None:
    """Flag each searched integer artifact the search found not worth having (slower than fp32 as it
    timed them, or not 2x smaller), saying what keeps a large one large (:func:`edgeseq.parity.size_parts`)."""
    fp32 = {a["format"]: a for a in artifacts if a["quant"] == Quant.fp32.value and a["status"] == "ok"}
    for entry in artifacts:
        found, base = entry.get("search"), fp32.get(entry["format"])
        if not found or entry["status"] != "ok":
            continue
        winner = next(c for c in found["candidates"] if c["name"] == found["chosen"])
        why = None
        if base and entry.get("storage") and base.get("storage"):
            why = size_parts(Storage(**entry["storage"]), Storage(**base["storage"]), base["bytes"])
        entry["flags"] = worth_flags(winner["size_vs_fp32"], winner["p50_vs_fp32"], why)


DRIFT_IMAGES = 200


def _add_step_drift(artifacts: list[dict], bundle_dir: Path, images: np.ndarray, title: str) -> None:
    """Per-time-step hidden-state drift of each recurrent int8 artifact from its format's fp32 one (files + summary)."""
    from edgeseq.export import drift

    by_id = {a["id"]: a for a in artifacts if a["status"] == "ok"}
    for fmt in Format:
        int8, fp32 = by_id.get(f"{fmt.value}-int8"), by_id.get(f"{fmt.value}-fp32")
        if not int8 or not fp32:
            continue
        try:
            found = drift.step_drift(bundle_dir / int8["file"], bundle_dir / fp32["file"], images)
        except Exception as exc:  # noqa: BLE001 - a report, not the artifact: say so and go on
            int8["notes"].append(f"per-step drift not measured: {type(exc).__name__}: {exc}")
            continue
        if found is None:
            continue
        stem = drift_stem(fmt)
        atomic.write_json(bundle_dir / f"{stem}.json", found)
        atomic.write_text(bundle_dir / f"{stem}.md", drift.markdown(found, fmt.value))
        files = [f"{stem}.json", f"{stem}.md"]
        try:
            drift.plot(found, bundle_dir / f"{stem}.png", f"{title}: {fmt.value} int8 hidden-state drift")
            files.append(f"{stem}.png")
        except MissingDependencyError:
            pass
        int8["drift"] = {**drift.summary(found), "files": files}


def _add_search_reports(artifacts: list[dict], bundle_dir: Path, title: str) -> None:
    """``sensitivity-{format}-{quant}.{json,md,png}``: what each integer search tried and, where it had to
    fall back, how sensitive each layer is (the png only then, and only with matplotlib)."""
    for artifact in artifacts:
        found = artifact.get("search")
        if artifact["status"] != "ok" or not found:
            continue
        stem = f"sensitivity-{artifact['id']}"
        atomic.write_json(bundle_dir / f"{stem}.json", found)
        atomic.write_text(bundle_dir / f"{stem}.md", search.markdown(found, artifact["id"]))
        files = [f"{stem}.json", f"{stem}.md"]
        if found.get("sensitivity"):
            try:
                search.plot(found, bundle_dir / f"{stem}.png", f"{title}: {artifact['id']} per-layer sensitivity")
                files.append(f"{stem}.png")
            except MissingDependencyError:
                pass
        found["files"] = files


def drift_stem(fmt: Format) -> str:
    """Bundle file name (no suffix) of a format's per-step drift report."""
    return f"drift-{fmt.value}-int8"


def _default_preprocessing() -> dict:
    from edgeseq.card import PREPROCESSING

    return PREPROCESSING


def _storage(path: Path, fmt: Format) -> dict | None:
    from edgeseq.export import coverage

    try:
        return coverage.tflite_storage(path) if fmt is Format.tflite else coverage.onnx_storage(path)
    except Exception:  # noqa: BLE001 - a report; a parse problem must not lose the artifact (coverage says why)
        return None


def _coverage(path: Path, fmt: Format, time_steps: int | None) -> dict | None:
    from edgeseq.export import coverage

    try:
        return coverage.tflite_coverage(path) if fmt is Format.tflite else coverage.onnx_coverage(path, time_steps)
    except Exception as exc:  # noqa: BLE001 - coverage is a report; a parse problem must not lose the artifact
        return {"error": f"{type(exc).__name__}: {exc}"}
