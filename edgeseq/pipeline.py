"""``edgeseq pipeline``: the whole product in one command, for a newcomer's first run.

Train (a zoo name, its seed recipe; ``quick`` for a short run) or take a ``.keras`` file, evaluate it,
export every format and quantization, verify each artifact against the original, bench them all beside
the Keras original, and write one run folder whose ``report.md`` a person reads first.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from datetime import datetime, timezone

from edgeseq import __version__, atomic
from edgeseq.report import human_bytes, markdown_html, markdown_table
from edgeseq.schema import PipelineReport, validated, write_document

QUICK_EPOCHS = 1


@dataclass
class PipelineResult:
    run_dir: Path
    report_path: Path
    verdict: str
    passed: bool
    seconds: dict


def _is_zoo_name(model: str) -> bool:
    from edgeseq.training.zoo import ZooName

    return model in {n.value for n in ZooName}


def run_pipeline(model: str, *, out_dir: str | Path | None = None, quick: bool = False, data_dir=None,
                 bench_runs: int = 200, threads: int | None = 1,
                 say: Callable[[str], None] = lambda line: None) -> PipelineResult:
    """Run every stage; ``say`` receives one line per stage as it starts (progress for the CLI)."""
    from edgeseq.data import load_split, locate
    from edgeseq.errors import ModelError

    seconds = {}
    if not _is_zoo_name(model):
        from edgeseq.training.models import resolve_model_path

        resolve_model_path(model)  # a missing file fails now, before any data is loaded or folder made
    source = locate(data_dir)
    train_split, test_split = load_split("train", source=source), load_split("test", source=source)
    name = model if _is_zoo_name(model) else Path(model).stem
    run_dir = Path(out_dir) if out_dir else Path("runs") / f"pipeline-{name}"
    run_dir.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    if _is_zoo_name(model):
        from edgeseq.training.train import train

        say(f"train {model}" + (f" (quick: {QUICK_EPOCHS} epoch)" if quick else " (seed recipe)"))
        train(model, out_dir=run_dir, epochs=QUICK_EPOCHS if quick else None, train_split=train_split,
              test_split=test_split, progress=False)
        model_path = run_dir / "model.keras"
    else:
        from edgeseq.training.models import resolve_model_path

        original = resolve_model_path(model)
        if original.suffix != ".keras":
            raise ModelError(f"{original}: the pipeline takes a zoo name or a .keras file")
        model_path = run_dir / "model.keras"
        if original.resolve() != model_path.resolve():
            shutil.copyfile(original, model_path)
            card = original.parent / "card.json"
            if card.is_file():
                shutil.copyfile(card, run_dir / "card.json")
    seconds["train"] = round(time.perf_counter() - started, 1)

    from edgeseq.training.evaluate import evaluate

    say("evaluate the original")
    started = time.perf_counter()
    evaluation = evaluate(model_path, test=test_split, out_dir=run_dir)
    seconds["evaluate"] = round(time.perf_counter() - started, 1)

    from edgeseq.export.bundle import export_bundle
    from edgeseq.formats import Format, Quant

    say("export tflite and onnx x fp32, fp16, dynamic, int8 (each conversion in its own process)")
    started = time.perf_counter()
    exported = export_bundle(model_path, formats=list(Format), quants=list(Quant), out_dir=run_dir / "bundle", force=True,
                             train_split=train_split, test_split=test_split)
    seconds["export"] = round(time.perf_counter() - started, 1)

    from edgeseq.verify import verify, write_report

    say("verify every artifact against the original")
    started = time.perf_counter()
    verification = verify(exported.bundle_dir, data_dir=data_dir)
    write_report(verification, exported.bundle_dir)
    seconds["verify"] = round(time.perf_counter() - started, 1)

    from edgeseq import bench

    say(f"bench every artifact beside Keras ({bench_runs} timed runs each, {threads or 'default'} thread)")
    started = time.perf_counter()
    benched = bench.bench([exported.bundle_dir], bench.BenchConfig(runs=bench_runs, threads=threads, accuracy=False),
                          keras=True)
    bench.write_report(benched, run_dir / "bench")
    seconds["bench"] = round(time.perf_counter() - started, 1)

    verdict, passed = _verdict(verification, benched)
    markdown = _report(name, run_dir, evaluation, verification, benched, verdict, seconds, quick)
    report_path = atomic.write_text(run_dir / "report.md", markdown)
    atomic.write_text(run_dir / "report.html", markdown_html(markdown, run_dir, f"edgeseq pipeline: {name}"))
    write_document(run_dir / "pipeline.json", _document(name, run_dir, evaluation, verification, benched, verdict,
                                                        passed, seconds, quick))
    return PipelineResult(run_dir, report_path, verdict, passed, seconds)


def _document(name, run_dir: Path, evaluation, verification, benched, verdict, passed, seconds, quick) -> PipelineReport:
    """report.md's facts as a typed document a program can read (pipeline.json)."""
    latency = _p50(benched)
    rows = [{"id": r["id"], "bytes": r.get("bytes"), "agreement": (r.get("parity") or {}).get("agreement"),
             "accuracy_delta": (r.get("parity") or {}).get("accuracy_delta"),
             "int8_mac_share": (r.get("coverage") or {}).get("int8_mac_share"), "p50_us": latency.get(r["id"]),
             "passed": r["passed"], "reason": r["reasons"][0] if r["reasons"] else None}
            for r in verification["artifacts"]]
    files = sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file() and "tensorboard" not in p.parts)
    return validated(PipelineReport, {
        "schema": PipelineReport.SCHEMA, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "edgeseq": __version__, "model": name, "quick": quick, "verdict": verdict, "passed": passed,
        "seconds": seconds, "metrics": {k: float(v) for k, v in evaluation.metrics.items()},
        "artifacts": rows, "files": files + ["pipeline.json"]})


