"""Find handwritten digits in a frame and turn each into an MNIST-style 28x28 input.

MNIST was made by scaling each digit into a 20x20 box keeping its aspect ratio (anti-aliased), then
placing it in 28x28 so that its centre of mass is at the centre. Camera frames differ: dark ink on
light paper, uneven lighting and shadows, paper texture, ruled or grid lines, thick pens. So, per
frame: flatten the lighting (divide by a blurred background estimate), decide the ink polarity, find
ink with an adaptive threshold, remove long straight lines, group strokes into digits, and per digit
thin strokes that are much heavier than MNIST's before scaling.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgeseq.lazy import require

MNIST_BOX = 20  # the digit's longer side, in pixels, inside the 28x28 image
MNIST_SIZE = 28
MNIST_STROKE = 0.12  # stroke width relative to the box: MNIST strokes are ~2.5 px of 20
WORK_SIZE = 80  # longest side of a digit crop while its strokes are normalised


@dataclass(frozen=True)
class Detection:
    box: tuple[int, int, int, int]  # x, y, w, h in frame pixels
    image: np.ndarray  # (28, 28) float32 in [0, 1], ink bright on dark: a model input


def is_light_on_dark(gray: np.ndarray) -> bool:
    """Ink is the minority of pixels, far from the background's median: whichever tail of the histogram
    reaches further is the ink. (Absolute brightness is no guide: dim light makes white paper dark.)"""
    low, median, high = np.percentile(gray, (0.5, 50, 99.5))
    return (high - median) > 1.2 * (median - low)


def ink_map(frame: np.ndarray) -> np.ndarray:
    """(H, W) float32 in [0, 1]: how much ink each pixel holds, lighting flattened, ink bright."""
    cv2 = require("cv2")
    gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
    gray = gray.astype(np.float32)
    if is_light_on_dark(gray):  # chalk on a blackboard, an inverted scan: make the ink dark
        gray = 255.0 - gray
    # The paper's brightness, strokes closed over: smooth by nature, so estimated at 1/4 resolution.
    h, w = gray.shape
    small = cv2.resize(gray, (max(1, w // 4), max(1, h // 4)), interpolation=cv2.INTER_AREA)
    size = max(5, (min(small.shape) // 8) | 1)  # much larger than a stroke
    background = cv2.morphologyEx(small, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size)))
    background = cv2.GaussianBlur(background, (size, size), 0)
    background = cv2.resize(background, (w, h), interpolation=cv2.INTER_LINEAR)
    flat = np.clip(gray / np.maximum(background, 1.0), 0.0, 1.0)  # paper ~1, ink < 1
    return 1.0 - flat


def ink_mask(ink: np.ndarray) -> np.ndarray:
    """Binary (uint8 0/255) ink, with long straight lines (ruling, grid, page edges) removed."""
    cv2 = require("cv2")
    # Paper is most of the frame: its median and spread (MAD) say how much "ink" texture and noise make.
    median = float(np.median(ink))
    spread = float(np.median(np.abs(ink - median)))
    threshold = min(0.45, max(0.15, median + 6 * spread))
    mask = ((ink > threshold) * 255).astype(np.uint8)
    h, w = mask.shape
    lines = np.zeros_like(mask)
    # Ruling and grid lines run across most of the page; a digit's straightest stroke does not.
    for kernel in ((max(int(w * 0.45), 25), 1), (1, max(int(h * 0.45), 25))):  # horizontal, then vertical
        element = cv2.getStructuringElement(cv2.MORPH_RECT, kernel)
        lines |= cv2.morphologyEx(mask, cv2.MORPH_OPEN, element)
    mask &= ~cv2.dilate(lines, np.ones((3, 3), np.uint8))
    return cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((2, 2), np.uint8))


def _boxes(mask: np.ndarray, min_height_frac: float) -> list[list[int]]:
    cv2 = require("cv2")
    h, w = mask.shape
    # Join the strokes of one digit (a 5's flag, a broken 4) before labelling.
    reach = max(3, (min(h, w) // 100) | 1)
    joined = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (reach, reach)))
    count, _, stats, _ = cv2.connectedComponentsWithStats(joined, connectivity=8)
    boxes = []
    for x, y, bw, bh, area in stats[1:]:
        if bh < min_height_frac * h or bh > 0.95 * h or bw > 0.9 * w:
            continue  # specks, page-sized blobs
        if bw > 2.2 * bh or area < 0.02 * bw * bh:
            continue  # a dash, a stray line, an empty outline
        boxes.append([int(x), int(y), int(bw), int(bh)])
    merged = True
    while merged:  # stack pieces one above the other (an i-like split 5) into one digit
        merged = False
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                a, b = boxes[i], boxes[j]
                overlap = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
                if overlap > 0.6 * min(a[2], b[2]):
                    x0, y0 = min(a[0], b[0]), min(a[1], b[1])
                    x1, y1 = max(a[0] + a[2], b[0] + b[2]), max(a[1] + a[3], b[1] + b[3])
                    if (y1 - y0) < 1.6 * max(a[3], b[3]):
                        boxes[i] = [x0, y0, x1 - x0, y1 - y0]
                        del boxes[j]
                        merged = True
                        break
            if merged:
                break
    return boxes


def reading_order(boxes: list[list[int]]) -> list[list[int]]:
    """Left to right within a line, lines top to bottom."""
    boxes = sorted(boxes, key=lambda b: b[1] + b[3] / 2)
    lines: list[list[list[int]]] = []
    for box in boxes:
        centre = box[1] + box[3] / 2
        if lines and abs(centre - np.mean([b[1] + b[3] / 2 for b in lines[-1]])) < 0.6 * max(b[3] for b in lines[-1]):
            lines[-1].append(box)
        else:
            lines.append([box])
    return [b for line in lines for b in sorted(line, key=lambda b: b[0])]


def to_mnist(ink: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """One digit's ink (crop, float [0, 1]) -> (28, 28) float32, the way MNIST was made."""
    cv2 = require("cv2")
    ys, xs = np.nonzero(mask)
    if not len(ys):
        return np.zeros((MNIST_SIZE, MNIST_SIZE), np.float32)
    crop = ink[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1] * (mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1] > 0)
    crop = crop / max(float(crop.max()), 1e-6)
    if max(crop.shape) > WORK_SIZE:  # stroke work at a bounded size: the result is 20 px anyway
        factor = WORK_SIZE / max(crop.shape)
        crop = cv2.resize(crop.astype(np.float32), (max(1, round(crop.shape[1] * factor)), max(1, round(crop.shape[0] * factor))),
                          interpolation=cv2.INTER_AREA)
    h, w = crop.shape
    # Strokes towards MNIST's width relative to the digit's size: thin a marker, thicken a fine pen.
    binary = (crop > 0.3).astype(np.uint8)
    stroke = 2.0 * float(np.median(cv2.distanceTransform(binary, cv2.DIST_L2, 3)[binary > 0])) if binary.any() else 0.0
    target = MNIST_STROKE * max(h, w)
    if stroke > 1.3 * target and stroke > 3:
        steps = int(min((stroke - target) / 2, 6))
        if steps:
            crop = cv2.erode(crop, np.ones((3, 3), np.uint8), iterations=steps)
    elif 0 < stroke < 0.75 * target:
        steps = int(min((target - stroke) / 2, 6))
        if steps:
            crop = cv2.dilate(crop, np.ones((3, 3), np.uint8), iterations=steps)
    scale = MNIST_BOX / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = cv2.resize(crop.astype(np.float32), size, interpolation=cv2.INTER_AREA)
    canvas = np.zeros((MNIST_SIZE, MNIST_SIZE), np.float32)
    top, left = (MNIST_SIZE - size[1]) // 2, (MNIST_SIZE - size[0]) // 2
    canvas[top : top + size[1], left : left + size[0]] = small
    total = canvas.sum()
    if total > 0:  # shift the centre of mass to the centre
        cy = (canvas.sum(axis=1) * np.arange(MNIST_SIZE)).sum() / total
        cx = (canvas.sum(axis=0) * np.arange(MNIST_SIZE)).sum() / total
        shift = np.float32([[1, 0, MNIST_SIZE / 2 - 0.5 - cx], [0, 1, MNIST_SIZE / 2 - 0.5 - cy]])
        canvas = cv2.warpAffine(canvas, shift, (MNIST_SIZE, MNIST_SIZE), flags=cv2.INTER_LINEAR, borderValue=0)
    return np.clip(canvas / max(float(canvas.max()), 1e-6), 0.0, 1.0).astype(np.float32)


def find_digits(frame: np.ndarray, min_height_frac: float = 0.06, max_digits: int = 12) -> list[Detection]:
    """Digits in a BGR (or gray) frame, in reading order, each as an MNIST-style input."""
    ink = ink_map(frame)
    mask = ink_mask(ink)
    detections = []
    for x, y, w, h in reading_order(_boxes(mask, min_height_frac))[:max_digits]:
        pad = max(2, int(0.08 * max(w, h)))
        y0, y1 = max(0, y - pad), min(ink.shape[0], y + h + pad)
        x0, x1 = max(0, x - pad), min(ink.shape[1], x + w + pad)
        detections.append(Detection((x, y, w, h), to_mnist(ink[y0:y1, x0:x1], mask[y0:y1, x0:x1])))
    return detections
