"""Drawing on the frame: each digit's box with the reference reading above it and, below it, either
"all agree" or the backends that disagree (in red); a panel with the frame rate and latencies."""

from __future__ import annotations

import numpy as np

from edgeseq.lazy import require

GREEN, RED, WHITE, BLACK = (60, 200, 60), (50, 50, 230), (255, 255, 255), (0, 0, 0)
FONT_SCALE = 0.45


def _label(image, text: str, org: tuple[int, int], color, scale: float = FONT_SCALE) -> int:
    """Text on a filled dark box (legible on any background); returns the box height."""
    cv2 = require("cv2")
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    x, y = org
    cv2.rectangle(image, (x - 2, y - h - 3), (x + w + 2, y + base), BLACK, -1)
    cv2.putText(image, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, color, 1, cv2.LINE_AA)
    return h + base + 4


def draw(frame: np.ndarray, digits: list[dict], reference: str, fps: float | None, latency_ms: dict[str, float]) -> np.ndarray:
    """A copy of ``frame`` annotated. ``digits``: [{"box": (x, y, w, h), "predictions": {backend: text}}]."""
    cv2 = require("cv2")
    out = frame.copy()
    lines = [f"{fps:.1f} fps" if fps else "-- fps"] + [f"{name} {ms:.2f} ms" for name, ms in latency_ms.items()]
    width = max(cv2.getTextSize(line, cv2.FONT_HERSHEY_SIMPLEX, FONT_SCALE, 1)[0][0] for line in lines) + 12
    panel = out[0 : 16 * len(lines) + 8, 0:width]
    panel[:] = (panel * 0.35).astype(np.uint8)  # darken, keep the scene visible
    for i, line in enumerate(lines):
        cv2.putText(out, line, (6, 18 + 16 * i), cv2.FONT_HERSHEY_SIMPLEX, FONT_SCALE, WHITE, 1, cv2.LINE_AA)
    for digit in digits:  # after the panel: a digit's labels stay on top
        x, y, w, h = digit["box"]
        predictions = digit["predictions"]
        expected = predictions[reference]
        dissent = {n: p for n, p in predictions.items() if p != expected}
        cv2.rectangle(out, (x, y), (x + w, y + h), RED if dissent else GREEN, 2)
        _label(out, expected, (x, max(16, y - 6)), WHITE, scale=0.7)
        line_y = min(out.shape[0] - 4, y + h + 16)
        if not dissent:
            _label(out, f"{len(predictions)}/{len(predictions)} agree", (x, line_y), GREEN)
        for name, text in dissent.items():
            line_y += _label(out, f"{name}: {text}", (x, line_y), RED)
    return out
