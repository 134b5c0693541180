"""Accuracy-aware int8: candidates in order of cost, measured on held-out images, until one holds.

Each format's recipe (:mod:`edgeseq.export.tflite`, :mod:`edgeseq.export.onnx`) proposes candidates in
stages, cheapest first: its standard recipes, then other range settings, cross-layer equalization
(:mod:`edgeseq.export.equalize`) and 16-bit activations where the format has them, then float fallback of the
fewest, most sensitive layers. Every candidate is measured here the same way, on held-out training
images (never calibration images, never the test set), at batch 1 as a device runs it:

- agreement with the Keras model (top-1, or exact sequence) and the accuracy change on those images,
  and agreement on camera-like copies of some of them (:mod:`edgeseq.camera_like`), which must reach
  :data:`CAMERA_TARGET`;
- the share of its multiply-accumulates that run on integer kernels;
- its size and its median latency, each against the fp32 artifact of the same format, timed side by
  side in this process (rounds alternate between the two, so a slow spell hits both).

The search stops at the first stage that has a candidate meeting the target within :data:`TOO_SLOW`
times fp32's latency. Among those, the winner is the one that keeps at least :data:`INTEGER_FLOOR` of its MACs integer, then the one worth having (not
slower than fp32, at least 2x smaller), then the one that also agrees on :data:`CAMERA_GOAL` of the
camera-like images, then the most integer arithmetic, then the fastest.
When no stage reaches the target within that latency, the closest candidate within it is kept (a slower
one that met the target is not the int8) and the record says why.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, NamedTuple

import numpy as np

from edgeseq.export import rewrite
from edgeseq.export.coverage import MAC_OP_TYPES
from edgeseq.parity import worth_flags

TARGET_AGREEMENT = 0.995
# On the camera-like part of the selection (edgeseq.camera_like): digits nearer the decision boundaries,
# where int8 of the seed LSTM agreed 87-90 % until its gates and cell state stayed float (97 %).
CAMERA_TARGET = 0.97
# Among candidates that meet the target, one that also agrees on this share of the camera-like images is
# preferred to a faster one (benchmarks/int8_robustness.py holds the zoo rnn and lstm to 99 % on distorted
# digits): on the zoo rnn's onnx-int8, uint8 per-tensor weights (97.4 % camera-like) ran 1.06x fp32 and
# int8 weights rounded by output error (99.0 %) 1.20x; the faster one won before.
CAMERA_GOAL = 0.99
MAX_ACCURACY_DROP = 0.003  # a fraction: 0.3 percentage points
INTEGER_FLOOR = 0.90
MARGIN_SE = 1.0  # agreement must clear the target by this many standard errors (see Scorer.meets)
MIN_INTEGER = 0.5  # below this share of integer MACs a candidate is a float model, whatever its agreement
TOO_SLOW = 2.0  # a candidate more than this many times fp32's latency meets the target but ends no stage
SOURCE = "held-out training images (not calibration, not test), and camera-like copies of some of them"


@dataclass(frozen=True)
class Target:
    agreement: float = TARGET_AGREEMENT
    max_accuracy_drop: float = MAX_ACCURACY_DROP
    integer_mac_share: float = INTEGER_FLOOR

    def record(self) -> dict:
        return {"agreement": self.agreement, "max_accuracy_drop": self.max_accuracy_drop,
                "integer_mac_share": self.integer_mac_share}


@dataclass
class Selection:
    """Held-out images, their labels and the Keras model's outputs on them."""

    images: np.ndarray
    outputs: np.ndarray
    labels: np.ndarray | None = None
    camera_from: int | None = None  # images from here on are camera-like renderings; the clean ones before

    @classmethod
    def of(cls, model, images: np.ndarray | None, labels: np.ndarray | None = None,
           camera_from: int | None = None) -> "Selection | None":
        if images is None or not len(images):
            return None
        outputs = np.asarray(model(images, training=False))
        return cls(np.asarray(images, np.float32), outputs, _truth(labels, outputs), camera_from)

    @property
    def clean(self) -> slice:
        return slice(0, self.camera_from if self.camera_from else len(self.images))

    def __len__(self) -> int:
        return len(self.images)


