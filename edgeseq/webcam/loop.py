"""The webcam loop: every artifact of a bundle (and the Keras original when TensorFlow is here) on the
digits found in each frame, live or recorded, with agreement against a reference backend.

Headless it writes ``annotated.mp4``, ``frames.jsonl`` (one JSON object per frame) and ``summary.json``
into the output folder, each through a temporary file renamed at the end, so that a Ctrl-C or a
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
from edgeseq.errors import DataError, IntegrityError, InvalidValueError, MissingDependencyError, ModelError, OutputError
from edgeseq.lazy import require
from edgeseq.outputs import writable
from edgeseq.runtimes import open_runner
from edgeseq.webcam import overlay
from edgeseq.webcam.capture import open_source
from edgeseq.webcam.demo import read_truth
from edgeseq.webcam.preprocess import find_digits

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


def run_webcam(bundle_dir: str | Path, source: str | int, *, out_dir: str | Path, headless: bool | None = None,
               max_frames: int | None = None, keras: bool | None = None, threads: int | None = None,
               only: list[str] | None = None, write_video: bool = True, on_frame: Callable[[dict], None] | None = None) -> dict:
    """Run the loop until the source ends, ``max_frames``, 'q' in the window, or Ctrl-C; returns the summary."""
    bundle_dir, out_dir = Path(bundle_dir), Path(out_dir)
    manifest = bundles.read_manifest(bundle_dir)
    kind = manifest.kind
    input_shape = tuple(manifest.input.shape)
    headless = (not display_available()) if headless is None else headless
    if not headless and not display_available():
        raise DataError("no display here: use --headless")
    cv2 = require("cv2")
    why = writable(out_dir)
    if why:
        raise OutputError(f"cannot write the webcam results to {out_dir} ({why})")
    backends, reference = load_backends(bundle_dir, keras, threads, only)
    capture = open_source(source)
    truth = read_truth(source)
    words = labels.DIGIT_NAMES if kind == "spell" else [str(d) for d in range(10)]
    out_dir.mkdir(parents=True, exist_ok=True)
    names = [b.name for b in backends]
    latencies = {n: [] for n in names}
    agree = {n: 0 for n in names}
    correct = {n: 0 for n in names}
    counts = {"frames": 0, "digits": 0, "frames_without_digits": 0, "truth_digits": 0, "missed_truth_digits": 0,
              "frames_count_mismatch": 0}
    frame_ms, wall_start, interrupted, writer, stop_reason = [], time.perf_counter(), False, None, "source ended"
    log_tmp = out_dir / ".frames.jsonl.tmp"
    video_tmp = out_dir / ".annotated.tmp.mp4"
    try:
        with open(log_tmp, "w", encoding="utf-8") as log:
            for frame in capture:
                if max_frames is not None and counts["frames"] >= max_frames:
                    stop_reason = f"--max-frames {max_frames}"
                    break
                started = time.perf_counter()
                detections = find_digits(frame.image)
                x = np.stack([d.image for d in detections]).reshape((-1, *input_shape)) if detections else None
                per_backend, frame_latency = {}, {}
                for backend in backends:
                    t0 = time.perf_counter()
                    outputs = backend.runner.run(x, batch=1) if x is not None else None
                    ms = (time.perf_counter() - t0) * 1e3
                    if x is not None:
                        latencies[backend.name].append(ms / len(x))
                        frame_latency[backend.name] = ms / len(x)
                        per_backend[backend.name] = readings(kind, outputs)
                digits = [{"box": list(map(int, d.box)), "predictions": {n: per_backend[n][i] for n in names}}
                          for i, d in enumerate(detections)]
                for digit in digits:
                    for n in names:
                        agree[n] += digit["predictions"][n] == digit["predictions"][reference]
                expected = truth.get(frame.index) if truth is not None else None
                if expected is not None:
                    counts["truth_digits"] += len(expected)
                    if len(expected) == len(digits):
                        for digit, label in zip(digits, expected):
                            digit["truth"] = words[label] if kind == "spell" else str(label)
                            for n in names:
                                correct[n] += digit["predictions"][n] == digit["truth"]
                    else:
                        counts["missed_truth_digits"] += len(expected)
                        counts["frames_count_mismatch"] += 1
                processing = (time.perf_counter() - started) * 1e3
                frame_ms.append(processing)
                counts["frames"] += 1
                counts["digits"] += len(digits)
                counts["frames_without_digits"] += not digits
                fps = 1e3 / float(np.mean(frame_ms[-30:]))
                annotated = overlay.draw(frame.image, digits, reference, fps, frame_latency)
                if headless and write_video:
                    if writer is None:
                        h, w = annotated.shape[:2]
                        writer = cv2.VideoWriter(str(video_tmp), cv2.VideoWriter_fourcc(*"mp4v"),
                                                 capture.fps or 15.0, (w, h))
                    writer.write(annotated)
                elif not headless:
                    try:
                        cv2.imshow("edgeseq webcam (q quits)", annotated)
                        key = cv2.waitKey(1) & 0xFF
                    except cv2.error as exc:
                        raise MissingDependencyError("this OpenCV has no GUI (opencv-python-headless): install "
                                                     "opencv-python, or use --headless") from exc
                    if key == ord("q"):
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
        capture.close()
        if writer is not None:
            writer.release()
            os.replace(video_tmp, out_dir / "annotated.mp4")
        if log_tmp.exists():
            os.replace(log_tmp, out_dir / "frames.jsonl")
        if not headless:
            try:
                cv2.destroyAllWindows()
            except cv2.error:
                pass
    wall = time.perf_counter() - wall_start
    summary = {
        "schema": SCHEMA, "edgeseq": __version__, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "bundle": str(bundle_dir), "source": {"kind": capture.kind, "description": capture.description},
        "stopped": stop_reason, "interrupted": interrupted, "events": capture.events, "dropped_frames": capture.dropped,
        **counts, "reference": reference, "backends": names,
        "agreement_with_reference": {n: round(agree[n] / counts["digits"], 4) if counts["digits"] else None for n in names},
        "latency_ms_per_digit": {n: _percentiles(v) for n, v in latencies.items()},
        "frame_ms": _percentiles(frame_ms),
        "fps": {"processing": round(1e3 / float(np.mean(frame_ms)), 1) if frame_ms else None,
                "wall": round(counts["frames"] / wall, 1) if wall > 0 and counts["frames"] else None},
    }
    if truth is not None and counts["truth_digits"]:
        summary["ground_truth"] = {
            "digits": counts["truth_digits"], "missed_by_detection": counts["missed_truth_digits"],
            "accuracy": {n: round(correct[n] / counts["truth_digits"], 4) for n in names},
        }
    atomic.write_json(out_dir / "summary.json", summary)
    return summary
