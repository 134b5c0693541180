"""MNIST digits re-rendered the way a camera and another hand give them to the model.

A digit cut from a webcam frame is not an MNIST digit: the stroke is thicker or thinner, the edges are
blurred, the paper is not black after normalisation, the contrast and gamma differ, there is sensor
noise, and the digit sits a pixel or two off centre. int8 ranges calibrated on clean MNIST alone, and int8
candidates chosen on it, do not cover those inputs, so export calibrates on a mix and its int8 search
holds candidates to a bar on camera-like copies of its selection images too
(``benchmarks/camera_calibration.py`` measures both ways on digits this module never rendered). Pure numpy, so that export needs
no OpenCV; ``benchmarks/int8_robustness.py`` measures with an independent OpenCV rendering.
"""

from __future__ import annotations

import numpy as np


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur, zero outside the image."""
    radius = max(1, int(round(3 * sigma)))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    rows = np.apply_along_axis(lambda r: np.convolve(r, taps, mode="same"), 1, image)
    return np.apply_along_axis(lambda c: np.convolve(c, taps, mode="same"), 0, rows)


def _stroke(image: np.ndarray, grow: int) -> np.ndarray:
    """2x2 dilation (thicker pen, ``grow`` > 0) or erosion (thinner, < 0)."""
    padded = np.pad(image, ((0, 1), (0, 1)), constant_values=0.0)
    windows = np.stack([padded[:-1, :-1], padded[1:, :-1], padded[:-1, 1:], padded[1:, 1:]])
    return windows.max(axis=0) if grow > 0 else windows.min(axis=0)


def _shift(image: np.ndarray, dx: int, dy: int) -> np.ndarray:
    out = np.zeros_like(image)
    h, w = image.shape
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = image[max(-dy, 0):h - max(dy, 0), max(-dx, 0):w - max(dx, 0)]
    return out


def render(images: np.ndarray, seed: int) -> np.ndarray:
    """Each (28, 28) float32 digit in [0, 1] re-rendered with its own random stroke width, blur, shift,
    background, contrast, gamma and noise (the same ``seed``, the same renderings)."""
    rng = np.random.default_rng(seed)
    out = np.empty(images.shape, dtype=np.float32)
    for i, image in enumerate(np.asarray(images, dtype=np.float32)):
        x = image
        grow = int(rng.integers(-1, 2))
        if grow:
            x = _stroke(x, grow)
        sigma = rng.uniform(0.0, 1.2)
        if sigma > 0.2:
            x = _blur(x, sigma)
        x = _shift(x, *(int(v) for v in rng.integers(-2, 3, 2)))
        low, high = rng.uniform(0.0, 0.15), rng.uniform(0.6, 1.0)
        x = low + (high - low) * np.clip(x, 0.0, 1.0) ** rng.uniform(0.7, 1.4)
        out[i] = np.clip(x + rng.normal(0.0, 0.04, x.shape), 0.0, 1.0)
    return out


def split_at(count: int, share: float) -> int:
    """Where the re-rendered part of ``count`` images starts when ``share`` of them are re-rendered."""
    return count - int(round(count * share))


def mixed(images: np.ndarray, share: float, seed: int) -> np.ndarray:
    """``images`` with the last ``share`` of them re-rendered (the first ones stay clean MNIST)."""
    start = split_at(len(images), share)
    out = np.array(images, dtype=np.float32)
    if start < len(out):
        out[start:] = render(out[start:], seed)
    return out
