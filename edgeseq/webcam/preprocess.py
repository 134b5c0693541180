"""Find handwritten digits in a frame and turn each into an MNIST-style 28x28 input.

MNIST was made by scaling each digit into a 20x20 box keeping its aspect ratio (anti-aliased), then
placing it in 28x28 so that its centre of mass is at the centre. Camera frames differ: a 12-megapixel
photo or a 640x480 webcam frame, dark ink on light paper, uneven or dim light and shadows, paper texture,
ruled or squared paper, a fine pen or a marker, pen lifts that break a stroke. So, per frame, in steps
that each can be tested alone:

1. ``working_scale``: bring the frame to a working size (at most ``WORK_LONG`` pixels on its longer side).
2. ``ink_map``: flatten the lighting (divide by a blurred background estimate), decide the ink polarity.
3. ``ink_mask``: threshold relative to the paper's own noise, so dim and bright frames behave alike.
4. ``remove_lines``: erase long thin straight lines (ruling, grid, page edges), at any angle.
5. ``stroke_width``: the pen's width, from the distance transform of the ink; every size test below is
   relative to it rather than to the frame.
6. ``group_strokes``: join the pieces of one digit (a 5's flag, a two-stroke 4, a pen lift), split
   touching digits, drop specks and line remnants.
7. ``reading_order``: rows left to right, top to bottom; a column top to bottom.
8. ``to_mnist``: per digit, only its own ink, strokes normalised, scaled and centred as MNIST was.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgeseq.lazy import require

MNIST_BOX = 20  # the digit's longer side, in pixels, inside the 28x28 image
MNIST_SIZE = 28
# MNIST's stroke width as ``_stroke`` measures it (twice the median distance of the ink to the paper),
# relative to the digit's longer side: 0.082 is the median over MNIST test digits (5-95 %: 0.067-0.118).
MNIST_STROKE = 0.082
MNIST_CENTRE = 14.0  # where MNIST's centre of mass lies, in pixel indices (test set: 13.99 down, 14.00 across)
WORK_SIZE = 80  # longest side of a digit crop while its strokes are normalised
WORK_LONG = 1600  # the detector's working resolution: longer side, pixels
MIN_DIGIT_PX = 10  # at working resolution: below this a digit cannot be read
LINE_FRACTION = 0.3  # a ruling line is a thin straight run at least this share of the frame's shorter side


@dataclass(frozen=True)
class Detection:
    box: tuple[int, int, int, int]  # x, y, w, h in frame pixels
    image: np.ndarray  # (28, 28) float32 in [0, 1], ink bright on dark: a model input


Box = list  # [x, y, w, h]


def working_scale(shape: tuple[int, ...]) -> float:
    """The factor (<= 1) that brings a frame of ``shape`` to the working resolution."""
    return min(1.0, WORK_LONG / max(shape[:2]))


def is_light_on_dark(gray: np.ndarray) -> bool:
    """Ink is the minority of pixels and departs from its surroundings: whichever side departs further
    (darker or brighter than the local median) is the ink. Against the local median, not the frame's: a
    shadow over most of the page makes the lit part a bright minority, not ink; and absolute brightness
    is no guide either (dim light makes white paper dark)."""
    cv2 = require("cv2")
    factor = min(1.0, 480 / max(gray.shape))  # small digits on a 12-megapixel page must still show
    small = cv2.resize(gray, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA) if factor < 1 else gray
    small = np.clip(small, 0, 255).astype(np.uint8)
    # The local median, taken at half this size (smooth by nature, and four times cheaper there).
    coarse = cv2.resize(small, (max(1, small.shape[1] // 2), max(1, small.shape[0] // 2)), interpolation=cv2.INTER_AREA)
    median = cv2.medianBlur(coarse, max(3, (min(coarse.shape) // 10) | 1))
    median = cv2.resize(median, (small.shape[1], small.shape[0]), interpolation=cv2.INTER_LINEAR)
    departure = small.astype(np.float32) - median.astype(np.float32)
    low, high = np.percentile(departure, (0.1, 99.9))  # a single thin digit is a few tenths of a percent
    # Dark ink on paper is by far the common case: the other needs clearly brighter departures (a marker
    # digit filling the frame departs both ways, its paper holes as much as its strokes; so do a page's
    # corners against a dark desk).
    return high > 3.0 * -low


def ink_map(frame: np.ndarray) -> np.ndarray:
    """(H, W) float32 in [0, 1]: how much ink each pixel holds, lighting flattened, ink bright."""
    cv2 = require("cv2")
    gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
    gray = gray.astype(np.float32)
    if is_light_on_dark(gray):  # chalk on a blackboard, an inverted scan: make the ink dark
        gray = 255.0 - gray
    # The paper's brightness, strokes closed over: smooth by nature, so estimated at 1/8 resolution. The
    # disc must be wider than the widest stroke (a marker digit filling the frame: a fifth of its shorter
    # side), or such a stroke is taken for paper and comes out hollow; a quarter of the shorter side still
    # follows a lamp's falloff and a shadow's edge (on the camera-like scenes, seed 4: a disc of 1/8 at 1/4
    # resolution read 92.2 % of marker and 90.3 % of frame-filling digits right, this one 96.1 and 96.8 %),
    # though a patch of shadow narrower than it (in a frame's corner) is filled as paper and reads as ink.
    h, w = gray.shape
    small = cv2.resize(gray, (max(1, w // 8), max(1, h // 8)), interpolation=cv2.INTER_AREA)
    size = max(5, (min(small.shape) // 4) | 1)
    background = cv2.morphologyEx(small, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size)))
    background = cv2.GaussianBlur(background, (0, 0), 1.0)  # smooth the closing's blocks, keep a shadow's edge
    background = cv2.resize(background, (w, h), interpolation=cv2.INTER_LINEAR)
    flat = np.clip(gray / np.maximum(background, 1.0), 0.0, 1.0)  # paper ~1, ink < 1
    return 1.0 - flat


def ink_mask(ink: np.ndarray, faint: bool = False) -> np.ndarray:
    """Binary (uint8 0/255) ink. Paper is most of the frame: its median and spread (MAD) say how much
    "ink" texture and noise make, so the threshold sits above them in a dim frame as in a bright one.
    ``faint``: at half that threshold, where printed lines lighter than the pen are still continuous."""
    cv2 = require("cv2")
    sample = ink[::3, ::3]
    median = float(np.median(sample))
    spread = float(np.median(np.abs(sample - median)))
    threshold = min(0.42, max(0.14, median + 7 * spread)) * (0.5 if faint else 1.0)
    # A little smoothing first: sensor noise and JPEG blocks should not fray the strokes' edges.
    smooth = cv2.GaussianBlur(ink, (0, 0), 0.8)
    mask = ((smooth > threshold) * 255).astype(np.uint8)
    return mask if faint else cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((2, 2), np.uint8))


def remove_lines(mask: np.ndarray, faint: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None, int]:
    """The mask without long thin straight lines: ruling, squared-paper grids and page edges, at any
    angle (a page photographed askew). Lines are found in ``faint`` (a lower threshold, where a light
    printed line is unbroken) as straight runs at least ``LINE_FRACTION`` of the frame's shorter side; a
    run counts as a line when the ink along it is thin (a digit's stroke that long is drawn with a pen
    much wider than a printed line), and then only ink as thin as a line, on the line, is erased, so a
    digit crossed by a line keeps the inside of its stroke. Returns the mask, where lines were erased
    (None when none was) and the widest band erased: a thin stroke crossing a line is cut by that much."""
    cv2 = require("cv2")
    h, w = mask.shape
    faint = mask if faint is None else faint
    length = int(LINE_FRACTION * min(h, w))
    if length < 20 or not faint.any():
        return mask, None, 0
    step = np.pi / min(720, max(180, int(1.5 * length)))  # fine enough that a run stays within its band
    segments = cv2.HoughLinesP(faint, 1, step, threshold=max(10, length // 2), minLineLength=length,
                               maxLineGap=max(3, length // 25))
    if segments is None:
        return mask, None, 0
    depth = cv2.distanceTransform(mask, cv2.DIST_L2, 3)
    thin = max(2.0, 0.004 * min(h, w))  # the most a printed line's half-width is here
    layers: dict[float, np.ndarray] = {}  # line half-width -> where such lines run
    widest = 0
    for x0, y0, x1, y1 in segments.reshape(-1, 4):
        count = int(max(abs(x1 - x0), abs(y1 - y0))) + 1
        xs = np.linspace(x0, x1, count).round().astype(int).clip(0, w - 1)
        ys = np.linspace(y0, y1, count).round().astype(int).clip(0, h - 1)
        on = depth[ys, xs]
        present = (on > 0).mean()
        if (on > thin + 0.5).mean() > 0.4:  # over its whole run: a line crossing digits is thick only there
            continue  # thick along its length: a digit's long stroke, not a printed line
        on = on[on > 0]
        # Paper on both sides: a printed line. Ink on one side: the edge of the desk around the page (left
        # whole, it touches the frame's edge and is dropped with it; cut along, it would leave slivers).
        normal = np.array([y0 - y1, x1 - x0], np.float64)
        normal *= (thin + 4) / max(np.hypot(*normal), 1.0)
        sides = [mask[(ys + sign * normal[1]).round().astype(int).clip(0, h - 1),
                      (xs + sign * normal[0]).round().astype(int).clip(0, w - 1)].mean() / 255 for sign in (-1, 1)]
        if max(sides) > 0.5:
            continue
        # The line's own half-width, measured where the mask holds it and no digit crosses it (a line lighter
        # than the threshold leaves only dashes there: those go, with a band no wider than the line).
        on = on[on <= thin + 0.5]
        half = float(np.median(on)) if len(on) and present >= 0.3 else 1.0
        band = int(2 * np.ceil(half) + 5)  # the line, and a pixel each side for the angle's rounding
        widest = max(widest, band)
        # A little past where the votes stopped (a line fades at a page's corner), not much further: the
        # angle's error grows with the distance.
        reach = 0.25 * np.hypot(x1 - x0, y1 - y0)
        direction = np.array([x1 - x0, y1 - y0], np.float64)
        direction *= reach / max(np.hypot(*direction), 1.0)
        start, end = np.array([x0, y0]) - direction, np.array([x1, y1]) + direction
        layer = layers.setdefault(round(half * 2) / 2, np.zeros_like(mask))
        cv2.line(layer, tuple(int(v) for v in start), tuple(int(v) for v in end), 255, band)
    if not layers:
        return mask, None, 0
    keep = np.ones(mask.shape, bool)
    for half, layer in layers.items():  # per line width: ink on a line and no deeper than it is the line
        keep &= (layer == 0) | (depth > half + 1.0)
    return (mask * keep).astype(np.uint8), np.bitwise_or.reduce(list(layers.values())), widest


def stroke_width(mask: np.ndarray) -> float:
    """The pen's width in pixels over the mask's pieces (see ``_pen_width``)."""
    cv2 = require("cv2")
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    return _pen_width(cv2.distanceTransform(mask, cv2.DIST_L2, 5), labels, stats, list(range(1, count)))


def _components(mask: np.ndarray) -> tuple[np.ndarray, list[Box], float]:
    """Labels and boxes of the mask's pieces, and the pen's width measured on them. A piece touching the
    frame's edge is not a digit one can read (cut by the edge, or the desk around the page), so it is
    dropped before the pen is measured; so are specks smaller than the pen's own dot, and slivers nowhere
    as thick as the pen (what a page edge or a line leaves: merged, they would swallow digits)."""
    cv2 = require("cv2")
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    h, w = mask.shape
    inside = [i for i in range(1, count) if stats[i, 0] > 0 and stats[i, 1] > 0
              and stats[i, 0] + stats[i, 2] < w and stats[i, 1] + stats[i, 3] < h]
    depth = cv2.distanceTransform(mask, cv2.DIST_L2, 5)
    stroke = _pen_width(depth, labels, stats, inside)
    cored = np.zeros(count, bool)  # pieces with somewhere a core at least ~60 % of the pen's width
    cored[np.unique(labels[depth > max(1.0, 0.3 * stroke)])] = True
    boxes = []
    for index in inside:
        x, y, bw, bh, area = (int(v) for v in stats[index])
        if not cored[index] and max(bw, bh) >= 4 * min(bw, bh):
            continue  # a thin straight sliver: a line's or a page edge's remains
        if max(bw, bh) < max(3.0, 1.5 * stroke) or area < max(4.0, 0.5 * stroke * stroke):
            continue
        if max(bw, bh) > 6 * max(stroke, 2.0) and area < 0.04 * bw * bh:
            continue  # a large, nearly empty outline: what is left of a page edge or a line, not a digit
        if max(bw, bh) > LINE_FRACTION * min(h, w) and area < 0.06 * bw * bh:
            continue  # frame-sized and nearly empty (a page's outline): nothing may be merged into it either
        boxes.append([x, y, bw, bh, [index]])
    return labels, boxes, stroke


def _pen_width(depth: np.ndarray, labels: np.ndarray, stats: np.ndarray, pieces: list[int]) -> float:
    """The pen's width over many pieces, each weighted by its ink: the digits' strokes, not the many
    one-pixel slivers a page edge or a faint line can leave (which would win a plain median). ``depth``:
    the mask's distance transform; a centre pixel of a stroke w pixels wide lies (w + 1) / 2 from the paper."""
    cv2 = require("cv2")
    if not pieces:
        return 0.0
    ridge = (depth >= cv2.dilate(depth, np.ones((3, 3), np.uint8))) & (depth > 0)
    count = len(stats)
    total = np.bincount(labels[ridge], weights=depth[ridge], minlength=count)
    number = np.bincount(labels[ridge], minlength=count)
    mean = total[pieces] / np.maximum(number[pieces], 1)
    weight = stats[pieces, 4].astype(np.float64)
    order = np.argsort(mean)
    middle = np.searchsorted(np.cumsum(weight[order]), weight.sum() / 2)
    return float(2.0 * mean[order][min(middle, len(order) - 1)] - 1.0)


