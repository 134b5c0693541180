"""The model card: everything later stages need about a model, without guessing.

Written by ``edgeseq train`` as ``card.json`` beside ``model.keras``; read by evaluate, export, bench
and webcam (no TensorFlow needed to read it). For a user's ``.keras`` file with no card, the output
meaning is inferred from the output shape (:func:`output_spec_for_shape`).
"""

from __future__ import annotations

from pathlib import Path

from edgeseq import labels
from edgeseq.errors import ModelError
from edgeseq.schema import Card, OutputSpec, read_document

SCHEMA = Card.SCHEMA
CARD_NAME = "card.json"

# How a camera frame or an MNIST file becomes a model input (the webcam loop follows this).
PREPROCESSING = {
    "image": "28x28 grayscale, ink bright on a dark background, as MNIST was made: the digit scaled "
    "into a 20x20 box keeping its aspect ratio and centred by its centre of mass",
    "scale": "pixel / 255",
    "dtype": "float32",
    "range": [0.0, 1.0],
    "layout": "(28, 28): rows are time steps for recurrent models; reshaped to the model's input shape",
}


def classify_output() -> dict:
    return {"kind": "classify", "shape": [10], "meaning": "probability of each digit", "labels": labels.DIGITS}


def spell_output() -> dict:
    return {
        "kind": "spell",
        "shape": [labels.WORD_LEN, len(labels.VOCAB)],
        "meaning": "per position, probability of each character of the digit's padded name",
        "vocab": labels.VOCAB,
        "pad": labels.PAD,
        "length": labels.WORD_LEN,
        "words": labels.PADDED_WORDS,
    }


def output_spec_for_shape(shape: tuple) -> OutputSpec:
    """Output meaning of a model with no card, from its output shape (batch dimension excluded)."""
    shape = tuple(int(d) if d is not None else None for d in shape)
    if shape == (10,):
        return OutputSpec(**classify_output())
    if shape == (labels.WORD_LEN, len(labels.VOCAB)):
        return OutputSpec(**spell_output())
    raise ModelError(
        f"cannot tell what output shape {shape} means: expected (10,) digit probabilities or "
        f"({labels.WORD_LEN}, {len(labels.VOCAB)}) character probabilities; add a card.json beside the model"
    )


def find_card(model_path: str | Path) -> Path | None:
    """``card.json`` beside a model file, if there is one."""
    candidate = Path(model_path).parent / CARD_NAME
    return candidate if candidate.is_file() else None


def read_card(path: str | Path) -> Card:
    """``card.json``, validated: a malformed field is one :class:`~edgeseq.errors.DocumentError` line."""
    return read_document(path, Card)
