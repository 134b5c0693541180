"""What the zoo's outputs mean: digit classes, and the character vocabulary of the spelling models.

The ``seq2seq`` model spells a digit's English name in exactly ``WORD_LEN`` characters, padded with
``PAD``: "zeroP", "onePP", ..., "seven". Its vocabulary is the pad followed by the letters that occur in
the ten names, sorted, so index 0 is always the pad.
"""

from __future__ import annotations

import numpy as np

DIGITS = [str(d) for d in range(10)]
DIGIT_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
PAD = "P"
WORD_LEN = 5
VOCAB = PAD + "".join(sorted(set("".join(DIGIT_NAMES))))  # "Pefghinorstuvwxz", 16 symbols
PADDED_WORDS = [name.ljust(WORD_LEN, PAD) for name in DIGIT_NAMES]
_CHAR_INDEX = {c: i for i, c in enumerate(VOCAB)}
_WORD_DIGIT = {w: d for d, w in enumerate(PADDED_WORDS)}


def encode_words(labels: np.ndarray) -> np.ndarray:
    """Digit labels (N,) int -> character ids (N, WORD_LEN) int32 of their padded names."""
    table = np.array([[_CHAR_INDEX[c] for c in w] for w in PADDED_WORDS], dtype=np.int32)  # (10, 5)
    return table[np.asarray(labels, dtype=np.int64)]


def decode_words(char_ids: np.ndarray, vocab: str = VOCAB) -> list[str]:
    """Character ids (N, L) int -> words of length L (pads kept, so "twoPP" stays "twoPP")."""
    chars = np.array(list(vocab))
    return ["".join(row) for row in chars[np.asarray(char_ids)]]


def word_to_digit(word: str) -> int | None:
    """The digit a padded word names, or None when the word is not one of the ten names."""
    return _WORD_DIGIT.get(word)
