"""Latency of every zoo model x runtime x precision at batch 1, against the targets of the performance
issue, with a measured reason wherever a target is missed.

    python benchmarks/export_matrix.py --data-dir ../shared/data/mnist   # first: the bundles
    python benchmarks/perf_matrix.py                                      # ~3 minutes on 2 cores

Targets: int8 p50 <= 0.5x the fp32 p50 of the same runtime; no artifact more than 2x slower than the
fastest artifact of the same model and precision; Keras per-sample latency beside; MACs per inference
and GMAC/s against this CPU's measured single-core fp32 peak; two threads reported, and the default
thread choice never slower than one thread. Writes benchmarks/results/perf.json and .md.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from collections import Counter
from pathlib import Path

from edgeseq.schema import to_json
from edgeseq import atomic, bench, bundle as bundles
from edgeseq.fingerprint import device
from edgeseq.report import markdown_table
from edgeseq.export.op_profile import by_op, op_profile
from edgeseq.training.zoo import ZooName

RESULTS = Path(__file__).parent / "results"
PEAK_SCRIPT = """
import time, numpy as np
a = np.random.rand(512, 512).astype(np.float32); b = np.random.rand(512, 512).astype(np.float32)
for _ in range(3): a @ b
n = 30; t = time.perf_counter()
for _ in range(n): a @ b
print(n * 512 ** 3 / (time.perf_counter() - t) / 1e9)
"""


def peak_gmacs(threads: int) -> float:
    """Multiply-accumulates per second of a float32 512x512 GEMM (numpy's BLAS) on ``threads`` threads."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    done = subprocess.run([sys.executable, "-c", PEAK_SCRIPT], capture_output=True, text=True, env=env, check=True)
    return round(float(done.stdout.strip()), 2)


def onnx_op_times(path: Path, runs: int = 50) -> tuple[dict[str, float], float]:
    """µs per inference each op type takes in ORT's profiler at batch 1 on one thread (after ORT's own graph
    optimizations), largest first, and how many kernels ORT launches per inference."""
    import numpy as np

    from edgeseq.runtimes import open_runner

    runner = open_runner(path, threads=1)
    times = Counter()
    launches = 0
    for event in runner.profile(np.zeros((1, *runner.input_shape), np.float32), runs=runs):
        if event["name"].endswith("_kernel_time"):
            times[(event.get("args") or {}).get("op_name", "?")] += event["dur"]
            launches += 1
    return {op: t / runs for op, t in times.most_common()}, launches / runs


def onnx_profile(path: Path, top: int = 3, runs: int = 50) -> tuple[str, float]:
    """Where an ONNX artifact spends its time at batch 1 on one thread: the op types with the largest share,
    and how many kernels ORT launches per inference (after its own graph optimizations)."""
    times, launches = onnx_op_times(path, runs)
    total = sum(times.values()) or 1
    return ", ".join(f"{op} {t / total:.0%}" for op, t in list(times.items())[:top]), launches


def onnx_why(quantized: Path, reference: Path, floor: dict, quant: str, runs: int = 200) -> str:
    """Why an ONNX int8 artifact is not faster than its fp32: both profiled by ORT, op type by op type (µs
    per inference), kernel launches against ORT's measured per-node and per-call floors."""
    (q, q_launches), (f, f_launches) = onnx_op_times(quantized, runs), onnx_op_times(reference, runs)
    q_total, f_total = sum(q.values()), sum(f.values())
    ops = ", ".join(f"{op} {t:.1f}" for op, t in list(q.items())[:4])
    ref = ", ".join(f"{op} {t:.1f}" for op, t in list(f.items())[:4])
    extra = (q_launches - f_launches) * floor["onnx_node"]
    return (f"ORT profile (µs per inference, 1 thread, each kernel with the profiler's own cost; {quant} vs fp32): "
            f"kernels {q_total:.1f} vs {f_total:.1f} ({q_total / f_total:.2f}x; {quant}: {ops}; fp32: {ref}); "
            f"{q_launches:.0f} vs {f_launches:.0f} kernel launches: {extra:+.2f} µs at ORT's per-node floor "
            f"({floor['onnx_node']:.2f} µs; per-call floor {floor['onnx']:.1f} µs)")


def loop_node_launches(path: Path) -> tuple[int, int] | None:
    """(nodes in the first Loop's body, its constant trip count), or None without such a Loop."""
    import onnx

    from edgeseq.export import coverage, drift

    model = onnx.load(str(path))
    node = drift.onnx_first_loop(model)
    if node is None or node.op_type != "Loop":
        return None
    trips = coverage.onnx_loop_trips(node, {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer})
    body = next(a.g for a in node.attribute if a.name == "body")
    return (len(body.node), trips) if trips else None


MAC_OPS = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "BATCH_MATMUL", "TRANSPOSE_CONV")


