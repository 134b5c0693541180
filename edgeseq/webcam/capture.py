"""Frames from a camera, a video file, a folder of images or one image, with faults named plainly.

A source yields ``Frame`` objects; a frame that cannot be read mid-stream ends a video cleanly (with an
event saying where) and is skipped in a folder (with an event naming the file).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from edgeseq.errors import DataError
from edgeseq.lazy import require

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


@dataclass
class Frame:
    index: int
    image: np.ndarray  # (H, W, 3) uint8 BGR
    name: str  # file name or frame number, for logs


@dataclass
class Source:
    kind: str  # "camera", "video", "folder" or "image"
    description: str
    fps: float | None
    frame_count: int | None
    _frames: Iterator[Frame]
    events: list[str] = field(default_factory=list)  # faults met while reading, in order
    dropped: int = 0  # frames that could not be read
    _release: object = None

    def __iter__(self) -> Iterator[Frame]:
        return self._frames

    def close(self) -> None:
        if self._release is not None:
            self._release()


def opencv_build(option: str) -> str | None:
    """What this OpenCV's build information says of ``option`` ("GUI", "GStreamer"), None if it is silent."""
    cv2 = require("cv2")
    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith(f"{option}:"):
            return line.split(":", 1)[1].strip()
    return None


def has_gstreamer() -> bool:
    """Whether this OpenCV was built with GStreamer (PyPI's wheels are not; a Jetson's and Debian's are)."""
    return "YES" in (opencv_build("GStreamer") or "")


def open_source(spec: str | int | Path) -> Source:
    """``0`` (camera index), ``picamera2`` or ``picamera2:N`` (a Raspberry Pi camera), a GStreamer pipeline
    ending in ``appsink`` (a Jetson's CSI camera: ``nvarguscamerasrc ! ... ! appsink``), a video file, a
    folder of images or an image file."""
    cv2 = require("cv2")
    text = str(spec)
    if text == "picamera2" or text.startswith("picamera2:"):
        return _picamera2(text)
    if "!" in text:  # a GStreamer pipeline, as OpenCV takes it
        if not has_gstreamer():
            raise DataError("this OpenCV has no GStreamer support, so it cannot open a GStreamer pipeline (PyPI's "
                            "opencv-python wheels lack it; use the distribution's OpenCV, e.g. apt install python3-opencv)")
        capture = cv2.VideoCapture(text, cv2.CAP_GSTREAMER)
        if not capture.isOpened():
            capture.release()
            raise DataError(f"the GStreamer pipeline does not open (does it end in appsink, and does each element exist?): {text}")
        return _from_capture(capture, "camera", "GStreamer pipeline", live=True)
    if text.isdigit():
        capture = cv2.VideoCapture(int(text))
        if not capture.isOpened():
            capture.release()
            raise DataError(f"camera {text} does not open (is it connected, and free of other programs?)")
        return _from_capture(capture, "camera", f"camera {text}", live=True)
    path = Path(text)
    if not path.exists():
        raise DataError(f"source {path} does not exist")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"folder {path} has no images ({', '.join(IMAGE_SUFFIXES)})")
        source = Source("folder", f"{len(files)} images in {path}", None, len(files), iter(()))
        source._frames = _images(files, source)
        return source
    if path.suffix.lower() in IMAGE_SUFFIXES:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise DataError(f"{path} is not a readable image")
        return Source("image", str(path), None, 1, iter([Frame(0, image, path.name)]))
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        raise DataError(f"cannot open video {path} (not a video, or a codec OpenCV lacks)")
    return _from_capture(capture, "video", str(path), live=False)


def _images(files: list[Path], source: Source) -> Iterator[Frame]:
    cv2 = require("cv2")
    for index, path in enumerate(files):
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            source.events.append(f"{path.name}: not a readable image, skipped")
            source.dropped += 1
            continue
        yield Frame(index, image, path.name)


def _from_capture(capture, kind: str, description: str, live: bool) -> Source:
    cv2 = require("cv2")
    fps = capture.get(cv2.CAP_PROP_FPS) or None
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if not live else None
    source = Source(kind, description, fps, count if count and count > 0 else None, iter(()), _release=capture.release)

    def frames() -> Iterator[Frame]:
        index = 0
        while True:
            ok, image = capture.read()
            if not ok or image is None:
                if live:
                    source.events.append(f"camera stopped delivering frames after {index}")
                elif source.frame_count and index < source.frame_count:
                    source.events.append(f"video failed at frame {index} of {source.frame_count}; ended there")
                    source.dropped += source.frame_count - index
                return
            yield Frame(index, image, f"frame {index}")
            index += 1

    source._frames = frames()
    return source


def _picamera2(text: str) -> Source:
    """A Raspberry Pi camera through picamera2 (Raspberry Pi OS ships it: apt install python3-picamera2)."""
    index = text.partition(":")[2] or "0"
    if not index.isdigit():
        raise DataError(f"{text}: the camera number after 'picamera2:' must be a number")
    try:
        from picamera2 import Picamera2
    except ImportError as exc:
        raise DataError("picamera2 is not installed here (on Raspberry Pi OS: sudo apt install python3-picamera2, and "
                        "make the venv with --system-site-packages)") from exc
    try:
        camera = Picamera2(camera_num=int(index))
        # "RGB888" is stored B, G, R in memory: OpenCV's order.
        camera.configure(camera.create_video_configuration(main={"size": (1280, 720), "format": "RGB888"}))
        camera.start()
    except Exception as exc:  # picamera2 raises RuntimeError, IndexError or its own errors for a missing camera
        raise DataError(f"Raspberry Pi camera {index} does not open ({exc})") from exc

    def release() -> None:
        camera.stop()
        camera.close()

    source = Source("camera", f"Raspberry Pi camera {index} (picamera2)", None, None, iter(()), _release=release)

    def frames() -> Iterator[Frame]:
        index_ = 0
        while True:
            try:
                image = camera.capture_array()
            except Exception as exc:  # a camera unplugged mid-stream ends the loop with an event, as OpenCV's do
                source.events.append(f"camera stopped delivering frames after {index_} ({exc})")
                return
            yield Frame(index_, np.ascontiguousarray(image[..., :3]), f"frame {index_}")
            index_ += 1

    source._frames = frames()
    return source