def _truth(labels: np.ndarray | None, outputs: np.ndarray) -> np.ndarray | None:
    """Digit labels in the form the model predicts: digits, or character ids of the digit's name."""
    if labels is None:
        return None
    labels = np.asarray(labels)
    if outputs.ndim == 2:
        return labels
    if outputs.ndim == 3:
        from edgeseq.labels import encode_words

        words = encode_words(labels)
        return words if words.shape == outputs.shape[:2] else None
    return None


def _top1(outputs: np.ndarray) -> np.ndarray:
    return outputs.argmax(axis=-1)


def _accuracy(predicted: np.ndarray, truth: np.ndarray) -> float:
    equal = predicted == truth
    return float(equal.reshape(len(equal), -1).all(axis=1).mean())


class Agreement(NamedTuple):
    """A candidate against Keras on the selection: top-1 agreement on its clean MNIST part (the target's,
    and what verify measures), on its camera-like part, and on all of it; output error; accuracy change on
    the clean part."""

    clean: float
    camera: float | None
    overall: float
    mean_abs_diff: float
    accuracy_delta: float | None


@dataclass
class Candidate:
    """One int8 candidate as measured (see :meth:`Scorer.measure`)."""

    name: str
    stage: str
    path: Path
    agreement: float
    mean_abs_diff: float
    accuracy_delta: float | None
    integer_mac_share: float
    bytes: int
    size_vs_fp32: float
    p50_ms: float
    fp32_p50_ms: float
    float_layers: list[str] = field(default_factory=list)
    meets_target: bool = False
    worth_having: bool = False
    camera_agreement: float | None = None  # on the camera-like part of the selection

    @property
    def p50_vs_fp32(self) -> float:
        return self.p50_ms / self.fp32_p50_ms if self.fp32_p50_ms > 0 else float("inf")

    def record(self) -> dict:
        return {"name": self.name, "stage": self.stage, "agreement": round(self.agreement, 5),
                "accuracy_delta": None if self.accuracy_delta is None else round(self.accuracy_delta, 5),
                "mean_abs_diff": float(f"{self.mean_abs_diff:.3g}"),
                "integer_mac_share": round(self.integer_mac_share, 4), "bytes": self.bytes,
                "size_vs_fp32": round(self.size_vs_fp32, 3), "p50_ms": round(self.p50_ms, 4),
                "p50_vs_fp32": round(self.p50_vs_fp32, 3), "float_layers": self.float_layers,
                "meets_target": self.meets_target, "worth_having": self.worth_having,
                "camera_agreement": None if self.camera_agreement is None else round(self.camera_agreement, 5)}