def _split(profile: dict) -> tuple[dict, dict]:
    ops = by_op(profile)
    mac = {k: v for k, v in ops.items() if k.split("@")[0] in MAC_OPS}
    return mac, {k: v for k, v in ops.items() if k not in mac}


def tflite_why(quantized: dict, reference: dict, floor_us: float, quant: str) -> str:
    """Why an int8 TFLite artifact misses 0.5x its fp32: its measured op profile beside the fp32 one."""
    mac_q, other_q = _split(quantized)
    mac_f, other_f = _split(reference)
    mq, mf, oq, of = (sum(d.values()) for d in (mac_q, mac_f, other_q, other_f))
    per_op = ", ".join(f"{k} {v:.1f} vs {mac_f.get(k, 0):.1f}" for k, v in mac_q.items())
    top = ", ".join(f"{k} {v:.1f}" for k, v in list(other_q.items())[:3])
    return (f"op profile (µs per inference, each op timed alone; {quant} vs fp32): MAC ops {mq:.1f} vs {mf:.1f} "
            f"({mq / mf:.2f}x: {per_op}); other ops {oq:.1f} vs {of:.1f} (top: {top}); loop and dispatch "
            f"{quantized['unexplained_us']:.1f} vs {reference['unexplained_us']:.1f}; invoke {quantized['total_us']:.1f} vs "
            f"{reference['total_us']:.1f} ({quantized['total_us'] / reference['total_us']:.2f}x), per-call floor "
            f"{floor_us:.1f}")


