"""Drawing on the frame: each digit's box with the reference reading above it and, below it, either
"all agree" or the backends that disagree (in red); a panel with the frame rate and latencies. Text,
lines and the panel scale with the frame (sized for 480 pixels, grown for a 12-megapixel photo), so the
HUD stays readable on any source."""

from __future__ import annotations

import numpy as np

from edgeseq.lazy import require

GREEN, RED, WHITE, BLACK = (60, 200, 60), (50, 50, 230), (255, 255, 255), (0, 0, 0)
FONT_SCALE = 0.45


def hud_scale(frame: np.ndarray) -> float:
    """How much larger than on a 640x480 frame the HUD is drawn."""
    return max(1.0, min(frame.shape[:2]) / 480)


def _label(image, text: str, org: tuple[int, int], color, scale: float = FONT_SCALE, thickness: int = 1) -> int:
    """Text on a filled dark box (legible on any background); returns the box height."""
    cv2 = require("cv2")
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    x, y = org
    pad = max(2, int(3 * scale))
    cv2.rectangle(image, (x - pad, y - h - pad), (x + w + pad, y + base), BLACK, -1)
    cv2.putText(image, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, color, thickness, cv2.LINE_AA)
    return h + base + 2 * pad


def draw(frame: np.ndarray, digits: list[dict], reference: str, fps: float | None, latency_ms: dict[str, float]) -> np.ndarray:
    """A copy of ``frame`` annotated. ``digits``: [{"box": (x, y, w, h), "predictions": {backend: text}}]."""
    cv2 = require("cv2")
    out = frame.copy()
    k = hud_scale(frame)
    font, thick, step = FONT_SCALE * k, max(1, round(k)), int(16 * k)
    lines = [f"{fps:.1f} fps" if fps else "-- fps"] + [f"{name} {ms:.2f} ms" for name, ms in latency_ms.items()]
    width = max(cv2.getTextSize(line, cv2.FONT_HERSHEY_SIMPLEX, font, thick)[0][0] for line in lines) + int(12 * k)
    panel = out[0 : step * len(lines) + int(8 * k), 0:width]
    panel[:] = (panel * 0.35).astype(np.uint8)  # darken, keep the scene visible
    for i, line in enumerate(lines):
        cv2.putText(out, line, (int(6 * k), int(18 * k) + step * i), cv2.FONT_HERSHEY_SIMPLEX, font, WHITE, thick, cv2.LINE_AA)
    for digit in digits:  # after the panel: a digit's labels stay on top
        x, y, w, h = digit["box"]
        predictions = digit["predictions"]
        expected = predictions[reference]
        dissent = {n: p for n, p in predictions.items() if p != expected}
        cv2.rectangle(out, (x, y), (x + w, y + h), RED if dissent else GREEN, max(2, round(2 * k)))
        _label(out, expected, (x, max(int(16 * k), y - int(6 * k))), WHITE, scale=0.7 * k, thickness=thick)
        line_y = min(out.shape[0] - int(4 * k), y + h + step)
        if not dissent:
            _label(out, f"{len(predictions)}/{len(predictions)} agree", (x, line_y), GREEN, scale=font, thickness=thick)
        for name, text in dissent.items():
            line_y += _label(out, f"{name}: {text}", (x, line_y), RED, scale=font, thickness=thick)
    return out