class Scorer:
    """Measures candidates of one format against its fp32 artifact on a :class:`Selection`."""

    def __init__(self, selection: Selection, fp32_path: Path, coverage: Callable[[Path], dict],
                 target: Target = Target(), timing_rounds: int = 5, round_seconds: float = 0.005):
        self.selection, self.fp32_path, self.coverage, self.target = selection, Path(fp32_path), coverage, target
        self.rounds, self.round_seconds = timing_rounds, round_seconds
        self.fp32_bytes = self.fp32_path.stat().st_size
        self.keras_top1 = _top1(selection.outputs)
        clean = selection.clean
        self.keras_accuracy = (_accuracy(self.keras_top1[clean], selection.labels[clean])
                               if selection.labels is not None else None)

    def agreement(self, path: Path) -> Agreement:
        """How ``path`` agrees with Keras on the selection images (see :class:`Agreement`)."""
        from edgeseq.runtimes import open_runner

        expected = self.selection.outputs
        outputs = open_runner(path, threads=1).run(self.selection.images, batch=1).reshape(expected.shape)
        top1 = _top1(outputs)
        same = (top1 == self.keras_top1).reshape(len(top1), -1).all(axis=1)
        clean = self.selection.clean
        delta = (_accuracy(top1[clean], self.selection.labels[clean]) - self.keras_accuracy
                 if self.keras_accuracy is not None else None)
        camera = float(same[clean.stop:].mean()) if clean.stop < len(same) else None
        return Agreement(float(same[clean].mean()), camera, float(same.mean()),
                         float(np.abs(outputs - expected).mean()), delta)

    def latency(self, path: Path) -> tuple[float, float]:
        """(p50 ms of ``path``, p50 ms of fp32) at batch 1, one thread, rounds alternating between them."""
        from edgeseq.bench import side_by_side
        from edgeseq.runtimes import open_runner

        x = self.selection.images[:1]
        steps = [open_runner(p, threads=1).stepper(x) for p in (path, self.fp32_path)]
        ours, fp32 = side_by_side(steps, rounds=self.rounds, round_seconds=self.round_seconds)
        return float(np.median(ours) / 1e6), float(np.median(fp32) / 1e6)

    def measure(self, name: str, stage: str, path: Path, float_layers: Iterable[str] = ()) -> Candidate:
        found = self.agreement(path)
        agreement, error, delta = found.clean, found.mean_abs_diff, found.accuracy_delta
        coverage = self.coverage(path)
        p50, fp32_p50 = self.latency(path)
        size = path.stat().st_size
        candidate = Candidate(name, stage, path, agreement, error, delta, float(coverage.get("int8_mac_share", 0.0)),
                              size, size / self.fp32_bytes, p50, fp32_p50, list(float_layers),
                              camera_agreement=found.camera)
        candidate.meets_target = self.meets(candidate)
        candidate.worth_having = not worth_flags(candidate.size_vs_fp32, candidate.p50_vs_fp32)
        return candidate

    def meets(self, c: Candidate) -> bool:
        """Agreement and accuracy within the target, on a graph that is mostly integer (the integer floor
        and speed are weighed by :func:`rank`, not required). Agreement must clear the target by one
        standard error of its estimate on this many images: 99.5 % measured on 2,000 images is as likely
        99.3 % on the next 10,000 (on 5,000, 99.4 %)."""
        n = max(self.selection.clean.stop, 1)
        lower = c.agreement - MARGIN_SE * math.sqrt(max(c.agreement * (1 - c.agreement), 0.0) / n)
        drop_ok = c.accuracy_delta is None or c.accuracy_delta >= -self.target.max_accuracy_drop
        camera_ok = c.camera_agreement is None or c.camera_agreement >= CAMERA_TARGET
        return lower >= self.target.agreement and drop_ok and camera_ok and c.integer_mac_share >= MIN_INTEGER


def acceptable(c: Candidate) -> bool:
    """Meets the target at a speed a device user would take: at most :data:`TOO_SLOW` times fp32's latency
    (a 16x8 TFLite graph came closest to the target at 43x and 66x fp32's latency on two models of
    benchmarks/int8_robustness.py, which then kept it). The search goes on to its next stage until a candidate is acceptable."""
    return c.meets_target and c.p50_vs_fp32 <= TOO_SLOW


def rank(c: Candidate, target: Target, slow_limit: float = TOO_SLOW) -> tuple:
    """Sort key, best last. First no slower than ``slow_limit`` times fp32: a candidate past it is never the
    int8, even when it alone meets the target (residual-separable's 16x8 graph met it at 39x fp32's
    latency in benchmarks/int8_robustness.py and was kept over int8 graphs at 1x). Then, among candidates
    meeting the target: the integer floor, worth having, :data:`CAMERA_GOAL` on the camera-like images,
    integer share, speed, then fit. Among the others: the closest to the target, still mostly integer."""
    quick = c.p50_vs_fp32 <= slow_limit
    if c.meets_target:
        camera_goal = c.camera_agreement is None or c.camera_agreement >= CAMERA_GOAL
        return (quick, 2, c.integer_mac_share >= target.integer_mac_share, c.worth_having, camera_goal,
                round(c.integer_mac_share, 2), -round(c.p50_vs_fp32, 1), round(c.agreement, 3), -c.mean_abs_diff)
    short = max(0.0, target.agreement - c.agreement) + max(0.0, CAMERA_TARGET - (c.camera_agreement or 1.0))
    return (quick, 0, c.integer_mac_share >= MIN_INTEGER, c.integer_mac_share >= target.integer_mac_share,
            -round(short, 3), round(c.agreement, 3), round(c.integer_mac_share, 2), -c.mean_abs_diff, c.worth_having)


