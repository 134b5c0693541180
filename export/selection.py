"""Choosing between int8 recipe candidates: agreement with the Keras model on held-out training images
(never calibration images, never the test set), at batch 1 as a device runs them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

SOURCE = "held-out training images (not calibration, not test)"


def reference(model, images: np.ndarray | None) -> tuple | None:
    """(images, Keras outputs) to score candidates against; None when there are no images."""
    if images is None or not len(images):
        return None
    return images, np.asarray(model(images, training=False))


def score(path: Path, reference: tuple) -> tuple[float, float]:
    """(top-1 or exact-sequence agreement, mean |output difference|) against the Keras outputs, at batch 1."""
    from edgeseq.runtimes import open_runner

    images, expected = reference
    outputs = open_runner(path, threads=1).run(images, batch=1).reshape(expected.shape)
    same = outputs.argmax(axis=-1) == expected.argmax(axis=-1)
    return float(same.reshape(len(same), -1).all(axis=1).mean()), float(np.abs(outputs - expected).mean())


def choose(candidates: dict[str, Path], reference: tuple | None, preferred: str) -> tuple[str, dict]:
    """The candidate with the highest agreement, and the selection record.

    A few hundred images resolve agreement only to a few tenths of a percent, so ties go to the smaller
    mean output error (which tracks agreement on the test set far more finely), then to ``preferred``.
    """
    if reference is None:
        return preferred, {}
    scores = {name: score(path, reference) for name, path in candidates.items()}
    chosen = max(scores, key=lambda n: (round(scores[n][0], 4), -scores[n][1], n == preferred))
    return chosen, {"selection": {"images": len(reference[0]), "source": SOURCE,
                                  "agreement": {n: round(a, 4) for n, (a, _) in scores.items()},
                                  "mean_abs_diff": {n: float(f"{e:.3g}") for n, (_, e) in scores.items()},
                                  "chosen": chosen}}