def _gap(a: Box, b: Box) -> float:
    """Distance between two boxes (negative when they overlap), the larger of the two axes."""
    dx = max(a[0], b[0]) - min(a[0] + a[2], b[0] + b[2])
    dy = max(a[1], b[1]) - min(a[1] + a[3], b[1] + b[3])
    return float(max(dx, dy))


def _union(a: Box, b: Box) -> Box:
    x0, y0 = min(a[0], b[0]), min(a[1], b[1])
    x1, y1 = max(a[0] + a[2], b[0] + b[2]), max(a[1] + a[3], b[1] + b[3])
    return [x0, y0, x1 - x0, y1 - y0, a[4] + b[4]]


def _ink_gap(labels: np.ndarray, a: Box, b: Box) -> float:
    """The shortest distance between the two pieces' ink (their boxes may overlap while their strokes
    stay apart: a digit inside what is left of a page's outline)."""
    cv2 = require("cv2")
    x, y, w, h = _union(a, b)[:4]
    crop = labels[y:y + h, x:x + w]
    away = np.where(np.isin(crop, a[4]), 0, 255).astype(np.uint8)
    distance = cv2.distanceTransform(away, cv2.DIST_L2, 3)
    return float(distance[np.isin(crop, b[4])].min())


def _mergeable(labels: np.ndarray, a: Box, b: Box, stroke: float, bridge: int, lines: np.ndarray | None) -> bool:
    """Two pieces of one digit: close (a pen lift is a short gap relative to the digit; an erased line
    leaves a gap of ``bridge`` where it ran), and together still shaped like one digit (not two digits
    side by side, not two lines of a column)."""
    tall = max(a[3], b[3])
    # Not scaled by the pen: a thick pen covers its own lifts, and its digits stand closer together. A piece
    # under half the other's height is no digit of its own (a 5's flag, a 7's bar, written after a lift) and
    # may stand further off.
    reach = max((0.25 if min(a[3], b[3]) < 0.5 * tall else 0.12) * tall, 2.0)
    merged = _union(a, b)
    if lines is not None and bridge + 1.0 > reach:
        x, y, w, h = merged[:4]
        if lines[y:y + h, x:x + w].any():  # a line ran between them: it may have cut one stroke in two
            reach = bridge + 1.0
    if _gap(a, b) > reach:
        return False
    if merged[2] > 1.6 * merged[3] or merged[3] > 2.2 * tall + 2 * stroke:
        return False
    return _ink_gap(labels, a, b) <= reach + 1.0