def best(candidates: list[Candidate], target: Target) -> Candidate:
    """The winner by :func:`rank`. The speed limit is :data:`TOO_SLOW` times fp32, or that many times the
    fastest candidate where every one is slower than fp32 (a CPU whose int8 convolutions are slower than
    its float ones), so a 40x-slower graph never wins on a fraction of a point of agreement."""
    limit = speed_limit(candidates)
    return max(candidates, key=lambda c: rank(c, target, limit))


def speed_limit(candidates: list[Candidate]) -> float:
    return TOO_SLOW * max(1.0, min(c.p50_vs_fp32 for c in candidates))


def why(chosen: Candidate, candidates: list[Candidate], target: Target) -> str:
    """One sentence: why ``chosen`` won, or why nothing met the target."""
    if not chosen.meets_target:
        limit = speed_limit(candidates)
        slower = [c for c in candidates if c.p50_vs_fp32 > limit]
        within = f" within {limit:.1f}x fp32's latency ({len(slower)} slower left out)" if slower and chosen.p50_vs_fp32 <= limit else ""
        too_slow = [c for c in slower if c.meets_target]
        fastest = min(too_slow, key=lambda c: c.p50_vs_fp32, default=None)
        goal = f"{target.agreement:.1%} agreement with at most {target.max_accuracy_drop * 100:.1f} pts accuracy drop"
        reached = (f"no candidate within {limit:.1f}x fp32's latency reached {goal}; {len(too_slow)} slower "
                   f"did (the fastest, {fastest.name}, at {fastest.p50_vs_fp32:.1f}x)" if fastest else
                   f"no candidate reached {goal}")
        return f"{reached}; kept the closest{within}: {chosen.name} ({chosen.agreement:.2%})"
    meeting = [c for c in candidates if c.meets_target]
    parts = [f"meets the target ({chosen.agreement:.2%} agreement)"]
    if len(meeting) > 1:
        parts.append(f"best of {len(meeting)} that do on integer share ({chosen.integer_mac_share:.1%}), "
                     f"speed ({chosen.p50_vs_fp32:.2f}x fp32) and size ({chosen.size_vs_fp32:.2f}x)")
    if chosen.float_layers:
        parts.append(f"left float: {', '.join(chosen.float_layers)}")
    flags = worth_flags(chosen.size_vs_fp32, chosen.p50_vs_fp32)
    if flags:
        parts.append("not worth having over fp32: " + "; ".join(flags))
    return "; ".join(parts)


@dataclass
class Layer:
    """A Keras layer as the converted graph has it: every op it became (an unrolled cell's steps, its bias,
    its activation, the softmax inside an attention layer)."""

    label: str  # the Keras layer's name
    nodes: list[str]  # what the format's quantizer is told to leave float (ORT node names, TFLite tensors)
    op: str
    macs: int
    share: float = 0.0  # of all the graph's MACs, those of ops no layer owns included


Build = Callable[[str, list[str]], Path]  # (candidate name, layers left float) -> artifact path


