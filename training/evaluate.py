"""Test-set evaluation of any Keras model: metrics, confusion matrix and example grids."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeseq import atomic, labels, metrics, plots
from edgeseq.data import Split, adapt_images, load_split
from edgeseq.lazy import keras as _keras
from edgeseq.training.models import describe, load_model

GRID_SIZE = 32  # examples per grid image
SAMPLE_ROWS = 20  # rows of the seq2seq sample table


def predict(model, images: np.ndarray, input_shape: tuple, batch_size: int = 1000) -> np.ndarray:
    """Model outputs for (N, 28, 28) float32 images, in batches, as float32 numpy."""
    x = adapt_images(images, input_shape)
    to_numpy = _keras().ops.convert_to_numpy  # a torch tensor that requires grad refuses np.asarray
    outputs = [to_numpy(model(x[i : i + batch_size], training=False)) for i in range(0, len(x), batch_size)]
    return np.concatenate(outputs).astype(np.float32)


def headline(kind: str, scores: dict) -> dict:
    """The plain-number metrics of :func:`metrics.score_outputs`, for cards and JSON reports."""
    keys = ("accuracy",) if kind == "classify" else ("word_accuracy", "char_accuracy", "char_error_rate")
    return {k: round(float(scores[k]), 6) for k in keys}


@dataclass
class Evaluation:
    model: Path
    kind: str
    examples: int
    metrics: dict
    confusion: list
    files: list[Path] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "model": str(self.model),
            "kind": self.kind,
            "examples": self.examples,
            "metrics": self.metrics,
            "confusion": self.confusion,
            "files": [str(f) for f in self.files],
        }


def _sample_table(words: list[str], digits: np.ndarray, rows: int) -> str:
    truth = [labels.PADDED_WORDS[d] for d in digits]
    wrong = [i for i, (w, t) in enumerate(zip(words, truth)) if w != t]
    right = [i for i, (w, t) in enumerate(zip(words, truth)) if w == t]
    n_wrong = min(len(wrong), max(rows // 2, rows - len(right)))  # half and half, else fill from the other
    picked = wrong[:n_wrong] + right[: rows - n_wrong]
    lines = ["| # | true | predicted | ok |", "|---:|---|---|---|"]
    lines += [f"| {i} | `{truth[i]}` | `{words[i]}` | {'yes' if words[i] == truth[i] else 'NO'} |" for i in sorted(picked)]
    return "\n".join(lines) + "\n"


def evaluate(
    model_path: str | Path,
    *,
    data_dir: str | Path | None = None,
    out_dir: str | Path | None = None,
    limit: int | None = None,
    test: Split | None = None,
) -> Evaluation:
    """Score a model on the MNIST test set (first ``limit`` images) and write figures into ``out_dir``.

    ``out_dir`` defaults to the model's directory. Works for zoo models and any user ``.keras`` whose
    input holds 784 values and whose output is (10,) or (5, 16), or that has a card.
    """
    model = load_model(model_path)
    info = describe(model, model_path)
    test = (test or load_split("test", data_dir)).head(limit)
    probs = predict(model, test.images, info.input_shape)
    scores = metrics.score_outputs(info.kind, probs, test.labels)
    predicted = scores["predicted_digits"]
    matrix = metrics.confusion_matrix(test.labels, predicted)
    result = Evaluation(info.path, info.kind, len(test), headline(info.kind, scores), matrix.tolist())
    out = Path(out_dir) if out_dir else info.path.parent
    name = info.path.stem if info.path.stem != "model" else info.path.parent.name
    if info.kind == "classify":
        captions = [f"{t} -> {p}" for t, p in zip(test.labels, predicted)]
    else:
        captions = [f"{w.rstrip(labels.PAD) or '-'}" for w in scores["predicted_words"]]
    ok = predicted == test.labels
    # Spelled words may name no digit: those land in a last "?" column (always empty for classifiers).
    shown, columns = (matrix, labels.DIGITS + ["?"]) if info.kind == "spell" else (matrix[:, :10], labels.DIGITS)
    result.files.append(plots.confusion(shown, out / "confusion.png", f"{name}: confusion on {len(test)} test images", columns))
    for tag, mask in (("correct", ok), ("wrong", ~ok)):
        idx = np.flatnonzero(mask)[:GRID_SIZE]
        result.files.append(plots.image_grid(test.images[idx], [captions[i] for i in idx], out / f"{tag}.png",
                                             f"{name}: {tag} predictions ({int(mask.sum())} of {len(test)})"))
    if info.kind == "spell":
        result.files.append(atomic.write_text(out / "samples.md", _sample_table(scores["predicted_words"], test.labels, SAMPLE_ROWS)))
    result.files.append(atomic.write_json(out / "evaluation.json", result.to_json()))
    return result