def group_strokes(mask: np.ndarray, bridge: int = 0, lines: np.ndarray | None = None) -> tuple[np.ndarray, list[Box]]:
    """The mask's digits as boxes ``[x, y, w, h, labels]``: pieces joined (across gaps up to ``bridge``
    pixels too where ``remove_lines`` erased ``lines``), touching digits split, specks, dashes and line
    remnants dropped. ``labels`` names the connected components each digit is made of."""
    labels, boxes, stroke = _components(mask)
    boxes.sort(key=lambda b: b[2] * b[3], reverse=True)  # grow the big pieces first
    merged = True
    while merged:
        merged = False
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                if _mergeable(labels, boxes[i], boxes[j], stroke, bridge, lines):
                    boxes[i] = _union(boxes[i], boxes[j])
                    del boxes[j]
                    merged = True
                    break
            if merged:
                break
    cv2 = require("cv2")
    h, w = mask.shape
    areas = np.bincount(labels.ravel())
    digits = []
    for box in boxes:
        if max(box[2], box[3]) > LINE_FRACTION * min(h, w) and areas[box[4]].sum() < 0.06 * box[2] * box[3]:
            continue  # frame-sized and nearly empty: a page's outline, not a digit
        for part in _split_touching(labels, box, stroke):
            x, y, bw, bh = part[:4]
            if bh < max(MIN_DIGIT_PX, 2.0 * stroke):
                continue  # a dot or a comma for this pen (a digit held up to fill the frame is still one)
            if bw > 2.2 * bh:
                continue  # a dash (an upright stroke, however thin, is a 1)
            own = (np.isin(labels[y:y + bh, x:x + bw], part[4]) * 255).astype(np.uint8)
            depth = cv2.distanceTransform(np.pad(own, 1), cv2.DIST_L2, 5)
            if 2.0 * float(np.percentile(depth[depth > 0], 95)) < 0.35 * stroke:
                continue  # nowhere as thick as the pen that wrote the digits: a sliver of a page edge or a line
            digits.append(part)
    return labels, digits