def cpu_flags() -> str:
    """The SIMD extensions that decide int8 speed (VNNI / AVX-512 make int8 dot products faster than fp32)."""
    try:
        flags = set(next(line for line in Path("/proc/cpuinfo").read_text().splitlines()
                         if line.startswith("flags")).split(":", 1)[1].split())
    except (OSError, StopIteration):
        return "unknown"
    wanted = ("sse4_2", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm")
    have = [f for f in wanted if f in flags]
    return ", ".join(have) + ("" if {"avx512_vnni", "avx_vnni", "amx_int8"} & flags else "; no VNNI")


LOOP_STEPS = 28
CHAIN = 100  # nodes in the per-node floor's chain
STATE = [1, 128]  # a recurrent state's shape, what the small ops of a cell work on


def runtime_floor_us(scratch: Path, repeats: int = 3) -> dict:
    """p50 of the cheapest possible calls into each runtime, on a (1, 28, 28) input: an identity model (the
    fixed cost every inference pays before any arithmetic), and a loop of 28 steps whose body only adds 1 to
    its state, the same (1, 28, 28) tensor: ``*_loop_step`` is (loop - identity) / 28, what each step of a
    recurrent model pays for being a loop (an ONNX ``Loop``, a TFLite ``WHILE``); and a chain of 100
    multiplications of a (1, 128) tensor by the input: ``*_node`` is (chain - identity) / 100, what every
    small op of a recurrent cell costs before its arithmetic matters."""
    import numpy as np
    import onnx
    import tensorflow as tf

    h = onnx.helper
    spec = [1, 28, 28]

    def onnx_model(nodes, name, initializers=(), shape=spec):
        graph = h.make_graph(nodes, name, [h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, shape)],
                             [h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, shape)], list(initializers))
        model = h.make_model(graph, opset_imports=[h.make_opsetid("", 13)])
        model.ir_version = 8
        onnx.save(model, str(scratch / f"{name}.onnx"))

    onnx_model([h.make_node("Identity", ["x"], ["y"])], "floor")
    body = h.make_graph([h.make_node("Identity", ["cond"], ["cond_out"]), h.make_node("Add", ["state", "one"], ["next"])],
                        "body", [h.make_tensor_value_info("i", onnx.TensorProto.INT64, []),
                                 h.make_tensor_value_info("cond", onnx.TensorProto.BOOL, []),
                                 h.make_tensor_value_info("state", onnx.TensorProto.FLOAT, spec)],
                        [h.make_tensor_value_info("cond_out", onnx.TensorProto.BOOL, []),
                         h.make_tensor_value_info("next", onnx.TensorProto.FLOAT, spec)])
    onnx_model([h.make_node("Loop", ["trips", "", "x"], ["y"], body=body)], "loop",
               [onnx.numpy_helper.from_array(np.array(LOOP_STEPS, np.int64), "trips"),
                onnx.numpy_helper.from_array(np.array(1.0, np.float32), "one")])

    # each multiplies by the input: nothing a converter or runtime can fold into one op
    chain = [h.make_node("Mul", ["x" if k == 0 else f"a{k}", "x"], ["y" if k == CHAIN - 1 else f"a{k + 1}"])
             for k in range(CHAIN)]
    onnx_model(chain, "chain", shape=STATE)
    onnx_model([h.make_node("Identity", ["x"], ["y"])], "floor_state", shape=STATE)

    def tflite_model(fn, name, shape=spec):
        function = tf.function(fn).get_concrete_function(tf.TensorSpec(shape, tf.float32))
        (scratch / f"{name}.tflite").write_bytes(tf.lite.TFLiteConverter.from_concrete_functions([function]).convert())

    tflite_model(lambda x: tf.identity(x), "floor")
    tflite_model(lambda x: tf.identity(x), "floor_state", STATE)
    def mul_chain(x):
        y = x
        for _ in range(CHAIN):
            y = y * x
        return y

    tflite_model(mul_chain, "chain", STATE)
    tflite_model(lambda x: tf.while_loop(lambda i, s: i < LOOP_STEPS, lambda i, s: (i + 1, s + 1.0),
                                         (tf.constant(0), x))[1], "loop")
    from edgeseq.runtimes import open_runner

    def p50(path: Path, shape=spec) -> float:
        stepper = open_runner(path, threads=1).stepper(np.zeros(shape, np.float32))
        return float(np.percentile(bench.time_step(stepper, 100, 2000, None), 50)) / 1e3

    cases = {(fmt, name): shape for fmt in ("tflite", "onnx")
             for name, shape in (("floor", spec), ("loop", spec), ("chain", STATE), ("floor_state", STATE))}
    lowest: dict = {}
    for _ in range(repeats):  # interleaved; the lowest p50 of each, as for the artifacts
        for (fmt, name), shape in cases.items():
            lowest[fmt, name] = min(lowest.get((fmt, name), float("inf")), p50(scratch / f"{name}.{fmt}", shape))
    found = {}
    for fmt in ("tflite", "onnx"):
        floor, loop = lowest[fmt, "floor"], lowest[fmt, "loop"]
        found[fmt], found[f"{fmt}_loop_step"] = round(floor, 2), round(max(0.0, loop - floor) / LOOP_STEPS, 3)
        found[f"{fmt}_node"] = round(max(0.0, lowest[fmt, "chain"] - lowest[fmt, "floor_state"]) / CHAIN, 3)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=[n.value for n in ZooName])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3,
                        help="measure every artifact this many times, interleaved, and keep its lowest p50: a "
                             "shared machine's neighbours slow single measurements, never speed them up")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs/zoo"))
    args = parser.parse_args(argv)
    peak = {1: peak_gmacs(1), 2: peak_gmacs(2)}
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        floor = runtime_floor_us(Path(scratch), args.repeats)
    models = []
    for name in args.models:
        bundle_dir = args.runs_dir / name / "bundle"
        manifest = to_json(bundles.read_manifest(bundle_dir))
        p50 = {}
        for repeat in range(args.repeats):
            for threads in (1, 2, None):
                config = bench.BenchConfig(runs=args.runs, warmup=30, threads=threads, cold_start=False, accuracy=False)
                report = bench.bench([bundle_dir], config, keras=threads == 1 and repeat == 0)
                for row in report["artifacts"]:
                    found, key = p50.setdefault(row["id"], {}), threads or "default"
                    found[key] = min(found.get(key, float("inf")), bench.p50(row))
        entries = {a["id"]: a for a in manifest["artifacts"]}
        macs = next(a["coverage"]["macs"] for a in manifest["artifacts"] if a["status"] == "ok" and a.get("coverage"))
        models.append(_model_rows(name, bundle_dir, entries, p50, macs, peak[1], floor))
        print(f"{name}: done", flush=True)
    report = {"schema": "edgeseq.bench.perf/1",
              "command": "python benchmarks/perf_matrix.py " + shlex.join(sys.argv[1:] if argv is None else argv),
              "runs": args.runs, "repeats": args.repeats, "device": device(), "cpu_flags": cpu_flags(), "peak_gmacs_fp32": peak, "runtime_floor_us": floor, "models": models}
    atomic.write_json(RESULTS / "perf.json", report)
    atomic.write_text(RESULTS / "perf.md", markdown(report))
    print(markdown(report))
    return 0


