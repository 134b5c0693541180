"""Where the annotated frames go when the loop runs headless.

A camera or a video gives frames of one size: one ``annotated.mp4``, every frame letterboxed onto the
first frame's size should the source change it mid-stream. A folder of photos gives images of any size
(a 640x480 screenshot beside a 12-megapixel photo): one annotated PNG per image under ``annotated/``, each
at its own size. Every file is written under a temporary name and renamed when whole, so that Ctrl-C or
a failing camera leaves only complete files.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edgeseq.atomic import atomic_path
from edgeseq.errors import OutputError
from edgeseq.lazy import require

VIDEO = "annotated.mp4"
FOLDER = "annotated"


def letterbox(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` scaled to fit ``size`` (width, height) keeping its aspect, centred on black."""
    cv2 = require("cv2")
    width, height = size
    h, w = image.shape[:2]
    if (w, h) == (width, height):
        return image
    scale = min(width / w, height / h)
    fitted = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))),
                        interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    canvas = np.zeros((height, width, 3), np.uint8)
    top, left = (height - fitted.shape[0]) // 2, (width - fitted.shape[1]) // 2
    canvas[top:top + fitted.shape[0], left:left + fitted.shape[1]] = fitted
    return canvas


class Recorder:
    """``write`` each annotated frame, then ``close``; ``per_image`` for sources of still images."""

    def __init__(self, out_dir: Path, fps: float | None, per_image: bool):
        self.out_dir, self.fps, self.per_image = Path(out_dir), fps or 15.0, per_image
        self._writer = None
        self._size: tuple[int, int] | None = None
        self._tmp = self.out_dir / f".{VIDEO}.tmp.mp4"
        self.written: list[str] = []

    def write(self, image: np.ndarray, name: str) -> None:
        if self.per_image:
            self._write_image(image, name)
        else:
            self._write_frame(image)

    def _write_image(self, image: np.ndarray, name: str) -> None:
        cv2 = require("cv2")
        target = self.out_dir / FOLDER / (Path(name).stem + ".png")
        ok, data = cv2.imencode(".png", image)
        if not ok:
            raise OutputError(f"OpenCV cannot encode the annotated {name} as PNG")
        with atomic_path(target) as tmp:
            tmp.write_bytes(data.tobytes())
        self.written.append(str(target.relative_to(self.out_dir)))

    def _write_frame(self, image: np.ndarray) -> None:
        cv2 = require("cv2")
        if self._writer is None:
            h, w = image.shape[:2]
            self._size = (w - w % 2, h - h % 2)  # encoders want even sizes
            self._writer = cv2.VideoWriter(str(self._tmp), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, self._size)
            if not self._writer.isOpened():
                raise OutputError(f"OpenCV cannot write {self.out_dir / VIDEO} (no mp4v encoder)")
        self._writer.write(letterbox(image, self._size))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
            os.replace(self._tmp, self.out_dir / VIDEO)
            self.written.append(VIDEO)
