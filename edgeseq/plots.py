"""PNG figures: training curves, confusion matrices, image grids. matplotlib is imported lazily (Agg)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeseq.atomic import atomic_path
from edgeseq.lazy import require


def _pyplot():
    matplotlib = require("matplotlib")
    matplotlib.use("Agg")  # files only; never needs a display
    return require("matplotlib.pyplot")


def _save(fig, path: Path) -> Path:
    plt = _pyplot()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


def training_curves(history: dict, path: Path, title: str) -> Path:
    """Loss and accuracy per epoch, training and validation, side by side."""
    plt = _pyplot()
    epochs = history["epoch"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, metric in zip(axes, ("loss", "accuracy")):
        for prefix, style in (("", "-o"), ("val_", "--s")):
            if prefix + metric in history:
                ax.plot(epochs, history[prefix + metric], style, ms=3, label=(prefix or "train_") + metric)
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    return _save(fig, path)


def confusion(matrix: np.ndarray, path: Path, title: str, col_labels: list[str]) -> Path:
    """Counts of true digit (rows) against predicted (columns), annotated."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(0.55 * matrix.shape[1] + 1.5, 0.55 * matrix.shape[0] + 1.2))
    ax.imshow(np.log1p(matrix), cmap="Blues")
    for (i, j), count in np.ndenumerate(matrix):
        if count:
            ax.text(j, i, str(count), ha="center", va="center", fontsize=7, color="black" if i != j else "white")
    ax.set_xticks(range(matrix.shape[1]), col_labels)
    ax.set_yticks(range(matrix.shape[0]), [str(i) for i in range(matrix.shape[0])])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    return _save(fig, path)


def image_grid(images: np.ndarray, captions: list[str], path: Path, title: str, columns: int = 8) -> Path:
    """(N, 28, 28) images in a grid, each with its caption (e.g. "7 -> 1")."""
    plt = _pyplot()
    n = max(len(images), 1)
    rows = (n + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.2, rows * 1.35 + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, caption in zip(axes.flat, images, captions):
        ax.imshow(image, cmap="gray_r", vmin=0, vmax=1)
        ax.set_title(caption, fontsize=8)
    if not len(images):
        axes.flat[0].text(0.5, 0.5, "none", ha="center", va="center")
    fig.suptitle(title)
    return _save(fig, path)


def latency_distribution(names: list[str], samples_us: list[list[float]], path: Path, title: str) -> Path:
    """One horizontal box per artifact (whiskers 1-99 %), log scale: how latency spreads."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(names) + 1.4))
    ax.boxplot(samples_us, vert=False, whis=(1, 99), showfliers=False)
    ax.set_yticks(range(1, len(names) + 1), names)
    ax.set_xscale("log")
    ax.set_xlabel("latency per inference (µs, log scale)")
    ax.grid(alpha=0.3, axis="x")
    ax.set_title(title)
    return _save(fig, path)


def accuracy_vs_latency(names: list[str], p50_us: list[float], accuracy: list[float], path: Path, title: str) -> Path:
    """Each artifact as a point: p50 latency against accuracy."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.scatter(p50_us, [a * 100 for a in accuracy])
    for i, (name, x, y) in enumerate(zip(names, p50_us, accuracy)):  # staggered so close points stay legible
        ax.annotate(name, (x, y * 100), fontsize=7, xytext=(4, (-12, 4, 14)[i % 3]), textcoords="offset points")
    ax.margins(y=0.25)
    ax.set_xscale("log")
    ax.set_xlabel("p50 latency at batch 1 (µs, log scale)")
    ax.set_ylabel("accuracy (%)")
    ax.grid(alpha=0.3)
    ax.set_title(title)
    return _save(fig, path)


def step_series(series: dict[str, tuple[list, list]], path: Path, title: str, xlabel: str, ylabel: str) -> Path:
    """One line per named (x, y) series."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, (xs, ys) in series.items():
        ax.plot(xs, ys, marker="o", markersize=3, label=name)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    if len(series) > 1:
        ax.legend()
    return _save(fig, path)


def bars(labels: list[str], values: list[float], highlighted: list[bool], lines: dict[str, float], path: Path,
         title: str, ylabel: str) -> Path:
    """One bar per label (highlighted ones orange) with named horizontal reference lines."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(4.0, 0.6 * len(labels) + 2), 3.4))
    ax.bar(range(len(labels)), values, color=["tab:orange" if h else "tab:blue" for h in highlighted])
    for (name, y), style in zip(lines.items(), ("--", ":", "-.")):
        ax.axhline(y, linestyle=style, color="gray", label=name)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=7)
    ax.set(title=title, ylabel=ylabel)
    ax.grid(alpha=0.3, axis="y")
    if lines:
        ax.legend(fontsize=7)
    return _save(fig, path)