@dataclass
class Search:
    """One format's int8 search: candidates measured as they are built, stage by stage."""

    scorer: Scorer
    build: Build | None = None  # set before the fallback: its starting recipe with the named layers left float
    layers: list[Layer] = field(default_factory=list)
    candidates: list[Candidate] = field(default_factory=list)
    sensitivity: dict | None = None
    family: str = ""  # the candidate the fallback starts from: its name prefixes the fallback's names
    # Other starting points that get the same float layers at each fallback step (name prefix -> build):
    # which is best around a float layer differs (e.g. a float layer can stop a runtime's fusion).
    alternatives: dict[str, Build] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # remedies that could not be built, and why
    # op types whose MACs an alternative keeps integer when their layer is left float (TFLite's hybrid
    # FULLY_CONNECTED): such a layer costs no integer share, so even the main cell of a model may be tried
    hybrid_ops: tuple[str, ...] = ()

    @property
    def target(self) -> Target:
        return self.scorer.target

    def stage(self, stage: str, built: dict[str, Path]) -> bool:
        """Measure a stage's candidates; True when one of them is :func:`acceptable`."""
        for name, path in built.items():
            self.candidates.append(self.scorer.measure(name, stage, path))
        return any(acceptable(c) for c in self.candidates if c.stage == stage)

    def measure_sensitivity(self) -> list[dict]:
        """Per layer: agreement and output error with only that layer left float, against all-int8."""
        base = self.scorer.agreement(self.build("all int8", []))  # ranked on the whole selection
        rows = []
        for layer in self.layers:
            found = self.scorer.agreement(self.build(f"only {layer.label} float", [layer.label]))
            agreement, error = found.overall, found.mean_abs_diff
            rows.append({"layer": layer.label, "op": layer.op, "mac_share": round(layer.share, 4),
                         "agreement_only_it_float": round(agreement, 5),
                         "mean_abs_diff_only_it_float": float(f"{error:.3g}"),
                         "agreement_gain": round(agreement - base.overall, 5),
                         "error_gain": float(f"{base.mean_abs_diff - error:.3g}")})
        self.sensitivity = {"all_int8": {"agreement": round(base.overall, 5),
                                         "mean_abs_diff": float(f"{base.mean_abs_diff:.3g}")},
                            "layers": rows}
        return rows

    def fallback(self, max_layers: int | None = None) -> bool:
        """Leave the most sensitive layers float, one more at a time, until the target holds.

        The first pick is the layer that regains the most alone. Each later pick is measured on top of
        the ones already float (greedy): a layer that breaks a model on its own hides what the others
        cost, so the one-at-a-time ranking says little about the second layer."""
        rows = self.measure_sensitivity()
        share = {r["layer"]: 0.0 if r["op"] in self.hybrid_ops else r["mac_share"] for r in rows}
        # most agreement regained first; output error regained breaks ties; cheaper layers first after that
        remaining = [r["layer"] for r in sorted(rows, key=lambda r: (-r["agreement_gain"], -r["error_gain"], r["mac_share"]))]
        chosen: list[str] = []
        while remaining and len(chosen) < (max_layers or len(rows)):
            remaining = [label for label in remaining if sum(share[x] for x in chosen) + share[label] <= 1 - MIN_INTEGER]
            if not remaining:
                break  # leaving more float would make it a float model
            if chosen and len(remaining) > 1:
                remaining = self._rerank(chosen, remaining, share)
            chosen.append(remaining.pop(0))
            if self._fallback_step(chosen):
                return True
        return False

    def _rerank(self, chosen: list[str], remaining: list[str], share: dict[str, float]) -> list[str]:
        """``remaining`` ordered by the agreement each reaches when left float together with ``chosen``."""
        scored = {}
        for label in remaining:
            found = self.scorer.agreement(self.build(f"{', '.join(chosen)} and {label} float",
                                                                   chosen + [label]))
            scored[label] = (-found.overall, found.mean_abs_diff, share[label])
        return sorted(remaining, key=lambda label: scored[label])

    def _fallback_step(self, chosen: list[str]) -> bool:
        """Measure ``chosen`` left float from every starting point; True when one is :func:`acceptable`."""
        what = f"{len(chosen)} layer{'s' if len(chosen) > 1 else ''} float: {', '.join(chosen)}"
        met = False
        for prefix, build in {self.family: self.build, **self.alternatives}.items():
            name = f"{prefix} + {what}" if prefix else what
            c = self.scorer.measure(name, "float fallback", build(name, list(chosen)), float_layers=list(chosen))
            self.candidates.append(c)
            met = met or acceptable(c)
        return met

    def result(self) -> tuple[Candidate, dict]:
        chosen = best(self.candidates, self.target)
        clean = self.scorer.selection.clean.stop
        record = {"images": clean, "camera_like_images": len(self.scorer.selection) - clean, "source": SOURCE, "target": self.target.record(),
                  "fp32_p50_ms": round(float(np.median([c.fp32_p50_ms for c in self.candidates])), 4),
                  "candidates": [c.record() for c in self.candidates], "chosen": chosen.name,
                  "why": why(chosen, self.candidates, self.target)}
        if self.sensitivity is not None:
            record["sensitivity"] = {**self.sensitivity, "left_float": chosen.float_layers}
        if self.skipped:
            record["skipped"] = list(self.skipped)
        return chosen, record