def _split_touching(labels: np.ndarray, box: Box, stroke: float) -> list[Box]:
    """A piece much wider than a digit is two (or more) touching digits: cut it at the column with the
    least ink near its middle, and cut again while a part is still too wide."""
    x, y, bw, bh, parts = box
    if bw <= 1.5 * bh or bh < 3 * stroke:  # a wide 0 or a long-tailed 2 is up to ~1.4 times as wide as tall
        return [box]
    ink = np.isin(labels[y:y + bh, x:x + bw], parts)
    profile = ink.sum(axis=0).astype(np.float32)
    low, high = int(0.3 * bw), int(0.7 * bw)
    cut = low + int(np.argmin(profile[low:high]))
    if profile[cut] > 0.5 * np.median(profile[profile > 0]):  # no waist to cut at: one wide digit
        return [box]
    pieces = []
    for x0, x1 in ((0, cut), (cut, bw)):
        cols = ink[:, x0:x1]
        rows = np.flatnonzero(cols.any(axis=1))
        if not len(rows):
            continue
        pieces += _split_touching(labels, [x + x0, y + int(rows[0]), x1 - x0, int(rows[-1] - rows[0] + 1), parts], stroke)
    return pieces


def reading_order(boxes: list[Box]) -> list[Box]:
    """Rows left to right, rows top to bottom; a column is rows of one. A row is chained from box to box
    (each overlapping its left neighbour vertically), so a row written or photographed at a slant stays one."""
    rows: list[list[Box]] = []
    for box in sorted(boxes, key=lambda b: b[0]):
        best, best_overlap = None, 0.0
        for row in rows:
            last = row[-1]
            overlap = min(last[1] + last[3], box[1] + box[3]) - max(last[1], box[1])
            share = overlap / min(last[3], box[3])
            if share > 0.4 and share > best_overlap and box[0] >= last[0] + 0.5 * last[2]:
                best, best_overlap = row, share
        if best is None:
            rows.append([box])
        else:
            best.append(box)
    rows.sort(key=lambda row: np.mean([b[1] + b[3] / 2 for b in row]))
    return [b for row in rows for b in row]


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
    # Strokes towards MNIST's width relative to the digit's size: thin a marker, thicken a fine pen. Inside
    # MNIST's own spread the pen is left as it is; one 3x3 step moves the measure by about 2 pixels.
    stroke = _stroke(crop)
    target = MNIST_STROKE * max(h, w)
    steps = 0
    if stroke > 1.25 * target and stroke > 3:  # a thinner stroke would not survive a step
        steps = -int(round(min((stroke - target) / 2, 6)))
    elif 0 < stroke < 0.8 * target:
        steps = int(round(min((target - stroke) / 2, 6)))
    if steps:
        crop = (cv2.dilate if steps > 0 else cv2.erode)(crop, np.ones((3, 3), np.uint8), iterations=abs(steps))
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
        shift = np.float32([[1, 0, MNIST_CENTRE - cx], [0, 1, MNIST_CENTRE - cy]])
        canvas = cv2.warpAffine(canvas, shift, (MNIST_SIZE, MNIST_SIZE), flags=cv2.INTER_LINEAR, borderValue=0)
    return np.clip(canvas / max(float(canvas.max()), 1e-6), 0.0, 1.0).astype(np.float32)