def _p50(benched: dict) -> dict[str, float]:
    from edgeseq.bench import p50

    return {r["id"]: p50(r) for r in benched["artifacts"] if "error" not in r}


def _verdict(verification: dict, benched: dict) -> tuple[str, bool]:
    rows = verification["artifacts"]
    passing = [r for r in rows if r["passed"]]
    failing = [r for r in rows if not r["passed"]]
    latency = _p50(benched)
    keras_us = latency.get("keras")
    line = f"{len(passing)} of {len(rows)} artifacts compute what the original computes (within thresholds)"
    # bench timed each integer artifact beside its fp32 just now, with more rounds than the export's
    # search could spend on each candidate (vs_fp32): its flags replace the ones verify read from the export
    timed = {r["id"] for r in benched["artifacts"] if r.get("vs_fp32")}
    flagged = {r["id"] for r in benched["artifacts"] if r.get("flags")}
    flagged |= {r["id"] for r in rows if r.get("flags") and r["id"] not in timed}
    worth = [r for r in passing if r["id"] not in flagged]  # never recommend an int8 slower or not smaller than fp32
    if worth:
        fastest = min(worth, key=lambda r: latency.get(r["id"]) or float("inf"))
        us = latency.get(fastest["id"])
        if us:
            speed = f", {keras_us / us:.1f}x faster than Keras per sample" if keras_us else ""
            line += f"; fastest of those: {fastest['id']} at {us:.0f} µs{speed}, {human_bytes(fastest['bytes'])}"
    if flagged:
        line += f"; not recommended (slower than fp32 or not 2x smaller): {', '.join(sorted(flagged))}"
    if failing:
        line += "; failing: " + ", ".join(f"{r['id']} ({r['reasons'][0][:80]})" for r in failing)
    return line, not failing


def _links(run_dir: Path, files: tuple[str, ...], what: str) -> str | None:
    present = [f"[{f}]({f})" for f in files if (run_dir / f).exists()]
    return f"- {', '.join(present)}: {what}" if present else None


def _report(name, run_dir, evaluation, verification, benched, verdict, seconds, quick) -> str:
    latency = _p50(benched)
    metrics = ", ".join(f"{k} {v:.2%}" if k != "char_error_rate" else f"{k} {v:.3f}" for k, v in evaluation.metrics.items())
    rows = []
    for r in verification["artifacts"]:
        p = r.get("parity") or {}
        cov = r.get("coverage") or {}
        us = latency.get(r["id"])
        rows.append([r["id"], human_bytes(r.get("bytes")),
                     f"{p['agreement']:.2%}" if "agreement" in p else "-",
                     f"{p['accuracy_delta'] * 100:+.2f}" if "accuracy_delta" in p else "-",
                     f"{cov['int8_mac_share']:.0%}" if "int8_mac_share" in cov else "-",
                     f"{us:.0f}" if us else "-", "PASS" if r["passed"] else "FAIL: " + r["reasons"][0][:90]])
    keras_us = latency.get("keras")
    lines = [
        f"# edgeseq pipeline: {name}", "",
        f"**Verdict: {verdict}.**", "",
        f"Original model: {metrics} on {evaluation.examples:,} MNIST test images"
        + (" (quick run: 1 epoch; run without --quick for the seed recipe)." if quick else "."),
        f"Keras per-sample latency (batch 1): {keras_us:.0f} µs." if keras_us else "",
        "", "## Artifacts", "",
        markdown_table(["artifact", "size", "agreement", "Δacc pts", "int8 MACs", "p50 µs", "verdict"], rows), "",
        f"Evaluated on the {verification['evaluated_on']}. Latency: batch 1, one thread, p50 of "
        f"{benched['config']['runs']} runs on {benched['device']['cpu']}.", "",
        "## Files", "",
        _links(run_dir, ("curves.png", "confusion.png", "wrong.png"), "the original's training and errors"),
        _links(run_dir, ("bundle/verify.md",), "parity in detail, with what each artifact left unquantized"),
        _links(run_dir, ("bench/bench.md", "bench/latency.png", "bench/latency.svg"), "latency, cold start and memory"),
        _links(run_dir, tuple(f"bundle/drift-{fmt}-int8.{ext}" for fmt in ("tflite", "onnx") for ext in ("md", "png")),
               "how far the int8 hidden state drifts from float over the time steps"),
        "- `bundle/`: what to copy to the device (`edgeseq verify bundle` and `edgeseq bench bundle` run there without TensorFlow)",
        "", "Stage times (s): " + ", ".join(f"{k} {v}" for k, v in seconds.items()), "",
    ]
    return "\n".join(line for line in lines if line is not None) + "\n"