@dataclass
class KerasLayers:
    """What a graph's ops are matched against: every layer's name, and the kernels of weighted ones."""

    names: set[str]
    kernels: list[tuple[str, np.ndarray]]

    @classmethod
    def of(cls, model) -> "KerasLayers":
        names, kernels = set(), []
        for layer in _leaf_layers(model):
            names.add(layer.name)
            matrices = [np.asarray(w) for w in layer.weights if len(w.shape) >= 2 and np.prod(w.shape) >= 4]
            kernels += [(layer.name, value) for value in matrices]
            if len(matrices) > 1:  # a recurrent cell whose kernel and recurrent kernel one MatMul holds
                kernels.append((layer.name, np.concatenate([m.ravel() for m in matrices])))
        return cls(names, kernels)

    def owner(self, op_name: str, kernel: np.ndarray | None = None) -> str | None:
        """The Keras layer an op belongs to: the layer whose kernel it holds (any layout), else the layer
        scope its converter gave it (``functional_1/<layer>_1/...``: TensorFlow adds one ``_N``)."""
        if kernel is not None and kernel.ndim >= 2 and kernel.size >= 4:
            for name, value in self.kernels:
                if value.size == kernel.size and _same_values(value, kernel):
                    return name
        match = re.match(r"[^/;]+/([^/;]+)/", op_name)
        if not match:
            return None
        scope = match.group(1)
        bare = re.sub(r"_\d+$", "", scope)
        for candidate in (bare, scope, re.sub(re.escape(rewrite.SUFFIX) + "$", "", bare)):
            if candidate in self.names:
                return candidate
        return None


ELEMENTWISE = " (non-MAC ops)"  # suffix of the fallback unit that is a layer's ops other than its MACs


def group_layers(entries: Iterable[tuple[str, str, str | None, int]]) -> list[Layer]:
    """(node, op type, Keras layer or None, MACs) -> one :class:`Layer` per Keras layer, in the order
    first seen; ops no layer owns (converter-made shape arithmetic) are left to the quantizer.

    A layer that has both MAC ops and others (an LSTM's gates and cell state, an attention layer's
    softmax, a Dense layer's GELU) is also offered as its non-MAC ops alone: leaving those float keeps
    every multiply-accumulate integer (an int8 LSTM cell state is where a quantized LSTM loses)."""
    grouped: dict[str, Layer] = {}
    parts: dict[str, Layer] = {}
    total = 0
    for node, op, label, macs in entries:
        total += macs
        if label is None:
            continue
        layer = grouped.setdefault(label, Layer(label, [], op, 0))
        layer.nodes.append(node)
        if macs and not layer.macs:
            layer.op = op  # a layer is named by its MAC op where it has one
        layer.macs += macs
        if not macs and op not in MAC_OP_TYPES:  # a MatMul whose MACs could not be counted is still one
            part = parts.setdefault(label, Layer(label + ELEMENTWISE, [], op, 0))
            part.nodes.append(node)
    found = []
    for label, layer in grouped.items():
        layer.share = layer.macs / max(total, 1)
        found.append(layer)
        if layer.macs and label in parts:
            found.append(parts[label])
    return found


