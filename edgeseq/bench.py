"""``edgeseq bench``: accuracy and latency of exported artifacts, on the device itself, without TensorFlow.

Latency: warm-up, then a fixed number of timed runs (or a time budget) of one inference each, timed with
``perf_counter_ns`` around nothing but the runtime call (see each runner's ``stepper``). Cold start and
peak memory come from a fresh process (:mod:`edgeseq.coldstart`). Accuracy and agreement reuse
:mod:`edgeseq.parity`, on the test set the bundle carries (see :func:`edgeseq.verify.evaluation_set`).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from edgeseq import __version__, bundle as bundles, metrics, parity
from edgeseq.card import output_spec_for_shape
from edgeseq.data import load_split, locate
from edgeseq.errors import DataError, EdgeseqError, InvalidValueError, ModelError, OutputError
from edgeseq.fingerprint import device, warnings
from edgeseq.runtimes import open_runner
from edgeseq.schema import Artifact, BenchReport, parse_document, read_document, validated, write_document

SCHEMA = "edgeseq.bench/1"
ARTIFACT_SUFFIXES = (".tflite", ".onnx")


@dataclass(frozen=True)
class BenchConfig:
    batch_sizes: tuple[int, ...] = (1,)
    threads: int | None = None
    provider: str | None = None  # ONNX Runtime: cpu, cuda, tensorrt (default: the best available)
    warmup: int = 20
    runs: int = 200
    seconds: float | None = None  # a time budget per artifact and batch size instead of a run count
    cold_start: bool = True
    accuracy: bool = True
    max_spread: float = 0.10  # runs whose robust spread (1.4826 MAD / median) is above this are marked unstable
    raw: bool = False  # keep every timed sample in the report (default: a fixed-size sample of them)

    def __post_init__(self):
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise InvalidValueError(f"batch sizes must be >= 1, got {self.batch_sizes}")
        if self.warmup < 0 or self.runs < 1:
            raise InvalidValueError(f"warmup must be >= 0 and runs >= 1, got {self.warmup} and {self.runs}")
        if self.seconds is not None and not (math.isfinite(self.seconds) and self.seconds > 0):
            raise InvalidValueError(f"seconds must be a finite number > 0, got {self.seconds}")
        if not (math.isfinite(self.max_spread) and self.max_spread >= 0):
            raise InvalidValueError(f"max_spread must be a finite number >= 0, got {self.max_spread}")
        if self.threads is not None and self.threads < 1:
            raise InvalidValueError(f"threads must be >= 1, got {self.threads}")


@dataclass(frozen=True)
class Target:
    """One artifact to bench, with its bundle when it has one (for agreement with Keras)."""

    id: str
    path: Path
    bundle_dir: Path | None
    entry: Artifact | None  # its manifest entry
    quant: str | None = None

    @property
    def format(self) -> str:
        return self.path.suffix.lstrip(".")  # tflite, onnx or keras


def collect_targets(paths: list[str | Path], keras: bool = False) -> list[Target]:
    """Bundle directories expand to their produced artifacts (and, with ``keras``, the Keras original they
    came from, first); a file is benched alone (with its bundle's manifest when it sits in one). Missing
    paths and foreign files are errors naming them; a bundle's artifacts are checked against its manifest
    (size, SHA-256, inside the bundle) before anything runs."""
    targets: list[Target] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise ModelError(f"{path} does not exist")
        if path.is_dir():
            manifest = bundles.read_manifest(path)
            if keras:
                targets.append(Target("keras", bundles.source_model(manifest), path, None, "fp32"))
            for entry, file in zip(manifest.ok_artifacts(), bundles.check_artifacts(path, manifest)):
                targets.append(Target(entry.id, file, path, entry, entry.quant.value))
            continue
        if path.suffix not in ARTIFACT_SUFFIXES:
            raise ModelError(f"{path} is neither a bundle directory nor a .tflite/.onnx artifact")
        entry = None
        if bundles.is_bundle(path.parent):
            manifest = bundles.read_manifest(path.parent)
            entry = next((a for a in manifest.ok_artifacts() if a.file == path.name), None)
            if entry is not None:
                bundles.artifact_path(path.parent, entry)
        targets.append(Target(entry.id if entry else path.name, path, path.parent if entry else None, entry,
                              entry.quant.value if entry else None))
    if not targets:
        raise ModelError("nothing to bench: the bundle has no produced artifacts")
    return targets


def latency_stats(samples_ns: np.ndarray, batch: int) -> dict:
    """Latency statistics in microseconds, and throughput in examples per second."""
    us = np.asarray(samples_ns, dtype=np.float64) / 1e3
    mean = float(us.mean())
    return {
        "runs": int(len(us)), "batch": batch,
        "mean_us": round(mean, 2), "std_us": round(float(us.std()), 2), "min_us": round(float(us.min()), 2),
        "p50_us": round(float(np.percentile(us, 50)), 2), "p90_us": round(float(np.percentile(us, 90)), 2),
        "p99_us": round(float(np.percentile(us, 99)), 2), "max_us": round(float(us.max()), 2),
        "cv": round(float(us.std() / mean), 4) if mean else 0.0,
        **stability(us),
        "throughput_per_s": round(batch * 1e6 / float(np.median(us)), 1),
    }


SAMPLES_KEPT = 2000  # timed samples a report keeps (a bench.json stays small on an SD card); --raw keeps all


def stability(us: np.ndarray) -> dict:
    """Robust spread of latency samples (µs): 1.4826 MAD / median (a robust coefficient of variation, which
    one outlier cannot move) and p99 / p50 (how heavy the tail is)."""
    median = float(np.median(us))
    mad = float(np.median(np.abs(us - median)))
    return {"spread": round(1.4826 * mad / median, 4) if median else 0.0,
            "tail_ratio": round(float(np.percentile(us, 99)) / median, 3) if median else 0.0}


def kept_samples(samples_ns: np.ndarray, raw: bool = False, keep: int = SAMPLES_KEPT) -> dict:
    """What a report keeps of the timed samples: all with ``raw``, else an evenly spread, order-preserving
    selection of ``keep`` (percentiles above are always from every sample), and a log-spaced histogram."""
    us = np.asarray(samples_ns, dtype=np.float64) / 1e3
    chosen = us if raw or len(us) <= keep else us[np.linspace(0, len(us) - 1, keep).round().astype(int)]
    edges = np.geomspace(max(us.min(), 1e-3), max(us.max(), us.min() * 1.001, 1e-3), 41)
    counts, _ = np.histogram(us, bins=edges)
    return {"samples_us": np.round(chosen, 1).tolist(), "samples_total": int(len(us)),
            "histogram_us": {"edges": np.round(edges, 2).tolist(), "counts": counts.astype(int).tolist()}}


def time_step(step: Callable, warmup: int, runs: int, seconds: float | None) -> np.ndarray:
    """Warm up, then time ``step()`` ``runs`` times (or until ``seconds`` have passed): ns per call."""
    for _ in range(warmup):
        step()
    clock = time.perf_counter_ns
    if seconds is None:
        samples = np.empty(runs, dtype=np.int64)
        for i in range(runs):
            start = clock()
            step()
            samples[i] = clock() - start
        return samples
    collected, deadline = [], clock() + int(seconds * 1e9)
    while clock() < deadline:
        start = clock()
        step()
        collected.append(clock() - start)
    return np.asarray(collected, dtype=np.int64)


def side_by_side(steps: list[Callable], rounds: int = 7, round_seconds: float = 0.05, warmup: int = 3) -> list[np.ndarray]:
    """ns per call of each step, timed in rounds that alternate between them (each round about
    ``round_seconds`` per step), so that a slow spell of the machine hits every step alike: for ratios
    measured in one run, not absolute times."""
    clock = time.perf_counter_ns
    per_call = []
    for step in steps:
        for _ in range(warmup):
            step()
        start = clock()
        step()
        per_call.append(max(clock() - start, 1))
    runs = [max(3, min(500, int(round_seconds * 1e9 / ns))) for ns in per_call]
    samples: list[list[int]] = [[] for _ in steps]
    for _ in range(rounds):
        for step, n, times in zip(steps, runs, samples):
            for _ in range(n):
                start = clock()
                step()
                times.append(clock() - start)
    return [np.asarray(times, dtype=np.int64) for times in samples]


def cold_start(target: Target, config: BenchConfig) -> dict:
    """Import + load + first inference, and peak memory, measured in a fresh process."""
    args = [sys.executable, "-m", "edgeseq.coldstart", str(target.path), str(config.threads or ""),
            config.provider or "", "1"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p)))
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1][:200]
        return {"error": f"cold-start process failed ({done.returncode}): {tail}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _accuracy(target: Target, runner, data_dir, cache: dict) -> dict:
    """Agreement with Keras (bundle) and accuracy, at batch 1, on the test set or the reference set."""
    if target.bundle_dir is not None:
        key = str(target.bundle_dir)
        if key not in cache:
            from edgeseq.verify import evaluation_set

            manifest = bundles.read_manifest(target.bundle_dir)
            cache[key] = (manifest.kind,
                          *evaluation_set(manifest, bundles.read_reference(target.bundle_dir, manifest), data_dir))
        kind, images, digits, keras_outputs, described = cache[key]
        outputs = runner.run(images, batch=1).reshape(keras_outputs.shape)
        result = parity.compare(kind, outputs, keras_outputs, digits)
        return {"evaluated_on": described, **{k: result[k] for k in ("examples", "agreement", "accuracy", "keras_accuracy")}}
    try:
        test = load_split("test", source=locate(data_dir, download=False))
    except DataError as exc:
        return {"error": f"no bundle and no MNIST: accuracy not measured ({exc})"}
    outputs = runner.run(test.images, batch=1)
    scores = metrics.score_outputs(output_spec_for_shape(outputs.shape[1:]).kind, outputs, test.labels)
    return {"evaluated_on": f"MNIST test set ({len(test):,} images)", "examples": len(test), "agreement": None,
            "accuracy": scores.get("accuracy", scores.get("word_accuracy")), "keras_accuracy": None}


def bench(paths: list[str | Path], config: BenchConfig | None = None, *, data_dir=None, keras: bool = False,
          on_progress: Callable[[str, int, int], None] | None = None) -> dict:
    """Bench every artifact under ``paths``; returns the report. Ctrl-C returns what was measured so far,
    with ``"interrupted": true``."""
    config = config or BenchConfig()
    targets = collect_targets(paths, keras=keras)
    fingerprint = device()
    report = {
        "schema": SCHEMA, "edgeseq": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": {**config.__dict__, "batch_sizes": list(config.batch_sizes)},
        "device": fingerprint, "warnings": warnings(fingerprint), "interrupted": False, "artifacts": [],
    }
    cache: dict = {}
    try:
        for index, target in enumerate(targets):
            report["artifacts"].append(_bench_one(target, config, data_dir, cache))
            if on_progress:
                on_progress(target.id, index + 1, len(targets))
    except KeyboardInterrupt:
        report["interrupted"] = True
    try:
        if not report["interrupted"]:
            flag_integer_artifacts(report["artifacts"], config, targets)
    except KeyboardInterrupt:
        report["interrupted"] = True
    return report


def flag_integer_artifacts(rows: list[dict], config: BenchConfig | None = None, targets: list[Target] = ()) -> None:
    """Flag each int8/dynamic row slower at batch 1 than its bundle's fp32 artifact of the same format, or
    not 2x smaller (``flags``; the verdict stays the caller's). The two are timed again side by side
    (:func:`side_by_side`, recorded as ``vs_fp32``): latencies measured one artifact after the other can
    differ by more than the int8 gain when the machine changes speed between them."""
    from edgeseq.parity import size_why, worth_flags

    config = config or BenchConfig()
    entries = {(str(t.bundle_dir) if t.bundle_dir else None, t.id): t.entry for t in targets}
    fp32 = {(r.get("bundle"), r["format"]): r for r in rows if r.get("quant") == "fp32" and "error" not in r}
    for row in rows:
        base = fp32.get((row.get("bundle"), row["format"]))
        if row.get("quant") not in ("int8", "dynamic") or base is None or "error" in row:
            continue
        row["vs_fp32"] = _vs_fp32(row, base, config)
        ratio = row["vs_fp32"].get("p50_ratio")
        why = size_why(entries.get((row.get("bundle"), row["id"])), entries.get((base.get("bundle"), base["id"])))
        row["flags"] = worth_flags(row["bytes"] / base["bytes"] if base["bytes"] else None, ratio, why)


def _vs_fp32(row: dict, base: dict, config: BenchConfig) -> dict:
    """Batch-1 p50 of ``row`` against ``base``, timed side by side (the sequential p50s when that fails)."""
    try:
        runners = [open_runner(Path(r["file"]), threads=config.threads, provider=config.provider) for r in (row, base)]
        x = np.random.default_rng(0).random((1, *runners[0].input_shape), dtype=np.float32)
        ours, theirs = (float(np.median(ns)) / 1e3 for ns in side_by_side([r.stepper(x) for r in runners]))
        method = "side by side"
    except (EdgeseqError, ValueError, OSError) as exc:
        ours, theirs, method = p50(row), p50(base), f"one after the other (side by side failed: {exc})"
    return {"fp32": base["id"], "method": method, "p50_us": ours, "fp32_p50_us": theirs,
            "p50_ratio": round(ours / theirs, 4) if ours and theirs else None}


def _bench_one(target: Target, config: BenchConfig, data_dir, cache: dict) -> dict:
    row = {"id": target.id, "file": str(target.path), "format": target.format,
           "quant": target.quant, "bytes": target.path.stat().st_size,
           "bundle": str(target.bundle_dir) if target.bundle_dir else None}
    try:
        runner = open_runner(target.path, threads=config.threads, provider=config.provider)
    except EdgeseqError as exc:
        return {**row, "error": str(exc)}
    row["runtime"] = runner.describe()
    if target.format == "onnx":
        row["runtime"]["node_providers"] = runner.node_providers(np.zeros((1, *runner.input_shape), np.float32))
    row["latency"] = []
    for batch in config.batch_sizes:
        fixed = getattr(runner, "batch", None)
        if fixed and batch != fixed:
            row["latency"].append({"batch": batch, "error": f"artifact has a fixed batch of {fixed}"})
            continue
        step = runner.stepper(np.random.default_rng(0).random((batch, *runner.input_shape), dtype=np.float32))
        samples = time_step(step, config.warmup, config.runs, config.seconds)
        stats = latency_stats(samples, batch)
        stats["unstable"] = stats["spread"] > config.max_spread
        stats.update(kept_samples(samples, raw=config.raw))
        row["latency"].append(stats)
    if config.cold_start and target.format != "keras":
        row["cold_start"] = cold_start(target, config)
    if config.accuracy:
        try:
            row["accuracy"] = _accuracy(target, runner, data_dir, cache)
        except (EdgeseqError, ValueError) as exc:
            row["accuracy"] = {"error": str(exc)}
    return row


def p50(row: dict, batch: int = 1) -> float | None:
    return next((s["p50_us"] for s in row.get("latency", []) if s.get("batch") == batch and "p50_us" in s), None)


def read_report(path: str | Path) -> BenchReport:
    """A ``bench.json``, validated (a malformed field is one line naming it)."""
    return read_document(path, BenchReport)


def compare(before: BenchReport | dict, after: BenchReport | dict, slower: float = 0.10, accuracy_drop: float = 0.002) -> dict:
    """What changed between two bench reports, artifact by artifact (matched by id); regressions flagged:
    p50 slower by more than ``slower`` (fraction) or accuracy lower by more than ``accuracy_drop``.
    Reports that share no artifact cannot be compared (:class:`DataError`)."""
    before, after = (r if isinstance(r, BenchReport) else parse_document(BenchReport, r, "bench report") for r in (before, after))
    old = {r.id: r for r in before.artifacts}
    new = {r.id: r for r in after.artifacts}
    shared = [i for i in new if i in old]
    if not shared:
        raise DataError(f"the two bench reports share no artifact (before: {', '.join(old) or 'none'}; "
                        f"after: {', '.join(new) or 'none'})")
    rows = []
    for artifact_id in shared:
        prev, row = old[artifact_id], new[artifact_id]
        a, b = prev.p50(), row.p50()
        acc_a, acc_b = prev.accuracy_value(), row.accuracy_value()
        change = (b - a) / a if a and b else None
        regressions = []
        if change is not None and change > slower:
            regressions.append(f"p50 {a:.0f} -> {b:.0f} us (+{change:.0%})")
        if acc_a is not None and acc_b is not None and acc_a - acc_b > accuracy_drop:
            regressions.append(f"accuracy {acc_a:.2%} -> {acc_b:.2%}")
        unmeasured = [f"{side}: {p}" for side, r in (("before", prev), ("after", row)) for p in r.problems()]
        if a is None or b is None:
            unmeasured.append("no batch-1 p50 on both sides")
        rows.append({"id": artifact_id, "p50_before_us": a, "p50_after_us": b, "p50_change": change,
                     "accuracy_before": acc_a, "accuracy_after": acc_b, "regressions": regressions,
                     "unmeasured": unmeasured})
    only_before, only_after = sorted(set(old) - set(new)), sorted(set(new) - set(old))
    return {"before": {"device": before.device.get("cpu"), "created": before.created},
            "after": {"device": after.device.get("cpu"), "created": after.created},
            "only_before": only_before, "only_after": only_after, "rows": rows,
            "regressed": any(r["regressions"] for r in rows),
            "complete": not only_before and not only_after and not any(r["unmeasured"] for r in rows)}


def problems(report: dict) -> list[str]:
    """'artifact: what was not measured' for every artifact of a bench report."""
    checked = validated(BenchReport, report)
    return [f"{row.id}: {p}" for row in checked.artifacts for p in row.problems()]


REPORT_JSON, REPORT_MD = "bench.json", "bench.md"
PARTIAL_JSON, PARTIAL_MD = "bench.partial.json", "bench.partial.md"


def write_report(report: dict, out_dir: str | Path) -> list[Path]:
    """bench.json, bench.md and (when matplotlib is installed) latency.png and accuracy_latency.png.

    An interrupted run is written as bench.partial.json / .md beside the last complete report, which it
    never replaces; a complete run removes any partial one."""
    from edgeseq import atomic
    from edgeseq.report import bench_markdown

    out_dir = Path(out_dir)
    partial = bool(report.get("interrupted"))
    document = validated(BenchReport, {**report, "partial": partial})
    names = (PARTIAL_JSON, PARTIAL_MD) if partial else (REPORT_JSON, REPORT_MD)
    files = [write_document(out_dir / names[0], document)]
    try:
        files.append(atomic.write_text(out_dir / names[1], bench_markdown(report)))
        if partial:
            return files
        for stale in (PARTIAL_JSON, PARTIAL_MD):
            (out_dir / stale).unlink(missing_ok=True)
        files += _plots(report, out_dir)
    except OSError as exc:
        raise OutputError(f"cannot write the bench report in {out_dir} ({exc.strerror or exc})") from None
    return files


def _plots(report: dict, out_dir: Path) -> list[Path]:
    """latency and accuracy_latency figures: PNG through matplotlib where it is installed, else SVG written
    directly (:mod:`edgeseq.svg`; the base install on a device has no matplotlib)."""
    rows = [r for r in report["artifacts"] if r.get("latency") and r["latency"][0].get("samples_us")]
    if not rows:
        return []
    if importlib.util.find_spec("matplotlib") is not None:
        from edgeseq import plots as figures

        suffix = ".png"
    else:
        from edgeseq import svg as figures

        suffix = ".svg"
    files = [figures.latency_distribution([r["id"] for r in rows], [r["latency"][0]["samples_us"] for r in rows],
                                          out_dir / f"latency{suffix}", f"latency at batch {rows[0]['latency'][0]['batch']}")]
    scored = [r for r in rows if (r.get("accuracy") or {}).get("accuracy") is not None]
    if scored:
        files.append(figures.accuracy_vs_latency([r["id"] for r in scored], [r["latency"][0]["p50_us"] for r in scored],
                                                 [r["accuracy"]["accuracy"] for r in scored],
                                                 out_dir / f"accuracy_latency{suffix}", "accuracy against latency"))
    return files
