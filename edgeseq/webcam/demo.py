"""A synthetic camera video from MNIST test digits with known labels: ``edgeseq demo-video``.

Each frame: paper with texture and uneven lighting, 1-4 digits drawn in dark ink at random sizes,
small rotations and positions, read left to right, then blur and sensor noise; a JSON sidecar
(``<video>.json``) holds every frame's labels in reading order, which ``edgeseq webcam`` picks up to
score the whole pipeline (detection + preprocessing + model) against ground truth.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgeseq.atomic import atomic_path, write_json
from edgeseq.data import Split, load_split
from edgeseq.errors import InvalidValueError
from edgeseq.lazy import require
from edgeseq.webcam.scenes import read_scene_truth

SIZE = (640, 480)  # width, height


def render_frame(digits: list[np.ndarray], rng: np.random.Generator, size=SIZE) -> tuple[np.ndarray, list[list[int]]]:
    """Draw (28, 28) MNIST digits (ink bright) dark on paper; returns the BGR frame and each digit's box."""
    cv2 = require("cv2")
    width, height = size
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    light = 0.75 + 0.25 * (rng.uniform(-1, 1) * xx / width + rng.uniform(-1, 1) * yy / height)  # a lamp off to one side
    light -= 0.15 * (((xx - width / 2) / width) ** 2 + ((yy - height / 2) / height) ** 2)  # vignette
    paper = rng.uniform(200, 235) * np.clip(light, 0.45, 1.1)
    texture = cv2.GaussianBlur(rng.normal(0, 6, (height, width)).astype(np.float32), (0, 0), 1.2)
    canvas = paper + texture
    ink = np.zeros((height, width), np.float32)
    slots = np.linspace(0, width, len(digits) + 1)
    line = rng.uniform(0.25, 0.75) * height  # digits written along one line, read left to right
    boxes = []
    for i, digit in enumerate(digits):
        side = int(rng.uniform(0.16, 0.3) * height)  # the 28x28 cell's side; the digit fills ~20/28 of it
        big = cv2.resize(digit, (side, side), interpolation=cv2.INTER_CUBIC)
        rotation = cv2.getRotationMatrix2D((side / 2, side / 2), rng.uniform(-12, 12), 1.0)
        big = np.clip(cv2.warpAffine(big, rotation, (side, side)), 0, 1)
        slot_width = slots[i + 1] - slots[i]
        x = int(slots[i] + rng.uniform(0, max(1.0, slot_width - side)))
        x = min(max(x, 0), width - side)
        y = int(np.clip(line - side / 2 + rng.uniform(-0.08, 0.08) * side, 0, height - side))
        ink[y : y + side, x : x + side] = np.maximum(ink[y : y + side, x : x + side], big)
        ys, xs = np.nonzero(big > 0.2)
        boxes.append([x + int(xs.min()), y + int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)])
    darkness = rng.uniform(0.75, 0.9)
    gray = canvas * (1 - darkness * ink)
    gray = cv2.GaussianBlur(gray, (0, 0), rng.uniform(0.6, 1.4))
    gray += rng.normal(0, 3, gray.shape)
    tint = np.array([1.0, 0.98, 0.95], np.float32)  # warm paper, blue-black ink
    frame = np.clip(gray[..., None] * tint[None, None, :], 0, 255).astype(np.uint8)
    return frame, boxes


def write_demo_video(path: str | Path, *, frames: int = 120, fps: float = 15.0, seed: int = 0, on_frame=None,
                     data_dir=None, test: Split | None = None, max_digits: int = 4) -> dict:
    """Write the video and its ``.json`` sidecar of labels; returns the sidecar's content."""
    cv2 = require("cv2")
    if frames < 1 or not 1 <= max_digits <= 6:
        raise InvalidValueError("frames must be >= 1 and digits per frame in 1..6")
    path = Path(path)
    if path.suffix.lower() != ".mp4":
        raise InvalidValueError(f"{path}: the demo video is written as .mp4")
    test = test or load_split("test", data_dir)
    rng = np.random.default_rng(seed)
    truth = []
    with atomic_path(path) as tmp:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, SIZE)
        if not writer.isOpened():
            raise InvalidValueError(f"OpenCV cannot write {path} (no mp4v encoder)")
        try:
            for index in range(frames):
                picks = rng.choice(len(test), size=int(rng.integers(1, max_digits + 1)), replace=False)
                frame, boxes = render_frame([test.images[i] for i in picks], rng)
                writer.write(frame)
                if on_frame:
                    on_frame(index)
                truth.append({"frame": index, "labels": [int(test.labels[i]) for i in picks], "boxes": boxes,
                              "test_indices": [int(i) for i in picks]})
        finally:
            writer.release()
    sidecar = {"schema": "edgeseq.demo/1", "video": path.name, "fps": fps, "size": list(SIZE), "seed": seed,
               "frames": truth}
    write_json(sidecar_path(path), sidecar)
    return sidecar


def sidecar_path(video: Path) -> Path:
    return Path(video).with_suffix(".json")


def read_truth(source: str | Path) -> dict | None:
    """Labels in reading order per frame, when the source carries its ground truth: frame index -> labels
    for a demo video (its ``.json`` sidecar), file name -> labels for a ``demo-scenes`` folder or one of
    its images (``scenes.json``)."""
    path = Path(str(source))
    if path.is_dir():
        return read_scene_truth(path)
    if path.is_file() and (path.parent / "scenes.json").is_file():
        return read_scene_truth(path.parent)
    if not path.is_file() or not sidecar_path(path).is_file():
        return None
    data = json.loads(sidecar_path(path).read_text(encoding="utf-8"))
    if data.get("schema") != "edgeseq.demo/1":
        return None
    return {f["frame"]: f["labels"] for f in data["frames"]}