def _leaf_layers(model):
    for layer in model.layers:
        inner = getattr(layer, "layers", None)
        if inner:
            yield from _leaf_layers(layer)
        else:
            yield layer
            for attr in ("forward_layer", "backward_layer", "cell"):
                sub = getattr(layer, attr, None)
                if sub is not None and getattr(sub, "weights", None):
                    yield sub


def _same_values(kernel: np.ndarray, array: np.ndarray) -> bool:
    a = np.sort(kernel.astype(np.float32).ravel())
    b = np.sort(array.astype(np.float32).ravel())
    return bool(np.allclose(a, b, rtol=1e-5, atol=1e-6))


def markdown(record: dict, fmt: str) -> str:
    """The sensitivity report a person reads: why the model is hard, and what the search chose."""
    lines = [f"# {fmt}: the int8 search and per-layer sensitivity", "",
             f"Measured on {record['images']:,} {record['source']} ({record.get('camera_like_images', 0):,} copies). "
             f"Target: agreement ≥ {record['target']['agreement']:.1%} on the clean images, ≥ {CAMERA_TARGET:.0%} on the "
             f"copies, accuracy drop ≤ {record['target']['max_accuracy_drop'] * 100:.1f} pts.", ""]
    sens = record.get("sensitivity")
    if sens:
        lines += [f"All layers int8: {sens['all_int8']['agreement']:.2%} agreement, mean |Δ| "
                  f"{sens['all_int8']['mean_abs_diff']:.3g}.", "",
                  "| layer | op | MAC share | agreement with only it float | gain | mean abs diff | left float |",
                  "|---|---|---:|---:|---:|---:|---|"]
        for row in sorted(sens["layers"], key=lambda r: -r["agreement_gain"]):
            lines.append(f"| {row['layer']} | {row['op']} | {row['mac_share']:.1%} | {row['agreement_only_it_float']:.2%} "
                         f"| {row['agreement_gain'] * 100:+.2f} pts | {row['mean_abs_diff_only_it_float']:.3g} "
                         f"| {'yes' if row['layer'] in sens['left_float'] else ''} |")
        lines.append("")
    lines += ["## Candidates, in the order tried", "",
              "| candidate | stage | agreement | camera-like | Δacc pts | integer MACs | size vs fp32 | p50 vs fp32 | meets "
              "| worth having |",
              "|---|---|---:|---:|---:|---:|---:|---:|---|---|"]
    for c in record["candidates"]:
        delta = "" if c["accuracy_delta"] is None else f"{c['accuracy_delta'] * 100:+.2f}"
        mark = " **(chosen)**" if c["name"] == record["chosen"] else ""
        camera = "-" if c.get("camera_agreement") is None else f"{c['camera_agreement']:.2%}"
        lines.append(f"| {c['name']}{mark} | {c['stage']} | {c['agreement']:.2%} | {camera} | {delta} "
                     f"| {c['integer_mac_share']:.1%} "
                     f"| {c['size_vs_fp32']:.2f}x | {c['p50_vs_fp32']:.2f}x | {'yes' if c['meets_target'] else 'no'} "
                     f"| {'yes' if c['worth_having'] else 'no'} |")
    lines += ["", f"Chosen: **{record['chosen']}**: {record['why']}.", ""]
    lines += [f"Not tried: {line}." for line in record.get("skipped", [])]
    return "\n".join(lines)


def plot(record: dict, path: Path, title: str) -> Path:
    """Agreement with each layer alone left float (the chosen fallback orange), against all-int8 and the target."""
    from edgeseq import plots

    sens = record["sensitivity"]
    rows = sens["layers"]
    return plots.bars([r["layer"] for r in rows], [r["agreement_only_it_float"] * 100 for r in rows],
                      [r["layer"] in sens["left_float"] for r in rows],
                      {"all int8": sens["all_int8"]["agreement"] * 100, "target": record["target"]["agreement"] * 100},
                      path, title, "agreement with Keras (%)")
