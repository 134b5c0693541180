"""Per-time-step drift of a recurrent int8 TFLite artifact's hidden state from its float twin.

A recurrent artifact exposes only its final output. To see the state after step t, a probe copy of each
artifact (the int8 one and the fp32 one, which verify has shown equal to Keras) has its loop's trip
count set to t and the loop's state variables made the model's outputs; both probes run on the same
images and the int8 state, dequantized, is compared with the float state, step by step. This is how a
user sees *why* a recurrent model quantizes badly: error that grows with t is drift through the loop;
error that is flat is rounding at the input or the head.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from edgeseq.export import tflite_graph as graph

INT32 = 2


def _state_variables(model, op) -> list[int]:
    """Loop variables that are states: rank-2 (batch, units) tensors."""
    outer = model.subgraphs[0]
    return [k for k, t in enumerate(op.outputs) if outer.tensors[int(t)].shape is not None
            and len(outer.tensors[int(t)].shape) == 2 and outer.tensors[int(t)].type != INT32]


def _first_loop(model):
    """The first WHILE op of the main graph, or None."""
    return next((op for g, op in graph.while_ops(model) if g == 0), None)


def trip_count(flatbuffer: bytes) -> int | None:
    """The constant trip count of the model's first WHILE loop, or None when it is not a constant."""
    model = graph.load(flatbuffer)
    op = _first_loop(model)
    if op is None:
        return None
    limits = _limits(model, op)
    return int(np.frombuffer(bytes(model.buffers[limits[0]].data), np.int32)[0]) if limits else None


def _limits(model, op) -> list[int]:
    """Buffers of the int32 scalar constants the loop condition compares its counters with."""
    cond = model.subgraphs[op.builtinOptions.condSubgraphIndex]
    found = []
    for cop in cond.operators:
        if graph.op_name(model, cop) != "LESS":
            continue
        for i in cop.inputs:
            tensor = cond.tensors[int(i)]
            data = model.buffers[tensor.buffer].data
            if tensor.type == INT32 and data is not None and len(data) == 4:
                found.append(tensor.buffer)
    return sorted(set(found))


def probe(flatbuffer: bytes, steps: int) -> tuple[bytes, list[int]] | None:
    """A copy that stops its first loop after ``steps`` trips and outputs the loop's state variables."""
    model = graph.load(flatbuffer)
    op = _first_loop(model)
    if op is None:
        return None
    limits, states = _limits(model, op), _state_variables(model, op)
    if not limits or not states:
        return None
    for buffer in limits:
        model.buffers[buffer].data = np.frombuffer(np.int32(steps).tobytes(), np.uint8).copy()
    model.subgraphs[0].outputs = [int(op.outputs[k]) for k in states]
    model.signatureDefs = []
    return graph.dump(model), states


def _states(flatbuffer: bytes, images: np.ndarray) -> list[np.ndarray]:
    """Run a probe over ``images`` (one at a time, batch 1): one float array per state, (N, units)."""
    from edgeseq.runtimes.litert import dequantize, interpreter_class, quantize

    interpreter = interpreter_class()[0](model_content=flatbuffer, num_threads=1)
    interpreter.allocate_tensors()
    source = interpreter.get_input_details()[0]
    outputs = interpreter.get_output_details()
    collected = [[] for _ in outputs]
    for image in images:
        x = image.reshape(source["shape"]).astype(np.float32)
        if source["dtype"] != np.float32:
            x = quantize(x, source)
        interpreter.set_tensor(source["index"], x)
        interpreter.invoke()
        for store, detail in zip(collected, outputs):
            value = interpreter.get_tensor(detail["index"])
            store.append((dequantize(value, detail) if detail["dtype"] != np.float32 else value).reshape(-1))
    return [np.stack(s) for s in collected]


def step_drift(int8_path: Path, fp32_path: Path, images: np.ndarray) -> dict | None:
    """Per step t = 1..T: mean and max |h_int8 - h_float| of every state variable, and the relative error.

    None when the artifacts have no loop with a constant trip count (nothing recurrent to report).
    """
    int8, fp32 = Path(int8_path).read_bytes(), Path(fp32_path).read_bytes()
    steps = trip_count(fp32)
    if not steps or trip_count(int8) != steps:
        return None
    rows = []
    for t in range(1, steps + 1):
        q, f = probe(int8, t), probe(fp32, t)
        if q is None or f is None or len(q[1]) != len(f[1]):
            return None
        for index, (hq, hf) in enumerate(zip(_states(q[0], images), _states(f[0], images))):
            if hq.shape != hf.shape:
                return None
            diff = np.abs(hq - hf)
            rows.append({"step": t, "state": index, "mean_abs": float(diff.mean()), "max_abs": float(diff.max()),
                         "relative": float(diff.mean() / max(np.abs(hf).mean(), 1e-12))})
    return {"images": len(images), "steps": steps, "states": 1 + max(r["state"] for r in rows), "rows": rows}


def markdown(drift: dict, every: int = 4) -> str:
    """A small table: every ``every``-th step and the last, per state variable."""
    lines = [f"Hidden-state drift of the int8 artifact from fp32, per time step ({drift['images']} test images):",
             "", "| step | state | mean abs err | max abs err | relative |", "|---:|---:|---:|---:|---:|"]
    for r in drift["rows"]:
        if r["step"] % every == 0 or r["step"] in (1, drift["steps"]):
            lines.append(f"| {r['step']} | {r['state']} | {r['mean_abs']:.4f} | {r['max_abs']:.3f} | "
                         f"{r['relative']:.1%} |")
    return "\n".join(lines) + "\n"


def plot(drift: dict, path: Path, title: str) -> Path:
    from edgeseq import plots

    series: dict[str, tuple[list, list]] = {}
    for r in drift["rows"]:
        steps, errors = series.setdefault(f"state {r['state']}", ([], []))
        steps.append(r["step"])
        errors.append(r["mean_abs"])
    return plots.step_series(series, path, title, "time step", "mean |h_int8 - h_fp32|")


def summary(drift: dict) -> dict:
    """For the manifest: mean |error| of the first state at the first, middle and last step."""
    rows = {r["step"]: r for r in drift["rows"] if r["state"] == 0}
    picks = sorted({1, drift["steps"] // 2 or 1, drift["steps"]})
    return {"images": drift["images"], "steps": drift["steps"], "states": drift["states"],
            "state0_mean_abs_by_step": {str(t): round(rows[t]["mean_abs"], 5) for t in picks}}
