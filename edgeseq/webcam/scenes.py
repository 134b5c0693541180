"""Camera-like frames of handwritten digits with ground truth, condition by condition: ``edgeseq demo-scenes``.

The demo video is one kind of frame (white paper, one line of MNIST digits, 640x480). A user's camera
gives others: squared and ruled paper, a page photographed at an angle on a desk, defocus, JPEG noise, a
lamp off to one side or a dim room, a fine pen or a marker, pen lifts, digits a few dozen pixels tall in
a 12-megapixel photo. Each ``Condition`` below changes one or two of those from a plain baseline, so that
a per-condition score shows which one is weak. Every digit's label and box (the tight box of its ink in
frame pixels, after the perspective warp) is recorded, in reading order.

Source digits are MNIST *test* images (never training ones) and, for pen width and pen lifts, digits
drawn from strokes (``glyphs``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from edgeseq.atomic import atomic_path, write_json
from edgeseq.data import load_split
from edgeseq.errors import InvalidValueError
from edgeseq.lazy import require
from edgeseq.webcam import glyphs

SCHEMA = "edgeseq.scenes/1"
TRUTH_FILE = "scenes.json"
WEBCAM, HD, FULL_HD = (640, 480), (1280, 720), (1920, 1080)
PHOTO_12MP = ((4000, 3000), (3024, 4032))


@dataclass(frozen=True)
class Condition:
    """How one kind of frame is made. Heights are fractions of the frame's shorter side, floored at
    ``min_px`` pixels per 1,600 pixels of the longer side (the detector's working resolution)."""

    name: str
    what: str
    sizes: tuple = (WEBCAM, HD, FULL_HD)
    layout: str = "rows"  # rows | column | grid
    digits: tuple = (1, 6)
    height: tuple = (0.12, 0.3)
    min_px: int = 16
    paper: str = "plain"  # plain | squared | ruled
    tint: str = "white"  # white | colour
    strokes: float = 0.3  # share of digits drawn from strokes rather than MNIST
    pen: tuple = (0.09, 0.16)  # stroke-drawn pen width, relative to the digit height
    mnist_pen: tuple = (0.85, 1.2)  # MNIST stroke width factor
    lifts: float = 0.0
    light: str = "soft"  # soft | uneven | dim
    perspective: float = 0.0  # corner jitter, relative to the frame
    rotation: float = 3.0  # degrees
    blur: tuple = (0.4, 0.9)  # Gaussian sigma in pixels per 720 pixels of the shorter side
    defocus: tuple = (0.0, 0.0)  # disc radius relative to the digit height
    noise: tuple = (1.5, 3.5)
    jpeg: tuple = (85, 95)


BASE = Condition("plain", "white paper, soft light, MNIST and pen-drawn digits in rows")
CONDITIONS = (
    BASE,
    replace(BASE, name="squared", what="squared paper (5 mm grid lines through the digits)", paper="squared"),
    replace(BASE, name="ruled", what="ruled paper, digits written on the lines", paper="ruled"),
    replace(BASE, name="perspective", what="page at an angle on a desk (keystone, rotation, desk visible)",
            perspective=0.09, rotation=10.0, digits=(2, 8)),
    replace(BASE, name="defocus", what="out of focus (disc blur) and motion-soft", defocus=(0.025, 0.05), blur=(0.8, 1.4)),
    replace(BASE, name="noise-jpeg", what="sensor noise and heavy JPEG compression", noise=(5.0, 9.0), jpeg=(25, 45)),
    replace(BASE, name="uneven-light", what="a lamp off to one side and a hard shadow across the page", light="uneven"),
    replace(BASE, name="dim", what="a dim room: a quarter of the exposure, more noise", light="dim", noise=(3.0, 6.0)),
    replace(BASE, name="fine-pen", what="a fine pen (strokes 3-5 % of the digit's height)", strokes=1.0, pen=(0.03, 0.05),
            min_px=24),
    replace(BASE, name="marker", what="a marker (strokes 18-26 % of the digit's height)", strokes=0.6, pen=(0.18, 0.26),
            mnist_pen=(1.6, 2.1)),
    replace(BASE, name="pen-lifts", what="strokes broken by pen lifts; 4s, 5s and 7s in two strokes", strokes=1.0, lifts=0.7),
    replace(BASE, name="small", what="small digits, 14-24 px tall in a 640x480 frame", sizes=(WEBCAM,), height=(0.03, 0.05),
            min_px=14, digits=(3, 10)),
    replace(BASE, name="large", what="one or two digits filling the frame", height=(0.45, 0.8), digits=(1, 2)),
    replace(BASE, name="colour", what="coloured paper, blue ink or pencil", tint="colour"),
    replace(BASE, name="column", what="a column of digits, read top to bottom", layout="column", digits=(3, 9),
            height=(0.07, 0.1)),
    replace(BASE, name="grid", what="a grid of rows and columns on squared paper", layout="grid", digits=(6, 20),
            height=(0.06, 0.12), paper="squared"),
    replace(BASE, name="page-12mp", what="a 12-megapixel phone photo of a page of digits", sizes=PHOTO_12MP,
            layout="grid", digits=(8, 30), height=(0.03, 0.06), perspective=0.04, rotation=4.0),
)
BY_NAME = {c.name: c for c in CONDITIONS}


@dataclass
class Scene:
    image: np.ndarray  # (H, W, 3) uint8 BGR
    condition: str
    labels: list[int] = field(default_factory=list)  # in reading order
    boxes: list[list[int]] = field(default_factory=list)  # x, y, w, h in frame pixels
    sources: list[str] = field(default_factory=list)  # "mnist:<test index>" or "strokes"


# ------------------------------------------------------------------------------------------ the digits


def _mnist_digit(image: np.ndarray, height: int, factor: float) -> np.ndarray:
    """A 28x28 MNIST digit as sharp-edged ink ``height`` pixels tall, its pen scaled by ``factor``."""
    cv2 = require("cv2")
    ys, xs = np.nonzero(image > 0.15)
    crop = image[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    scale = height / crop.shape[0]
    width = max(1, int(round(crop.shape[1] * scale)))
    big = cv2.resize(crop.astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC)
    big = np.pad(big, int(height * 0.25) + 2)
    ink = np.clip((big - 0.3) / 0.3, 0.0, 1.0)  # a pen's edge, not a scan's blur
    radius = int(round(abs(factor - 1.0) * 0.075 * height))
    if radius:
        element = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        ink = (cv2.dilate if factor > 1 else cv2.erode)(ink, element)
    ys, xs = np.nonzero(ink > 0.02)  # trim the padding the pen did not use
    return ink[max(0, ys.min() - 2):ys.max() + 3, max(0, xs.min() - 2):xs.max() + 3]


def _digit(label: int, height: int, condition: Condition, rng: np.random.Generator, test) -> tuple[np.ndarray, str]:
    if test is None or rng.random() < condition.strokes:
        pen = max(1.0, rng.uniform(*condition.pen) * height)
        parts = glyphs.strokes(label, rng, lifts=condition.lifts)
        return glyphs.draw(parts, height, pen), "strokes"
    candidates = np.flatnonzero(test.labels == label)
    index = int(rng.choice(candidates))
    return _mnist_digit(test.images[index], height, rng.uniform(*condition.mnist_pen)), f"mnist:{index}"


# ------------------------------------------------------------------------------------------- the page


def _layout(condition: Condition, count: int, size: tuple[int, int], height: int, rng) -> list[list[tuple[int, int]]]:
    """Rows of (x, y) top-left corners of digit cells, in reading order (a column is rows of one)."""
    width, tall = size
    pitch_x = height * rng.uniform(1.25, 1.7)  # cell: the digit's ~0.7h width plus a gap
    pitch_y = height * rng.uniform(1.6, 2.1)
    if condition.layout == "column":
        per_row = 1
    elif condition.layout == "grid":
        per_row = max(2, int(round(np.sqrt(count * 1.4))))
    else:
        per_row = int(rng.integers(1, count + 1))
    fit_x = max(1, int((width * 0.9 - height) // pitch_x) + 1)
    fit_y = max(1, int((tall * 0.9 - height) // pitch_y) + 1)
    per_row = min(per_row, fit_x)
    rows = min(fit_y, int(np.ceil(count / per_row)))
    span_x, span_y = (per_row - 1) * pitch_x + height, (rows - 1) * pitch_y + height
    x0 = rng.uniform(0.05 * width, max(0.05 * width, width * 0.95 - span_x))
    y0 = rng.uniform(0.05 * tall, max(0.05 * tall, tall * 0.95 - span_y))
    cells, left = [], count
    for r in range(rows):
        n = min(per_row, left)
        left -= n
        cells.append([(int(x0 + c * pitch_x + rng.uniform(-0.08, 0.08) * height),
                       int(y0 + r * pitch_y + rng.uniform(-0.06, 0.06) * height)) for c in range(n)])
    return [row for row in cells if row]


def _paper(condition: Condition, size: tuple[int, int], rng) -> np.ndarray:
    cv2 = require("cv2")
    width, tall = size
    if condition.tint == "colour":
        colour = [np.array([150, 225, 240]), np.array([235, 215, 200]), np.array([200, 215, 215])][int(rng.integers(3))]
    else:
        colour = np.array([232, 236, 238]) + rng.uniform(-12, 8)
    small = (max(8, width // 4), max(8, tall // 4))
    grain = cv2.resize(rng.normal(0, 1, (small[1], small[0])).astype(np.float32), size, interpolation=cv2.INTER_LINEAR)
    fine = rng.normal(0, 1, (tall, width)).astype(np.float32)
    texture = 3.0 * grain + 2.0 * fine
    return np.clip(colour[None, None, :].astype(np.float32) + texture[..., None], 0, 255)


def _lines(condition: Condition, size: tuple[int, int], height: int, rows, rng) -> tuple[np.ndarray, np.ndarray]:
    """Coverage of the ruling/grid lines and their colour."""
    cv2 = require("cv2")
    width, tall = size
    cover = np.zeros((tall, width), np.uint8)
    thickness = max(1, int(round(min(size) / 720)))
    if condition.paper == "squared":
        step = height * rng.uniform(0.5, 0.8)
        offset = rng.uniform(0, step, 2)
        for x in np.arange(offset[0], width, step):
            cv2.line(cover, (int(x), 0), (int(x), tall - 1), 255, thickness, cv2.LINE_AA)
        for y in np.arange(offset[1], tall, step):
            cv2.line(cover, (0, int(y)), (width - 1, int(y)), 255, thickness, cv2.LINE_AA)
        colour = np.array([215, 170, 120]) if rng.random() < 0.6 else np.array([150, 150, 150])
    elif condition.paper == "ruled":
        baselines = [row[0][1] + height + int(rng.uniform(-0.04, 0.02) * height) for row in rows]
        step = (baselines[1] - baselines[0]) if len(baselines) > 1 else height * rng.uniform(1.6, 2.1)
        start = baselines[0] - step * int(baselines[0] // step)
        for y in np.arange(start, tall, step):
            cv2.line(cover, (0, int(y)), (width - 1, int(y)), 255, thickness + 1, cv2.LINE_AA)
        margin = int(rng.uniform(0.03, 0.08) * width)
        cv2.line(cover, (margin, 0), (margin, tall - 1), 255, thickness + 1, cv2.LINE_AA)
        colour = np.array([200, 150, 110])
    else:
        return cover.astype(np.float32), np.zeros(3)
    return cover.astype(np.float32) / 255.0 * rng.uniform(0.5, 0.8), colour


def _light(condition: Condition, size: tuple[int, int], rng) -> np.ndarray:
    cv2 = require("cv2")
    width, tall = size
    w, h = max(16, width // 8), max(16, tall // 8)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    gx, gy = rng.uniform(-1, 1, 2)
    strength = 0.45 if condition.light == "uneven" else 0.15
    light = 1.0 + strength * (gx * (xx / w - 0.5) + gy * (yy / h - 0.5))
    light -= 0.15 * (((xx - w / 2) / w) ** 2 + ((yy - h / 2) / h) ** 2)
    if condition.light == "uneven":  # a hard shadow: the camera or a hand between lamp and page
        angle = rng.uniform(0, np.pi)
        edge = (xx / w - rng.uniform(0.3, 0.7)) * np.cos(angle) + (yy / h - rng.uniform(0.3, 0.7)) * np.sin(angle)
        light *= 1.0 - rng.uniform(0.35, 0.55) * (1 / (1 + np.exp(-edge * 60)))
    if condition.light == "dim":
        light *= rng.uniform(0.18, 0.32)
    return cv2.resize(light, size, interpolation=cv2.INTER_LINEAR)


def _homography(condition: Condition, size: tuple[int, int], rng) -> np.ndarray | None:
    cv2 = require("cv2")
    width, tall = size
    if not condition.perspective and not condition.rotation:
        return None
    corners = np.float32([[0, 0], [width, 0], [width, tall], [0, tall]])
    jitter = rng.uniform(-condition.perspective, condition.perspective, (4, 2)) * np.float32([width, tall])
    angle = np.radians(rng.uniform(-condition.rotation, condition.rotation))
    centre = np.float32([width / 2, tall / 2])
    turn = np.float32([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    shrink = 1.0 - 2 * condition.perspective  # the page a little smaller than the frame: the desk shows
    moved = (corners - centre) @ turn.T * shrink + centre + jitter
    return cv2.getPerspectiveTransform(corners, moved.astype(np.float32))


def _camera(image: np.ndarray, condition: Condition, digit_height: int, rng) -> np.ndarray:
    cv2 = require("cv2")
    short = min(image.shape[:2])
    radius = rng.uniform(*condition.defocus) * digit_height
    if radius >= 1.0:
        r = int(np.ceil(radius))
        disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)).astype(np.float32)
        image = cv2.filter2D(image, -1, disc / disc.sum())
    sigma = rng.uniform(*condition.blur) * max(1.0, short / 720)
    image = cv2.GaussianBlur(image, (0, 0), sigma)
    image = image + rng.normal(0, rng.uniform(*condition.noise), image.shape).astype(np.float32)
    frame = np.clip(image, 0, 255).astype(np.uint8)
    ok, data = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(*condition.jpeg))])
    return cv2.imdecode(data, cv2.IMREAD_COLOR)


def render_scene(condition: Condition, rng: np.random.Generator, test=None) -> Scene:
    """One frame of ``condition``: digits laid out on paper, lit, warped, blurred, noised, JPEG-coded."""
    cv2 = require("cv2")
    size = tuple(condition.sizes[int(rng.integers(len(condition.sizes)))])
    width, tall = size
    floor = condition.min_px * max(1.0, max(size) / 1600)
    margin = int(0.02 * min(size)) + 2  # digits lie wholly inside the frame: one cut by its edge is not in the set
    height = int(max(floor, rng.uniform(*condition.height) * min(size)))
    height = min(height, int((min(size) - 2 * margin - 8) / 1.2))
    count = int(rng.integers(condition.digits[0], condition.digits[1] + 1))
    rows = _layout(condition, count, size, height, rng)
    ink = np.zeros((tall, width), np.float32)
    scene = Scene(np.empty(0), condition.name)
    contours = []
    for row in rows:
        for x, y in row:
            label = int(rng.integers(10))
            h = int(max(floor, height * rng.uniform(0.88, 1.12)))
            cover, source = _digit(label, h, condition, rng, test)
            fit = min(1.0, (tall - 2 * margin) / cover.shape[0], (width - 2 * margin) / cover.shape[1])
            if fit < 1.0:  # a thick pen made it taller than the frame allows: smaller, never cut by the edge
                cover = cv2.resize(cover, (max(1, int(cover.shape[1] * fit)), max(1, int(cover.shape[0] * fit))),
                                   interpolation=cv2.INTER_AREA)
            # centre the drawn digit on its cell, clipped to the page
            ch, cw = cover.shape
            top, left = y + (height - ch) // 2, x + (int(0.7 * height) - cw) // 2
            top, left = int(np.clip(top, margin, tall - ch - margin)), int(np.clip(left, margin, width - cw - margin))
            region = ink[top:top + ch, left:left + cw]
            np.maximum(region, cover[:region.shape[0], :region.shape[1]], out=region)
            ys, xs = np.nonzero(cover > 0.3)
            contours.append(np.stack([xs + left, ys + top], axis=1).astype(np.float32))
            scene.labels.append(label)
            scene.sources.append(source)
    lines, line_colour = _lines(condition, size, height, rows, rng)
    image = _paper(condition, size, rng)
    image = image * (1 - lines[..., None]) + line_colour[None, None, :] * lines[..., None]
    pencil = condition.tint == "colour" and rng.random() < 0.35
    ink_colour = np.array([110, 110, 110]) if pencil else (np.array([120, 45, 30]) if rng.random() < 0.5 else np.array([35, 30, 30]))
    opacity = ink * (rng.uniform(0.55, 0.7) if pencil else rng.uniform(0.85, 0.95))
    image = image * (1 - opacity[..., None]) + ink_colour[None, None, :] * opacity[..., None]
    image *= _light(condition, size, rng)[..., None]
    warp = _homography(condition, size, rng)
    if warp is not None:
        desk = np.array([40, 70, 100], np.float32) * rng.uniform(0.6, 1.2)
        image = cv2.warpPerspective(image, warp, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                                    borderValue=tuple(float(v) for v in desk))
    for points in contours:
        if warp is not None:
            points = cv2.perspectiveTransform(points[None], warp)[0]
        x0, y0 = np.floor(points.min(axis=0)).astype(int)
        x1, y1 = np.ceil(points.max(axis=0)).astype(int)
        scene.boxes.append([int(x0), int(y0), int(x1 - x0 + 1), int(y1 - y0 + 1)])
    scene.image = _camera(image, condition, height, rng)
    return scene


# ---------------------------------------------------------------------------------------- a test set


def scenes(count_per_condition: int, seed: int, test=None, conditions=CONDITIONS):
    """``count_per_condition`` scenes of each condition; the same seed gives the same frames."""
    for number, condition in enumerate(conditions):
        for k in range(count_per_condition):
            rng = np.random.default_rng([seed, number, k])
            yield render_scene(condition, rng, test)


def write_scenes(out: str | Path, *, per_condition: int = 16, seed: int = 0, test=None, data_dir=None,
                 conditions: list[str] | None = None, on_frame: Callable[[int], None] | None = None) -> dict:
    """A folder of JPEG frames and ``scenes.json`` (each frame's condition, labels and boxes in reading order)."""
    cv2 = require("cv2")
    unknown = [c for c in conditions or [] if c not in BY_NAME]
    if unknown:
        raise InvalidValueError(f"unknown condition {', '.join(unknown)}; known: {', '.join(BY_NAME)}")
    if per_condition < 1:
        raise InvalidValueError("frames per condition must be >= 1")
    chosen = [BY_NAME[c] for c in conditions] if conditions else list(CONDITIONS)
    test = test if test is not None else load_split("test", data_dir)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    frames = []
    for index, scene in enumerate(scenes(per_condition, seed, test, chosen)):
        name = f"{index:05d}-{scene.condition}.jpg"
        with atomic_path(out / name) as tmp:
            ok, data = cv2.imencode(".jpg", scene.image, [cv2.IMWRITE_JPEG_QUALITY, 97])
            Path(tmp).write_bytes(data.tobytes())
        frames.append({"file": name, "condition": scene.condition, "size": [scene.image.shape[1], scene.image.shape[0]],
                       "labels": scene.labels, "boxes": scene.boxes, "sources": scene.sources})
        if on_frame:
            on_frame(index)
    truth = {"schema": SCHEMA, "seed": seed, "per_condition": per_condition,
             "conditions": {c.name: c.what for c in chosen}, "frames": frames}
    write_json(out / TRUTH_FILE, truth)
    return truth


def read_scene_truth(folder: Path) -> dict[str, list[int]] | None:
    """File name -> labels in reading order, from a scenes folder's ``scenes.json``."""
    path = Path(folder) / TRUTH_FILE
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("schema") != SCHEMA:
        return None
    return {f["file"]: f["labels"] for f in data["frames"]}
