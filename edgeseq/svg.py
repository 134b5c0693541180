"""Bench figures as SVG written directly, for a device without matplotlib (the base install has none).

The same two figures as :mod:`edgeseq.plots`: latency spread per artifact (box p25-p75, median, whiskers
p1-p99, log scale) and accuracy against p50 latency. numpy only; the files open in any browser.
"""

from __future__ import annotations

import math
from html import escape
from pathlib import Path

import numpy as np

from edgeseq import atomic

_W, _LEFT, _RIGHT, _TOP, _ROW = 760, 150, 20, 40, 28


def _log_scale(lo: float, hi: float, width: float):
    lo, hi = math.log10(max(lo, 1e-3)), math.log10(max(hi, lo * 1.01, 1e-3))
    lo, hi = math.floor(lo), math.ceil(hi) if math.ceil(hi) > math.floor(lo) else math.floor(lo) + 1
    return (lambda v: _LEFT + (math.log10(max(v, 1e-3)) - lo) / (hi - lo) * width), range(lo, hi + 1)


def _axis(x_of, decades, y: float, label: str) -> list[str]:
    parts = [f'<line x1="{_LEFT}" y1="{y}" x2="{_W - _RIGHT}" y2="{y}" stroke="#333"/>']
    for d in decades:
        x = x_of(10.0 ** d)
        parts += [f'<line x1="{x:.1f}" y1="{_TOP - 10}" x2="{x:.1f}" y2="{y}" stroke="#ddd"/>',
                  f'<text x="{x:.1f}" y="{y + 16}" text-anchor="middle">{10.0 ** d:g}</text>']
    parts.append(f'<text x="{(_LEFT + _W - _RIGHT) / 2}" y="{y + 34}" text-anchor="middle">{escape(label)}</text>')
    return parts


def _document(body: list[str], height: float, title: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{height:.0f}" font-family="sans-serif" '
            f'font-size="11"><rect width="100%" height="100%" fill="white"/>'
            f'<text x="{_W / 2}" y="20" text-anchor="middle" font-size="13">{escape(title)}</text>'
            + "".join(body) + "</svg>\n")


def latency_distribution(names: list[str], samples_us: list[list[float]], path: Path, title: str) -> Path:
    """One horizontal box per artifact, log scale."""
    stats = [np.percentile(np.asarray(s, dtype=np.float64), [1, 25, 50, 75, 99]) for s in samples_us]
    x_of, decades = _log_scale(min(s[0] for s in stats), max(s[4] for s in stats), _W - _LEFT - _RIGHT)
    bottom = _TOP + _ROW * len(names)
    body = _axis(x_of, decades, bottom, "latency per inference (µs, log scale)")
    for i, (name, (p1, p25, p50, p75, p99)) in enumerate(zip(names, stats)):
        y = _TOP + _ROW * i + _ROW / 2
        body += [f'<text x="{_LEFT - 8}" y="{y + 4}" text-anchor="end">{escape(name)}</text>',
                 f'<line x1="{x_of(p1):.1f}" y1="{y}" x2="{x_of(p99):.1f}" y2="{y}" stroke="#555"/>',
                 f'<rect x="{x_of(p25):.1f}" y="{y - 8}" width="{max(x_of(p75) - x_of(p25), 1):.1f}" height="16" '
                 'fill="#9ecae1" stroke="#3182bd"/>',
                 f'<line x1="{x_of(p50):.1f}" y1="{y - 8}" x2="{x_of(p50):.1f}" y2="{y + 8}" stroke="#e6550d" stroke-width="2"/>',
                 f'<title>{escape(name)}: p50 {p50:.1f} µs, p99 {p99:.1f} µs</title>']
    return atomic.write_text(path, _document(body, bottom + 50, title))


def accuracy_vs_latency(names: list[str], p50_us: list[float], accuracy: list[float], path: Path, title: str) -> Path:
    """Each artifact as a point: p50 latency (log scale) against accuracy."""
    height, plot_h = 360, 260
    x_of, decades = _log_scale(min(p50_us), max(p50_us), _W - _LEFT - _RIGHT)
    lo, hi = min(accuracy), max(accuracy)
    pad = max((hi - lo) * 0.25, 0.002)
    y_of = lambda a: _TOP + plot_h - (a - (lo - pad)) / ((hi + pad) - (lo - pad)) * plot_h  # noqa: E731
    body = _axis(x_of, decades, _TOP + plot_h, "p50 latency at batch 1 (µs, log scale)")
    for a in np.linspace(lo - pad, hi + pad, 5):
        body.append(f'<text x="{_LEFT - 8}" y="{y_of(a) + 4:.1f}" text-anchor="end">{a * 100:.2f} %</text>')
    for i, (name, x, a) in enumerate(zip(names, p50_us, accuracy)):
        cx, cy = x_of(x), y_of(a)
        body += [f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="4" fill="#3182bd"/>',
                 f'<text x="{cx + 6:.1f}" y="{cy + (-8, 4, 14)[i % 3]:.1f}">{escape(name)}</text>']
    return atomic.write_text(path, _document(body, height, title))