def _model_rows(name, bundle_dir, entries, p50, macs, peak1, floor) -> dict:
    one = {aid: t.get(1) for aid, t in p50.items()}
    rows = []
    measured = {}

    def profiles(aid: str) -> dict:
        if aid not in measured:
            measured[aid] = op_profile(bundle_dir / entries[aid]["file"])
        return measured[aid]

    for aid, entry in entries.items():
        fmt, quant = entry["format"], entry["quant"]
        row = {"id": aid, "format": fmt, "quant": quant, "status": entry["status"]}
        if entry["status"] != "ok":
            row["why"] = f"not produced: {entry.get('error', '')[:120]}"
            rows.append(row)
            continue
        t1, t2, td = p50[aid].get(1), p50[aid].get(2), p50[aid].get("default")
        row.update(p50_1t_us=t1, p50_2t_us=t2, p50_default_us=td, gmacs=round(macs / t1 / 1e3, 3) if t1 else None,
                   two_threads_speedup=round(t1 / t2, 2) if t1 and t2 else None,
                   default_not_slower=bool(td and t1 and td <= t1 * 1.05))
        fp32 = one.get(f"{fmt}-fp32")
        if quant == "int8":
            row["int8_vs_fp32"] = round(t1 / fp32, 2) if fp32 else None
            row["meets_int8_half"] = bool(fp32 and t1 <= 0.5 * fp32)
        same = [one[f"{other}-{quant}"] for other in ("tflite", "onnx") if one.get(f"{other}-{quant}")]
        row["vs_fastest_same_precision"] = round(t1 / min(same), 2)
        row["meets_2x"] = row["vs_fastest_same_precision"] <= 2.0
        misses = (quant == "int8" and not row["meets_int8_half"]) or not row["meets_2x"] or not row["default_not_slower"]
        if misses and fmt == "onnx":
            shares, kernels = onnx_profile(bundle_dir / entry["file"])
            row["ort_kernels_per_inference"] = round(kernels)
            fixed = kernels * floor["onnx_node"] + floor["onnx"]
            row["ort_fixed_cost_us"] = round(fixed, 1)
            row["why"] = (f"ORT profile, 1 thread: {shares}; {kernels:.0f} kernel launches per inference: at ORT's "
                          f"per-node floor ({floor['onnx_node']:.2f} µs; LiteRT {floor['tflite_node']:.2f}) and per-call "
                          f"floor ({floor['onnx']:.1f} µs; LiteRT {floor['tflite']:.1f}) that is {fixed:.0f} of its "
                          f"{t1:.0f} µs before any arithmetic")
            if not row["meets_2x"]:
                row["why"] += f", against {min(same):.1f} µs for the whole fastest {quant} artifact"
            if quant == "int8" and not row["meets_int8_half"] and f"{fmt}-fp32" in entries:
                _, fp32_kernels = onnx_profile(bundle_dir / entries[f"{fmt}-fp32"]["file"])
                row["why"] += f"; fp32 launches {fp32_kernels:.0f}"
                source = (entry.get("recipe") or {}).get("from", "")
                if "unrolled" in source:  # the fp32 file runs a GRU/RNN op; int8 cannot
                    row["why"] += f" (int8 is made from the {source})"
            launches = loop_node_launches(bundle_dir / entry["file"])
            if launches:
                row["why"] += (f"; its Loop runs {launches[0]} body nodes one by one, {launches[1]} times, and "
                               f"every step pays ORT's loop-step floor ({floor['onnx_loop_step']:.2f} µs, against "
                               f"{floor['tflite_loop_step']:.2f} µs for a TFLite WHILE step)")
        elif misses:
            row["op_profile"] = profiles(aid)
            row["why"] = tflite_why(profiles(aid), profiles(f"{fmt}-fp32"), floor["tflite"], quant)
        rows.append(row)
    return {"model": name, "macs": macs, "keras_us": one.get("keras"),
            "gmacs_share_of_peak": round(max((r.get("gmacs") or 0) for r in rows) / peak1, 3) if peak1 else None,
            "rows": rows}