def _stroke(crop: np.ndarray) -> float:
    """A digit crop's stroke width in pixels: twice the median distance of its ink (> 0.3) to the paper."""
    cv2 = require("cv2")
    binary = (crop > 0.3).astype(np.uint8)
    return 2.0 * float(np.median(cv2.distanceTransform(binary, cv2.DIST_L2, 3)[binary > 0])) if binary.any() else 0.0


def find_digits(frame: np.ndarray, max_digits: int = 64) -> list[Detection]:
    """Digits in a BGR (or gray) frame, in reading order, each as an MNIST-style input; boxes in the
    frame's own pixels whatever the working resolution."""
    cv2 = require("cv2")
    scale = working_scale(frame.shape)
    if scale < 1.0:
        frame = cv2.resize(frame, (round(frame.shape[1] * scale), round(frame.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    ink = ink_map(frame)
    mask, lines, bridge = remove_lines(ink_mask(ink), ink_mask(ink, faint=True))
    labels, boxes = group_strokes(mask, bridge, lines)
    detections = []
    for x, y, w, h, parts in reading_order(boxes)[:max_digits]:
        y0, y1, x0, x1 = max(0, y - 2), min(ink.shape[0], y + h + 2), max(0, x - 2), min(ink.shape[1], x + w + 2)
        own = np.isin(labels[y0:y1, x0:x1], parts).astype(np.uint8) * 255
        own = cv2.dilate(own, np.ones((3, 3), np.uint8))  # the strokes' anti-aliased edges too
        frame_box = tuple(int(round(v / scale)) for v in (x, y, w, h))
        detections.append(Detection(frame_box, to_mnist(ink[y0:y1, x0:x1], own)))
    return detections
