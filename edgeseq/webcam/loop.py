"""The webcam loop: every artifact of a bundle (and the Keras original when TensorFlow is here) on the
digits found in each frame, live or recorded, with agreement against a reference backend.

Headless it writes ``annotated.mp4`` (or ``annotated/*.png`` for still images), ``frames.jsonl`` (one JSON
object per frame) and ``summary.json`` into the output folder, each through a temporary file renamed at the end, so that a Ctrl-C or a
failing camera still leaves complete files and a summary.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from edgeseq import __version__, atomic, bundle as bundles, labels
from edgeseq.errors import IntegrityError, InvalidValueError, MissingDependencyError, ModelError, OutputError
from edgeseq.lazy import require
from edgeseq.outputs import writable
from edgeseq.runtimes import open_runner
from edgeseq.webcam import overlay
from edgeseq.webcam.capture import open_source, opencv_build
from edgeseq.webcam.demo import read_truth
from edgeseq.webcam.preprocess import find_digits
from edgeseq.webcam.record import Recorder

SCHEMA = "edgeseq.webcam/1"


@dataclass
class Backend:
    name: str
    runner: object


def display_available() -> bool:
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def load_backends(bundle_dir: Path, keras: bool | None = None, threads: int | None = None,
                  only: list[str] | None = None) -> tuple[list[Backend], str]:
    """Runners for every produced artifact (or those in ``only``), plus Keras when asked (True) or possible
    (None); the reference is Keras when present, else the fp32 artifact (TFLite first)."""
    manifest = bundles.read_manifest(bundle_dir)
    known = [a.id for a in manifest.ok_artifacts()]
    if only:
        unknown = [a for a in only if a not in known]
        if unknown:
            raise InvalidValueError(f"bundle {bundle_dir} has no produced artifact {', '.join(unknown)}; it has {', '.join(known)}")
    chosen = [a for a in manifest.ok_artifacts() if not only or a.id in only]
    paths = bundles.check_artifacts(bundle_dir, manifest, [a.id for a in chosen])  # size, SHA-256, inside the bundle
    backends = []
    keras_here = importlib.util.find_spec("keras") is not None and Path(manifest.source.model).is_file()
    if keras is True and not keras_here:
        raise MissingDependencyError("running the Keras original needs Keras/TensorFlow and the bundle's source model on this machine")
    if keras is not False and keras_here:
        try:
            backends.append(Backend("keras", open_runner(bundles.source_model(manifest), threads=threads)))
        except IntegrityError:
            if keras is True:
                raise
    for entry, path in zip(chosen, paths):
        backends.append(Backend(entry.id, open_runner(path, threads=threads)))
    if not backends:
        raise ModelError(f"bundle {bundle_dir} has no artifact to run")
    names = [b.name for b in backends]
    reference = next((n for n in ("keras", "tflite-fp32", "onnx-fp32") if n in names), names[0])
    return backends, reference


def readings(kind: str, outputs: np.ndarray) -> list[str]:
    """What a backend read: the digit, or the spelled word (pads dropped)."""
    if kind == "spell":
        return [w.rstrip(labels.PAD) for w in labels.decode_words(outputs.argmax(axis=-1))]
    return [str(int(d)) for d in outputs.argmax(axis=-1)]


def _percentiles(values: list[float]) -> dict:
    if not values:
        return {}
    v = np.asarray(values)
    return {"mean": round(float(v.mean()), 3), "p50": round(float(np.percentile(v, 50)), 3),
            "p90": round(float(np.percentile(v, 90)), 3), "p99": round(float(np.percentile(v, 99)), 3)}


def gui_available() -> bool:
    """Whether this OpenCV can open a window (``opencv-python-headless``, PyPI's server wheel, cannot)."""
    gui = opencv_build("GUI")
    return gui is None or gui.upper() not in ("NONE", "NO", "")


def choose_mode(headless: bool | None) -> tuple[bool, str | None]:
    """Headless or a window, and why a window asked for is not shown (no display, or no GUI in this OpenCV):
    the loop then runs headless and says so in one line, rather than stopping."""
    if headless:
        return True, None
    if not display_available():
        return True, None if headless is None else "no display here: running headless instead of showing a window"
    if not gui_available():
        return True, ("this OpenCV has no GUI (opencv-python-headless): running headless; pip install opencv-python "
                      "for a window")
    return False, None


class _Tally:
    """What the loop counts as it goes, per backend and overall."""

    def __init__(self, names: list[str], reference: str):
        self.names, self.reference = names, reference
        self.latencies = {n: [] for n in self.names}
        self.agree = {n: 0 for n in self.names}
        self.correct = {n: 0 for n in self.names}
        self.counts = {"frames": 0, "digits": 0, "frames_without_digits": 0, "truth_digits": 0,
                       "missed_truth_digits": 0, "frames_count_mismatch": 0}

    def add(self, digits: list[dict], expected: list[str] | None, frame_latency: dict[str, float]) -> None:
        for name, ms in frame_latency.items():
            self.latencies[name].append(ms)
        for digit in digits:
            for n in self.names:
                self.agree[n] += digit["predictions"][n] == digit["predictions"][self.reference]
        if expected is not None:
            self.counts["truth_digits"] += len(expected)
            if len(expected) == len(digits):
                for digit, word in zip(digits, expected):
                    digit["truth"] = word
                    for n in self.names:
                        self.correct[n] += digit["predictions"][n] == word
            else:
                self.counts["missed_truth_digits"] += len(expected)
                self.counts["frames_count_mismatch"] += 1
        self.counts["frames"] += 1
        self.counts["digits"] += len(digits)
        self.counts["frames_without_digits"] += not digits


def _read_frame(image: np.ndarray, backends: list[Backend], input_shape: tuple, kind: str) -> tuple[list[dict], dict]:
    """Detect the digits in one frame and run every backend on them: the digits (box, each backend's
    reading) and each backend's latency per digit."""
    detections = find_digits(image)
    if not detections:
        return [], {}
    x = np.stack([d.image for d in detections]).reshape((-1, *input_shape))
    per_backend, latency = {}, {}
    for backend in backends:
        t0 = time.perf_counter()
        outputs = backend.runner.run(x, batch=1)
        latency[backend.name] = (time.perf_counter() - t0) * 1e3 / len(x)
        per_backend[backend.name] = readings(kind, outputs)
    digits = [{"box": list(map(int, d.box)), "predictions": {n: per_backend[n][i] for n in per_backend}}
              for i, d in enumerate(detections)]
    return digits, latency


def _show(cv2, annotated: np.ndarray) -> bool:
    """Show a frame in the window; True when 'q' was pressed."""
    try:
        cv2.imshow("edgeseq webcam (q quits)", annotated)
        return (cv2.waitKey(1) & 0xFF) == ord("q")
    except cv2.error as exc:
        raise MissingDependencyError("this OpenCV cannot open a window here: install opencv-python, or run headless") from exc


def run_webcam(bundle_dir: str | Path, source: str | int, *, out_dir: str | Path, headless: bool | None = None,
               max_frames: int | None = None, keras: bool | None = None, threads: int | None = None,
               only: list[str] | None = None, write_video: bool = True, on_frame: Callable[[dict], None] | None = None,
               on_note: Callable[[str], None] | None = None) -> dict:
    """Run the loop until the source ends, ``max_frames``, 'q' in the window, or Ctrl-C; returns the summary.
    Headless, annotated frames go to ``annotated.mp4`` (a camera or video) or ``annotated/*.png`` (a folder
    or an image: each at its own size)."""
    bundle_dir, out_dir = Path(bundle_dir), Path(out_dir)
    manifest = bundles.read_manifest(bundle_dir)
    kind, input_shape = manifest.kind, tuple(manifest.input.shape)
    headless, note = choose_mode(headless)
    notes = [note] if note else []
    if note and on_note:
        on_note(note)
    cv2 = require("cv2")
    why = writable(out_dir)
    if why:
        raise OutputError(f"cannot write the webcam results to {out_dir} ({why})")
    backends, reference = load_backends(bundle_dir, keras, threads, only)
    capture = open_source(source)
    expect, has_truth = _expected(read_truth(source), capture.kind, kind)
    out_dir.mkdir(parents=True, exist_ok=True)
    tally = _Tally([b.name for b in backends], reference)
    recorder = Recorder(out_dir, capture.fps, per_image=capture.kind in ("folder", "image")) if headless and write_video else None
    frame_ms, wall_start, interrupted, stop_reason = [], time.perf_counter(), False, "source ended"
    log_tmp = out_dir / ".frames.jsonl.tmp"
    try:
        with open(log_tmp, "w", encoding="utf-8") as log:
            for frame in capture:
                if max_frames is not None and tally.counts["frames"] >= max_frames:
                    stop_reason = f"{max_frames} frames (the limit asked for)"
                    break
                started = time.perf_counter()
                digits, frame_latency = _read_frame(frame.image, backends, input_shape, kind)
                tally.add(digits, expect(frame), frame_latency)
                processing = (time.perf_counter() - started) * 1e3
                frame_ms.append(processing)
                annotated = overlay.draw(frame.image, digits, reference, 1e3 / float(np.mean(frame_ms[-30:])), frame_latency)
                if recorder is not None:
                    recorder.write(annotated, frame.name)
                elif not headless and _show(cv2, annotated):
                    stop_reason = "q pressed"
                    break
                record = {"frame": frame.index, "name": frame.name, "digits": digits,
                          "latency_ms": {n: round(v, 3) for n, v in frame_latency.items()}, "frame_ms": round(processing, 3)}
                log.write(json.dumps(record) + "\n")
                if on_frame:
                    on_frame(record)
    except KeyboardInterrupt:
        interrupted, stop_reason = True, "Ctrl-C"
    finally:
        _close(capture, recorder, log_tmp, headless)
    summary = _summary(bundle_dir, capture, tally, frame_ms, time.perf_counter() - wall_start, stop_reason, interrupted,
                       has_truth, notes, recorder.written if recorder else [])
    atomic.write_json(out_dir / "summary.json", summary)
    return summary


def _expected(truth: dict | None, source_kind: str, kind: str) -> tuple[Callable, bool]:
    """frame -> the words it should read as (None without ground truth), and whether there is any: a demo
    video's truth is keyed by frame number, a scenes folder's by file name."""
    words = labels.DIGIT_NAMES if kind == "spell" else [str(d) for d in range(10)]

    def expect(frame) -> list[str] | None:
        found = None if truth is None else truth.get(frame.index if source_kind == "video" else frame.name)
        return None if found is None else [words[label] for label in found]

    return expect, truth is not None


def _close(capture, recorder: Recorder | None, log_tmp: Path, headless: bool) -> None:
    """Release the source, finish the recordings under their final names, close the window."""
    cv2 = require("cv2")
    capture.close()
    if recorder is not None:
        recorder.close()
    if log_tmp.exists():
        os.replace(log_tmp, log_tmp.parent / "frames.jsonl")
    if not headless:
        try:
            cv2.destroyAllWindows()
        except cv2.error:
            pass


def _summary(bundle_dir: Path, capture, tally: _Tally, frame_ms: list[float], wall: float, stop_reason: str,
             interrupted: bool, has_truth: bool, notes: list[str], written: list[str]) -> dict:
    counts, names = tally.counts, tally.names
    summary = {
        "schema": SCHEMA, "edgeseq": __version__, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "bundle": str(bundle_dir), "source": {"kind": capture.kind, "description": capture.description},
        "stopped": stop_reason, "interrupted": interrupted, "events": capture.events, "notes": notes,
        "dropped_frames": capture.dropped, **counts, "reference": tally.reference, "backends": names,
        "agreement_with_reference": {n: round(tally.agree[n] / counts["digits"], 4) if counts["digits"] else None
                                     for n in names},
        "latency_ms_per_digit": {n: _percentiles(v) for n, v in tally.latencies.items()},
        "frame_ms": _percentiles(frame_ms),
        "fps": {"processing": round(1e3 / float(np.mean(frame_ms)), 1) if frame_ms else None,
                "wall": round(counts["frames"] / wall, 1) if wall > 0 and counts["frames"] else None},
        "annotated": written if len(written) <= 1 else [f"{len(written)} files in {Path(written[0]).parent}"],
    }
    if has_truth and counts["truth_digits"]:
        summary["ground_truth"] = {
            "digits": counts["truth_digits"], "missed_by_detection": counts["missed_truth_digits"],
            "accuracy": {n: round(tally.correct[n] / counts["truth_digits"], 4) for n in names},
        }
    return summary
