"""Digit-name vocabulary and the numpy metrics shared by evaluate, verify, bench and webcam."""

import numpy as np
import pytest

from edgeseq import labels, metrics


def test_vocabulary_spells_every_digit_in_five_characters():
    assert labels.VOCAB[0] == labels.PAD and len(labels.VOCAB) == 16
    assert labels.PADDED_WORDS[2] == "twoPP" and labels.PADDED_WORDS[7] == "seven"
    ids = labels.encode_words(np.arange(10))
    assert ids.shape == (10, 5)
    assert labels.decode_words(ids) == labels.PADDED_WORDS
    assert [labels.word_to_digit(w) for w in labels.PADDED_WORDS] == list(range(10))
    assert labels.word_to_digit("twoPe") is None


def test_accuracy_counts_whole_words():
    truth = labels.encode_words(np.array([1, 2, 3]))
    predicted = truth.copy()
    predicted[1, 4] = 5  # one wrong character in the second word
    assert metrics.accuracy(predicted, truth) == pytest.approx(2 / 3)
    assert metrics.char_accuracy(predicted, truth) == pytest.approx(14 / 15)
    with pytest.raises(ValueError, match="shape"):
        metrics.accuracy(predicted[:2], truth)


def test_edit_distance_and_char_error_rate():
    assert metrics.edit_distance("seven", "sevn") == 1
    assert metrics.edit_distance("", "two") == 3
    # "onePP" vs "oneeP": one insertion over three reference characters; "six" exact.
    assert metrics.char_error_rate(["oneeP", "sixPP"], ["onePP", "sixPP"]) == pytest.approx(1 / 6)


def test_confusion_matrix_has_an_other_column():
    matrix = metrics.confusion_matrix(np.array([0, 1, 1, 2]), np.array([0, 1, -1, 7]))
    assert matrix.shape == (10, 11)
    assert matrix[0, 0] == 1 and matrix[1, 1] == 1 and matrix[1, 10] == 1 and matrix[2, 7] == 1
    assert matrix.sum() == 4


def test_score_outputs_for_both_kinds():
    digits = np.array([3, 8])
    probs = np.eye(10, dtype=np.float32)[[3, 1]]
    assert metrics.score_outputs("classify", probs, digits)["accuracy"] == 0.5
    spelled = np.eye(16, dtype=np.float32)[labels.encode_words(np.array([3, 9]))]  # (2, 5, 16)
    scores = metrics.score_outputs("spell", spelled, digits)
    assert scores["word_accuracy"] == 0.5 and scores["predicted_words"] == ["three", "nineP"]
    assert list(scores["predicted_digits"]) == [3, 9]
    with pytest.raises(ValueError, match="unknown output kind"):
        metrics.score_outputs("regress", probs, digits)


def test_report_says_when_a_quantized_artifact_is_not():
    from edgeseq.report import verify_row

    base = {"id": "onnx-dynamic", "quant": "dynamic", "bytes": 1000, "passed": True, "parity": {}}
    assert verify_row({**base, "coverage": {"int8_mac_share": 0.0}})[-1] == "PASS (not quantized)"
    assert verify_row({**base, "coverage": {"int8_mac_share": 0.99}})[-1] == "PASS"
    assert verify_row({**base, "quant": "fp32", "coverage": {"int8_mac_share": 0.0}})[-1] == "PASS"
