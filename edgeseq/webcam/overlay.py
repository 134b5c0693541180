"""Drawing on the frame: each digit's box, every backend's reading, agree/disagree, frame rate, latencies."""

from __future__ import annotations

import numpy as np

from edgeseq.lazy import require

GREEN, RED, WHITE, BLACK = (60, 180, 60), (40, 40, 220), (255, 255, 255), (0, 0, 0)


def _text(image, text: str, org: tuple[int, int], color=WHITE, scale: float = 0.45) -> None:
    cv2 = require("cv2")
    cv2.putText(image, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, BLACK, 3, cv2.LINE_AA)
    cv2.putText(image, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, color, 1, cv2.LINE_AA)


def draw(frame: np.ndarray, digits: list[dict], reference: str, fps: float | None, latency_ms: dict[str, float]) -> np.ndarray:
    """A copy of ``frame`` annotated. ``digits``: [{"box": (x, y, w, h), "predictions": {backend: text}}]."""
    cv2 = require("cv2")
    out = frame.copy()
    for digit in digits:
        x, y, w, h = digit["box"]
        predictions = digit["predictions"]
        agree = all(p == predictions[reference] for p in predictions.values())
        cv2.rectangle(out, (x, y), (x + w, y + h), GREEN if agree else RED, 2)
        line_y = y + h + 14
        for name, text in predictions.items():
            mark = "" if name == reference else ("  =" if text == predictions[reference] else "  X")
            _text(out, f"{name}: {text}{mark}", (x, line_y), GREEN if (name == reference or text == predictions[reference]) else RED)
            line_y += 14
    hud = [f"{fps:.1f} fps" if fps else "-- fps"] + [f"{name} {ms:.2f} ms" for name, ms in latency_ms.items()]
    for i, line in enumerate(hud):
        _text(out, line, (8, 18 + 16 * i), scale=0.5)
    return out
