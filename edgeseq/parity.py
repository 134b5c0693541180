"""How far an artifact's outputs are from the Keras original's: agreement, accuracy delta, output error,
and the verdict against :class:`~edgeseq.formats.Thresholds`. numpy only."""

from __future__ import annotations

import numpy as np

from edgeseq import labels, metrics
from edgeseq.formats import Quant, Thresholds


def compare(kind: str, outputs: np.ndarray, reference: np.ndarray, digits: np.ndarray) -> dict:
    """Artifact ``outputs`` against Keras ``reference`` outputs (same shape) and the true ``digits``.

    classify: (N, 10); spell: (N, 5, 16). Agreement is top-1 (classify) or the exact word (spell).
    """
    if outputs.shape != reference.shape:
        raise ValueError(f"artifact outputs {outputs.shape} do not match the reference's {reference.shape}")
    ids, ref_ids = outputs.argmax(axis=-1), reference.argmax(axis=-1)
    truth = labels.encode_words(digits) if kind == "spell" else np.asarray(digits)
    diff = np.abs(outputs.astype(np.float64) - reference.astype(np.float64))
    result = {
        "examples": int(len(outputs)),
        "agreement": metrics.accuracy(ids, ref_ids),
        "accuracy": metrics.accuracy(ids, truth),
        "keras_accuracy": metrics.accuracy(ref_ids, truth),
        "max_abs_diff": float(diff.max()) if diff.size else 0.0,
        "mean_abs_diff": float(diff.mean()) if diff.size else 0.0,
    }
    result["accuracy_delta"] = result["accuracy"] - result["keras_accuracy"]
    same = int(round(result["agreement"] * len(outputs)))
    result["agreement_low"], result["agreement_high"] = metrics.wilson_interval(same, len(outputs))
    if kind == "spell":
        words, ref_words = labels.decode_words(ids), labels.decode_words(ref_ids)
        result["char_agreement"] = metrics.char_accuracy(ids, ref_ids)
        result["char_error_rate"] = metrics.char_error_rate(words, labels.decode_words(truth))
        result["char_error_rate_vs_keras"] = metrics.char_error_rate(words, ref_words)
    return result


DECISIVE_SET = 10_000  # export judges on the 10k test set; on a smaller one a miss may be the set's, not the artifact's


def judge(quant: Quant | str, parity: dict, coverage: dict | None, thresholds: Thresholds) -> list[str]:
    """Why an artifact fails its thresholds, one reason each with the numbers; empty when it passes.

    The verdict is the point estimate's, as at export. On a set smaller than export's (``verify
    --images``, a short reference slice) an agreement miss whose 95 % interval still holds the bar says
    it is inconclusive there, so a quick check is not read as proof either way."""
    limits = thresholds.for_quant(Quant(quant))
    reasons = []
    agreement = parity["agreement"]
    if agreement < limits["min_agreement"]:
        disagree = round((1 - agreement) * parity["examples"])
        reason = f"agreement {agreement:.2%} < {limits['min_agreement']:.2%} ({disagree} of {parity['examples']} differ)"
        if parity["examples"] < DECISIVE_SET and parity.get("agreement_high", 0.0) >= limits["min_agreement"]:
            reason += (f"; inconclusive on {parity['examples']:,} images: the 95 % interval "
                       f"{parity['agreement_low']:.2%}-{parity['agreement_high']:.2%} holds the bar (verify on more)")
        reasons.append(reason)
    if "max_abs_diff" in limits and parity["max_abs_diff"] > limits["max_abs_diff"]:
        reasons.append(f"max |diff| {parity['max_abs_diff']:.2e} > {limits['max_abs_diff']:.0e}")
    if "max_accuracy_drop" in limits and -parity["accuracy_delta"] > limits["max_accuracy_drop"] + 1e-12:
        reasons.append(f"accuracy drop {-parity['accuracy_delta'] * 100:.2f} pts > {limits['max_accuracy_drop'] * 100:.1f}")
    if "min_int8_mac_share" in limits:
        share = (coverage or {}).get("int8_mac_share")
        if share is None:
            reasons.append("int8 coverage unknown")
        elif share < limits["min_int8_mac_share"]:
            reasons.append(f"only {share:.1%} of MACs in int8 < {limits['min_int8_mac_share']:.0%}")
    return reasons


SMALLER_BY = 0.5  # an integer artifact must be at most this share of its format's fp32 size to be worth having
SPEED_SLACK = 1.05  # batch-1 timer noise: within 5 % of the fp32 latency counts as not slower


def worth_flags(size_vs_fp32: float | None, p50_vs_fp32: float | None, size_why: str | None = None) -> list[str]:
    """Why an int8 or dynamic artifact is not worth having over its format's fp32 one (empty when it is):
    slower than fp32 (latencies timed side by side), or not at least 2x smaller (``size_why``, from
    :func:`size_parts`, says what keeps it large)."""
    found = []
    if p50_vs_fp32 is not None and p50_vs_fp32 > SPEED_SLACK:
        found.append(f"slower than fp32: {p50_vs_fp32:.2f}x its latency at batch 1")
    if size_vs_fp32 is not None and size_vs_fp32 > SMALLER_BY:
        found.append(f"not 2x smaller than fp32: {size_vs_fp32:.2f}x its size" + (f" ({size_why})" if size_why else ""))
    return found


def size_floor(fp32, fp32_bytes: int) -> float:
    """The smallest share of a fp32 file (its :class:`~edgeseq.schema.Storage`) that an artifact of the same
    graph can take with 8-bit weights: every float weight one byte, no names, no quantization parameters,
    everything else as it is (biases stay 32-bit)."""
    return (fp32_bytes - fp32.weights_float + fp32.float_weight_elements - fp32.names) / fp32_bytes


def size_parts(storage, fp32, fp32_bytes: int) -> str:
    """What keeps an integer artifact large, in shares of its format's fp32 file (both as
    :class:`~edgeseq.schema.Storage`): its float weights, quantization parameters and graph, and the floor
    that 8-bit weights allow (:func:`size_floor`), e.g. "float weights 12 %, quantization parameters 18 %,
    graph 15 % of fp32's size; 8-bit weights allow 0.34x"."""
    parts = [("float weights", storage.weights_float), ("integer weights", storage.weights_integer),
             ("quantization parameters", storage.quantization), ("graph", storage.graph)]
    shown = ", ".join(f"{what} {size / fp32_bytes:.0%}" for what, size in parts if size / fp32_bytes >= 0.05)
    return f"{shown or 'no part over 5 %'} of fp32's size; 8-bit weights allow {size_floor(fp32, fp32_bytes):.2f}x"


def size_why(entry, fp32) -> str | None:
    """:func:`size_parts` of an integer manifest entry against its format's fp32 entry, when both
    were measured (bundles exported before edgeseq recorded storage have none)."""
    if entry is None or fp32 is None or entry.storage is None or fp32.storage is None or not fp32.bytes:
        return None
    return size_parts(entry.storage, fp32.storage, fp32.bytes)
