"""Accuracy-style measures on model outputs. numpy only: shared by evaluate, verify, bench and webcam."""

from __future__ import annotations

import numpy as np

from edgeseq import labels


def accuracy(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Share of equal entries; for (N, L) character ids an example counts only if all L match."""
    predicted, truth = np.asarray(predicted), np.asarray(truth)
    if predicted.shape != truth.shape:
        raise ValueError(f"prediction shape {predicted.shape} != truth shape {truth.shape}")
    if predicted.size == 0:
        return float("nan")
    equal = predicted == truth
    if equal.ndim > 1:
        equal = equal.all(axis=tuple(range(1, equal.ndim)))
    return float(equal.mean())


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % (``z`` = 1.96) Wilson score interval of a share: honest at 100 % and on small sets, where the
    normal approximation claims certainty it does not have (0 of 500 differing still allows 0.77 %)."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def char_accuracy(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Share of equal characters over all positions of (N, L) character ids."""
    return float((np.asarray(predicted) == np.asarray(truth)).mean())


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance between two short strings."""
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def char_error_rate(predicted_words: list[str], reference_words: list[str], pad: str = labels.PAD) -> float:
    """Total edit distance over total reference length, pads stripped (e.g. "twoPP" -> "two")."""
    errors = sum(edit_distance(p.rstrip(pad), r.rstrip(pad)) for p, r in zip(predicted_words, reference_words))
    total = sum(len(r.rstrip(pad)) for r in reference_words)
    return errors / total if total else float("nan")


def confusion_matrix(truth: np.ndarray, predicted: np.ndarray, n_classes: int = 10) -> np.ndarray:
    """(n_classes, n_classes + 1) counts; the last column counts predictions outside 0..n-1 (e.g. -1)."""
    truth, predicted = np.asarray(truth, dtype=np.int64), np.asarray(predicted, dtype=np.int64)
    predicted = np.where((predicted >= 0) & (predicted < n_classes), predicted, n_classes)
    matrix = np.zeros((n_classes, n_classes + 1), dtype=np.int64)
    np.add.at(matrix, (truth, predicted), 1)
    return matrix


def spelled_digits(words: list[str]) -> np.ndarray:
    """Digit named by each padded word, -1 where the word is not one of the ten names."""
    return np.array([d if (d := labels.word_to_digit(w)) is not None else -1 for w in words], dtype=np.int64)


def score_outputs(kind: str, probs: np.ndarray, digits: np.ndarray) -> dict:
    """Test metrics of a model's outputs against true digits, for ``kind`` "classify" or "spell".

    probs: (N, 10) for classify, (N, 5, 16) for spell. Returns plain floats and the predictions.
    """
    digits = np.asarray(digits)
    if kind == "classify":
        predicted = probs.argmax(axis=-1)
        return {"accuracy": accuracy(predicted, digits), "predicted_digits": predicted}
    if kind == "spell":
        char_ids = probs.argmax(axis=-1)  # (N, 5)
        words = labels.decode_words(char_ids)
        truth_ids = labels.encode_words(digits)
        return {
            "word_accuracy": accuracy(char_ids, truth_ids),
            "char_accuracy": char_accuracy(char_ids, truth_ids),
            "char_error_rate": char_error_rate(words, labels.decode_words(truth_ids)),
            "predicted_digits": spelled_digits(words),
            "predicted_words": words,
        }
    raise ValueError(f"unknown output kind {kind!r}; valid: classify, spell")
