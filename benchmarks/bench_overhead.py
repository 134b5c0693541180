"""How much `edgeseq bench` adds to what it measures: its p50 against a bare loop that calls the runtime
directly (LiteRT set_tensor/invoke/get_tensor; ONNX Runtime session.run), for the same artifact, in
one run. Rounds alternate between the two so drift (clocks, the other core) hits both alike.

    python benchmarks/export_matrix.py ...                 # first: bundles under runs/zoo/*/bundle
    python benchmarks/bench_overhead.py                    # ~1 minute

Writes benchmarks/results/bench_overhead.json and .md. Target: overhead under 5 %.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from edgeseq import atomic, bench
from edgeseq.fingerprint import device
from edgeseq.report import markdown_table
from edgeseq.runtimes import open_runner

RESULTS = Path(__file__).parent / "results"
DEFAULT_ARTIFACTS = ["runs/zoo/mlp/bundle/mlp-fp32.tflite", "runs/zoo/mlp/bundle/mlp-int8.onnx",
                     "runs/zoo/lstm/bundle/lstm-fp32.tflite", "runs/zoo/lstm/bundle/lstm-int8.onnx"]


def bare_loop(path: Path, x: np.ndarray, runs: int) -> np.ndarray:
    """The runtime called directly, nothing of edgeseq in the loop: ns per call."""
    runner = open_runner(path, threads=1)  # only to load; the loop below uses the runtime's own objects
    samples = np.empty(runs, dtype=np.int64)
    clock = time.perf_counter_ns
    if path.suffix == ".tflite":
        interp = runner.interpreter
        detail_in, detail_out = interp.get_input_details()[0], interp.get_output_details()[0]
        feed = x if detail_in["dtype"] == np.float32 else np.zeros(detail_in["shape"], detail_in["dtype"])
        for _ in range(20):
            interp.set_tensor(detail_in["index"], feed)
            interp.invoke()
        for i in range(runs):
            start = clock()
            interp.set_tensor(detail_in["index"], feed)
            interp.invoke()
            interp.get_tensor(detail_out["index"])
            samples[i] = clock() - start
    else:
        session = runner.session
        name, out = session.get_inputs()[0].name, [session.get_outputs()[0].name]
        for _ in range(20):
            session.run(out, {name: x})
        for i in range(runs):
            start = clock()
            session.run(out, {name: x})
            samples[i] = clock() - start
    return samples


def through_bench(path: Path, x: np.ndarray, runs: int) -> np.ndarray:
    """What `edgeseq bench` times: its runner's stepper inside its own timing loop."""
    step = open_runner(path, threads=1).stepper(x)
    return bench.time_step(step, warmup=20, runs=runs, seconds=None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("artifacts", nargs="*", type=Path, default=[Path(p) for p in DEFAULT_ARTIFACTS])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--runs", type=int, default=300, help="timed calls per round and side")
    args = parser.parse_args(argv)
    rows = []
    for path in args.artifacts:
        runner = open_runner(path, threads=1)
        x = np.random.default_rng(0).random((1, *runner.input_shape), dtype=np.float32)
        bare, ours = [], []
        for _ in range(args.rounds):
            bare.append(bare_loop(path, x, args.runs))
            ours.append(through_bench(path, x, args.runs))
        p50_bare = float(np.percentile(np.concatenate(bare), 50)) / 1e3
        p50_bench = float(np.percentile(np.concatenate(ours), 50)) / 1e3
        overhead = (p50_bench - p50_bare) / p50_bare
        rows.append({"artifact": str(path), "p50_bare_us": round(p50_bare, 2), "p50_bench_us": round(p50_bench, 2),
                     "overhead": round(overhead, 4), "meets_5pct": overhead < 0.05,
                     "samples_per_side": args.rounds * args.runs})
        print(f"{path}: bare {p50_bare:.1f} us, bench {p50_bench:.1f} us, overhead {overhead:+.1%}", flush=True)
    report = {"schema": "edgeseq.bench.overhead/1",
              "command": "python benchmarks/bench_overhead.py " + shlex.join(sys.argv[1:] if argv is None else argv),
              "device": device(), "threads": 1, "rows": rows}
    atomic.write_json(RESULTS / "bench_overhead.json", report)
    d = report["device"]
    md = ["# `edgeseq bench` overhead against a bare runtime loop", "",
          f"Command: `{report['command']}`  ", f"Device: {d['cpu']} ({d['cpu_count']} cores), {d['os']}; one thread; "
          f"{args.rounds} alternating rounds of {args.runs} calls per side. Target: under 5 %.", "",
          markdown_table(["artifact", "bare p50 µs", "bench p50 µs", "overhead", "< 5 %"],
                         [[r["artifact"], f"{r['p50_bare_us']:.1f}", f"{r['p50_bench_us']:.1f}", f"{r['overhead']:+.1%}",
                           "yes" if r["meets_5pct"] else "NO"] for r in rows])]
    atomic.write_text(RESULTS / "bench_overhead.md", "\n".join(md) + "\n")
    return 0 if all(r["meets_5pct"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
