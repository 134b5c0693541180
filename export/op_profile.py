"""Where a TFLite artifact spends its time, op by op, measured on this CPU.

LiteRT's Python interpreter has no per-op profiler, so each op is timed on its own: a one-subgraph copy
of the model runs that op (same tensors, weights and quantization, on the same default resolver, XNNPACK
included) ``copies`` times side by side, and the op's cost is the slope ``(t(copies) - t(1)) /
(copies - 1)`` of the median invoke time, which cancels the per-call cost of Python and the interpreter.
Ops in a WHILE body count once per trip. What the ops do not account for (the measured whole-model time
minus their sum) is the loop itself: copying loop variables between subgraphs each step, the condition
subgraph, dispatch between delegate partitions.

Inputs are zeros (int32 index inputs: 0), so data-dependent ops (a SLICE whose size is computed) can be
timed cheaper than in the model; dense arithmetic does not depend on the values.
"""

from __future__ import annotations

import copy
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from edgeseq.export import coverage
from edgeseq.export.tflite_graph import dump

COPIES = 16
SKIP = ("WHILE", "IF", "CALL_ONCE")


def median_invoke_us(flatbuffer: bytes, runs: int, warmup: int = 30) -> float:
    """Median wall time of ``invoke()`` on one thread (inputs zero), in µs."""
    from edgeseq.runtimes.litert import interpreter_class

    interpreter = interpreter_class()[0](model_content=flatbuffer, num_threads=1)
    interpreter.allocate_tensors()
    for detail in interpreter.get_input_details():
        interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
    for _ in range(warmup):
        interpreter.invoke()
    times = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        interpreter.invoke()
        times.append(time.perf_counter_ns() - start)
    return float(np.median(times)) / 1e3


def _is_constant(model, sg, index: int) -> bool:
    data = model.buffers[sg.tensors[index].buffer].data
    return data is not None and len(data) > 0


def isolated(model, sg, op, copies: int) -> bytes:
    """A model whose only subgraph runs ``op`` ``copies`` times on the same inputs, every copy's outputs outputs."""
    schema = coverage.tflite_schema()
    new = schema.SubGraphT()
    new.tensors, remap = [], {}

    def tensor(i: int, fresh: bool = False) -> int:
        if i < 0:
            return -1
        if fresh or i not in remap:
            t = copy.copy(sg.tensors[i])
            if fresh:
                t.buffer = 0  # an output of its own: no data
            new.tensors.append(t)
            if not fresh:
                remap[i] = len(new.tensors) - 1
            return len(new.tensors) - 1
        return remap[i]

    inputs = [tensor(i) for i in op.inputs]
    new.inputs = list(dict.fromkeys(remap[i] for i in op.inputs if i >= 0 and not _is_constant(model, sg, i)))
    new.operators = []
    for k in range(copies):
        twin = copy.copy(op)
        twin.inputs = list(inputs)
        twin.outputs = [tensor(i, fresh=k > 0) for i in op.outputs]
        new.operators.append(twin)
    new.outputs = [i for twin in new.operators for i in twin.outputs]  # all used, or XNNPACK prunes the copies
    one = schema.ModelT()
    one.version, one.operatorCodes, one.buffers, one.subgraphs = 3, model.operatorCodes, model.buffers, [new]
    one.description = b"edgeseq op profile"
    return dump(one)


def op_profile(path: str | Path, runs: int = 300, copies: int = COPIES) -> dict:
    """Per op: µs each (isolated), executions per inference, µs per inference; the whole model's median;
    and the share the ops do not explain (loop and dispatch overhead)."""
    flatbuffer = Path(path).read_bytes()
    model = coverage.load_tflite(flatbuffer)
    rows = []
    for index, sg, op, name, weight in coverage.tflite_ops(model):
        if name in SKIP:
            continue
        try:
            one = median_invoke_us(isolated(model, sg, op, 1), runs)
            many = median_invoke_us(isolated(model, sg, op, copies), runs)
            each = max(0.0, (many - one) / (copies - 1))
        except Exception as exc:  # noqa: BLE001 - an op that cannot run alone is reported, not fatal
            rows.append({"op": name, "in_loop": index != 0, "executions": weight, "error": str(exc)[:120]})
            continue
        rows.append({"op": name, "in_loop": index != 0, "executions": weight, "us_each": round(each, 3),
                     "us_per_inference": round(each * weight, 2)})
    total = median_invoke_us(flatbuffer, runs)
    explained = sum(r.get("us_per_inference", 0.0) for r in rows)
    return {"total_us": round(total, 2), "ops_us": round(explained, 2),
            "unexplained_us": round(max(0.0, total - explained), 2), "rows": rows}


def by_op(profile: dict) -> dict[str, float]:
    """µs per inference per op type (loop-body ops marked ``@loop``), largest first."""
    totals: dict[str, float] = defaultdict(float)
    for r in profile["rows"]:
        totals[r["op"] + ("@loop" if r["in_loop"] else "")] += r.get("us_per_inference", 0.0)
    return dict(sorted(((k, round(v, 2)) for k, v in totals.items()), key=lambda kv: -kv[1]))