def _summary(report: dict) -> str:
    rows = [r for m in report["models"] for r in m["rows"] if r["status"] == "ok"]
    int8 = [r for r in rows if r["quant"] == "int8"]
    return (f"Summary: int8 ≤ 0.5x fp32 met by {sum(r['meets_int8_half'] for r in int8)} of {len(int8)} int8 artifacts; "
            f"≤ 2x the fastest met by {sum(r['meets_2x'] for r in rows)} of {len(rows)}; default threads not slower "
            f"for {sum(r['default_not_slower'] for r in rows)} of {len(rows)}.")


def markdown(report: dict) -> str:
    d = report["device"]
    out = ["# Performance: zoo models x runtime x precision, batch 1", "",
           f"Command: `{report['command']}`  ",
           f"Device: {d['cpu']} ({d['cpu_count']} cores; {report.get('cpu_flags', 'flags unknown')}), {d['os']}. Measured fp32 GEMM peak (numpy BLAS, 512^3): "
           f"{report['peak_gmacs_fp32'][1]} GMAC/s on 1 thread, {report['peak_gmacs_fp32'][2]} on 2. Per-call floor "
           f"(an identity model, batch 1): LiteRT {report['runtime_floor_us']['tflite']} µs, ONNX Runtime "
           f"{report['runtime_floor_us']['onnx']} µs.", "",
           f"p50 latency in µs, the lowest of {report.get('repeats', 1)} interleaved measurements of {report.get('runs', '?')} runs. Targets: int8 ≤ 0.5x fp32 of the same runtime; ≤ 2x the fastest artifact of the same "
           "model and precision; the default thread choice not slower than 1 thread (5 % tolerance).",
           "Where a target is missed, `why` is measured: for TFLite an op profile (`edgeseq.export.op_profile`: each "
           "op of the artifact timed alone on XNNPACK as the slope of 1 against 16 copies, ops in a loop counted per "
           "step, the rest of the measured invoke time is loop and dispatch); for ONNX, ORT's own profiler. Loop-step "
           "floors: a 28-step loop whose body adds 1, minus the identity model, per step: LiteRT "
           f"{report['runtime_floor_us'].get('tflite_loop_step', float('nan')):.2f} µs, ONNX Runtime "
           f"{report['runtime_floor_us'].get('onnx_loop_step', float('nan')):.2f} µs. Per-node floors: a chain of "
           f"{CHAIN} multiplications of a (1, 128) tensor, minus the identity model, per op: LiteRT "
           f"{report['runtime_floor_us'].get('tflite_node', float('nan')):.2f} µs, ONNX Runtime "
           f"{report['runtime_floor_us'].get('onnx_node', float('nan')):.2f} µs.", "", _summary(report), ""]
    for m in report["models"]:
        out += [f"## {m['model']}: {m['macs']:,} MACs per inference; Keras {m['keras_us']:.0f} µs per sample"
                if m["keras_us"] else f"## {m['model']}: {m['macs']:,} MACs", ""]
        rows = []
        for r in m["rows"]:
            if r["status"] != "ok":
                rows.append([r["id"], "-", "-", "-", "-", "-", "-", "MISSED: " + r["why"]])
                continue
            verdicts = []
            if r["quant"] == "int8":
                verdicts.append(f"int8/fp32 {r['int8_vs_fp32']:.2f}x" + ("" if r["meets_int8_half"] else " MISSED"))
            verdicts.append(f"vs fastest {r['vs_fastest_same_precision']:.2f}x" + ("" if r["meets_2x"] else " MISSED"))
            if not r["default_not_slower"]:
                verdicts.append("default threads slower: MISSED")
            if r.get("why"):
                verdicts.append("why: " + r["why"])
            rows.append([r["id"], f"{r['p50_1t_us']:.1f}", f"{r['p50_2t_us']:.1f}", f"{r['p50_default_us']:.1f}",
                         f"{r['two_threads_speedup']:.2f}x", f"{r['gmacs']:.2f}",
                         f"{r['gmacs'] / report['peak_gmacs_fp32'][1]:.1%}", "; ".join(verdicts)])
        out += [markdown_table(["artifact", "1 thread", "2 threads", "default", "2t speed-up", "GMAC/s", "of fp32 peak",
                                "targets"], rows), ""]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.exit(main())
