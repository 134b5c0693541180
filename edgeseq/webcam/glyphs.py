"""Digits drawn as pen strokes: a small handwriting-style stroke font with variants per digit.

MNIST digits are bitmaps whose pen is fixed by the scan. To test a fine pen, a marker, and pen lifts
that break a stroke, the scene generator also draws digits from strokes: each glyph is a few polylines
in a unit box (x right, y down), jittered, slanted and drawn with any pen width. The shapes follow how
people write digits (an open-top 4 in two strokes, a 5 whose flag is a separate stroke, a 7 with or
without a bar), not a typeface.
"""

from __future__ import annotations

import numpy as np

from edgeseq.lazy import require

Stroke = np.ndarray  # (N, 2) points in the unit box


def _arc(cx: float, cy: float, rx: float, ry: float, start: float, end: float, steps: int = 24) -> Stroke:
    """Points on an ellipse from ``start`` to ``end`` degrees (0 = right, 90 = down)."""
    t = np.radians(np.linspace(start, end, steps))
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1)


def _line(*points: tuple[float, float]) -> Stroke:
    return np.asarray(points, dtype=np.float64)


def _join(*parts: Stroke) -> Stroke:
    return np.concatenate(parts, axis=0)


# Each digit: a list of variants; each variant a list of strokes (one pen-down each).
GLYPHS: dict[int, list[list[Stroke]]] = {
    0: [[_arc(0.5, 0.5, 0.4, 0.5, -80, 285)], [_arc(0.5, 0.5, 0.34, 0.5, 260, 630)]],
    1: [[_line((0.52, 0.0), (0.48, 1.0))], [_line((0.3, 0.18), (0.56, 0.0), (0.5, 1.0))]],
    2: [[_join(_arc(0.5, 0.3, 0.4, 0.3, 200, 390), _line((0.12, 1.0), (0.92, 1.0)))],
        [_join(_arc(0.48, 0.28, 0.38, 0.28, 190, 400), _line((0.1, 0.98), (0.5, 0.9), (0.95, 1.0)))]],
    3: [[_join(_arc(0.5, 0.26, 0.36, 0.26, 200, 450), _arc(0.5, 0.75, 0.42, 0.25, -90, 160))],
        [_join(_line((0.12, 0.02), (0.85, 0.0), (0.45, 0.42)), _arc(0.5, 0.7, 0.4, 0.3, -75, 160))]],
    4: [[_line((0.22, 0.0), (0.08, 0.62), (0.95, 0.62)), _line((0.74, 0.05), (0.7, 1.0))],
        [_line((0.62, 0.0), (0.04, 0.66), (0.96, 0.66)), _line((0.66, 0.12), (0.64, 1.0))]],
    5: [[_join(_line((0.85, 0.0), (0.26, 0.0), (0.2, 0.45)), _arc(0.48, 0.68, 0.4, 0.32, -145, 150))],
        [_join(_line((0.26, 0.02), (0.2, 0.45)), _arc(0.48, 0.68, 0.4, 0.32, -145, 150)), _line((0.24, 0.0), (0.9, 0.02))]],
    6: [[_join(_line((0.75, 0.0), (0.42, 0.18), (0.2, 0.48)), _arc(0.5, 0.72, 0.32, 0.28, 180, 535))],
        [_join(_line((0.7, 0.0), (0.3, 0.3)), _arc(0.5, 0.7, 0.35, 0.3, 200, 555))]],
    7: [[_line((0.08, 0.02), (0.92, 0.0), (0.4, 1.0))],
        [_line((0.08, 0.05), (0.9, 0.0), (0.45, 1.0)), _line((0.4, 0.52), (0.85, 0.5))]],
    8: [[_join(_arc(0.5, 0.25, 0.3, 0.25, 90, 450), _arc(0.5, 0.72, 0.38, 0.28, -90, 270))],
        [_join(_arc(0.48, 0.26, 0.32, 0.26, 60, 420), _arc(0.52, 0.73, 0.36, 0.27, -110, 250))]],
    9: [[_join(_arc(0.5, 0.3, 0.36, 0.3, 0, 360), _line((0.86, 0.3), (0.78, 1.0)))],
        [_join(_arc(0.48, 0.3, 0.36, 0.3, -20, 340), _line((0.82, 0.2), (0.82, 1.0)))]],
}


def _resample(stroke: Stroke, spacing: float) -> Stroke:
    """Points every ``spacing`` along the polyline (so that jitter and cuts act on arc length)."""
    seg = np.linalg.norm(np.diff(stroke, axis=0), axis=1)
    length = np.concatenate([[0.0], np.cumsum(seg)])
    count = max(2, int(length[-1] / spacing) + 1)
    at = np.linspace(0.0, length[-1], count)
    return np.stack([np.interp(at, length, stroke[:, 0]), np.interp(at, length, stroke[:, 1])], axis=1)


def strokes(digit: int, rng: np.random.Generator, *, lifts: float = 0.0) -> list[Stroke]:
    """One writer's rendition of ``digit``: a random variant, wobbled, slanted, narrowed and rotated,
    with each stroke broken by a pen lift with probability ``lifts``. Points stay in the unit box's scale
    (the bounding box is renormalised to height 1 by ``draw``)."""
    variant = GLYPHS[digit][int(rng.integers(len(GLYPHS[digit])))]
    slant = rng.uniform(-0.28, 0.08)  # most hands lean right
    narrow = rng.uniform(0.62, 1.0)
    angle = np.radians(rng.uniform(-6, 6))
    rotate = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    out = []
    for stroke in variant:
        points = _resample(stroke, 0.02)
        wobble = np.cumsum(rng.normal(0.0, 0.004, points.shape), axis=0)  # a hand drifts, it does not jitter
        points = points + wobble - wobble.mean(axis=0)
        x = (points[:, 0] - 0.5) * narrow + slant * (points[:, 1] - 0.5)
        points = np.stack([x, points[:, 1] - 0.5], axis=1) @ rotate.T
        if rng.random() < lifts and len(points) > 12:
            cut = int(rng.integers(int(0.25 * len(points)), int(0.75 * len(points))))
            gap = max(2, int(rng.uniform(0.04, 0.09) / 0.02))
            out += [points[:cut], points[cut + gap:]]
        else:
            out.append(points)
    return [s for s in out if len(s) >= 2]


def draw(parts: list[Stroke], height: int, pen: float) -> np.ndarray:
    """Coverage image (float32 in [0, 1]) of the strokes, scaled so that the digit is ``height`` pixels tall
    without the pen, drawn with a round pen ``pen`` pixels wide, anti-aliased by 4x supersampling."""
    cv2 = require("cv2")
    every = np.concatenate(parts)
    low, high = every.min(axis=0), every.max(axis=0)
    scale = height / max(high[1] - low[1], 1e-6)
    zoom = 4
    margin = pen / 2 + 2
    width = int(np.ceil((high[0] - low[0]) * scale + 2 * margin))
    tall = int(np.ceil(height + 2 * margin))
    canvas = np.zeros((tall * zoom, width * zoom), np.uint8)
    thickness = max(1, int(round(pen * zoom)))
    for stroke in parts:
        points = ((stroke - low) * scale + margin) * zoom
        cv2.polylines(canvas, [np.round(points).astype(np.int32)], False, 255, thickness, cv2.LINE_AA)
    return cv2.resize(canvas, (width, tall), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
