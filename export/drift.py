"""Per-time-step drift of a recurrent int8 artifact's hidden state from its float twin (TFLite and ONNX).

A recurrent artifact exposes only its final output. To see the state after step t, a probe copy of each
artifact (the int8 one and the fp32 one, which verify has shown equal to Keras) outputs the loop's state
variables after step t:

- TFLite: the WHILE condition's trip-count constant is set to t.
- ONNX, unrolled loop (how edgeseq exports an int8 SimpleRNN/GRU, :mod:`edgeseq.export.unroll`): the state after
  step t is a named tensor, made an output.
- ONNX ``Loop``: its trip count M is set to t.
- ONNX ``LSTM``/``GRU``/``RNN`` op (or ORT's ``DynamicQuantizeLSTM``): ``sequence_lens = [t]``, which makes
  its ``Y_h``/``Y_c`` the state after step t.

Both probes run on the same images, one at a time (batch 1, as deployed: ORT's dynamic int8 quantizes each
call's activations with that call's range), and the int8 state, dequantized, is compared with the float
state, step by step. This is how a user sees *why* a recurrent model quantizes badly: error that grows with
t is drift through the loop; error that is flat is rounding at the input or the head. A model with several
loops (a Bidirectional layer has two) is probed at the first one in graph order, which may be the backward
direction.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from edgeseq.export import coverage, unroll
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
    return None if op is None else coverage.tflite_trip_count(model, model.subgraphs[0], op)


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


def probe(flatbuffer: bytes, steps: int) -> bytes | None:
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
    return graph.dump(model)


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


# ONNX: the first Loop or recurrent op of the main graph
_ONNX_RECURRENT = ("LSTM", "GRU", "RNN", "DynamicQuantizeLSTM")
_ONNX_FLOAT = 1


def onnx_first_loop(model):
    """The first ``Loop`` or recurrent op of the main graph, or None."""
    return next((n for n in model.graph.node if n.op_type == "Loop" or n.op_type in _ONNX_RECURRENT), None)


def onnx_trip_count(data: bytes) -> int | None:
    """An unrolled loop's steps, a Loop's constant trip count M, or the sequence length of a recurrent op's
    input (by shape inference)."""
    import onnx

    model = onnx.load_from_string(data)
    unrolled = unroll.states_by_step(model)
    if unrolled:
        return max(unrolled)
    node = onnx_first_loop(model)
    if node is None:
        return None
    if node.op_type == "Loop":
        return coverage.onnx_loop_trips(node, {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer})
    inferred = onnx.shape_inference.infer_shapes(model).graph
    for info in list(inferred.value_info) + list(inferred.input):
        if info.name == node.input[0]:
            dims = info.type.tensor_type.shape.dim
            return int(dims[0].dim_value) if dims and dims[0].dim_value > 0 else None
    return None


def onnx_probe(data: bytes, steps: int) -> bytes | None:
    """A copy whose first loop stops after ``steps`` steps, with the loop's state variables as its outputs.

    Unrolled loop (:mod:`edgeseq.export.unroll`): outputs are its float states named for step ``steps``
    (the whole graph still runs; what follows does not change them). Loop: M set to ``steps``; outputs are
    the loop-carried float values of rank 2 with a free first (batch) dimension (constants the converter
    carries through the loop have fixed shapes). Recurrent op:
    ``sequence_lens = [steps]`` (batch 1); outputs ``Y_h`` and, for an LSTM, ``Y_c``.
    """
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load_from_string(data)
    unrolled = unroll.states_by_step(model)
    node = None if unrolled else onnx_first_loop(model)
    if unrolled:
        outputs = unrolled.get(steps, [])
    elif node is None:
        return None
    elif node.op_type == "Loop":
        model.graph.initializer.append(numpy_helper.from_array(np.array(steps, np.int64), "edgeseq_probe_trips"))
        node.input[0] = "edgeseq_probe_trips"
        body = next(a.g for a in node.attribute if a.name == "body")
        outputs = [node.output[k] for k, carried in enumerate(body.input[2:]) if unroll.is_state(carried)]
    else:
        model.graph.initializer.append(numpy_helper.from_array(np.array([steps], np.int32), "edgeseq_probe_lens"))
        node.input.extend([""] * max(0, 5 - len(node.input)))
        node.input[4] = "edgeseq_probe_lens"
        states = (1, 2) if node.op_type in ("LSTM", "DynamicQuantizeLSTM") else (1,)  # Y_h[, Y_c]
        node.output.extend([""] * max(0, 1 + len(states) - len(node.output)))
        outputs = []
        for k in states:
            node.output[k] = node.output[k] or f"edgeseq_probe_state_{k}"
            outputs.append(node.output[k])
    if not outputs:
        return None
    del model.graph.output[:]
    model.graph.output.extend(helper.make_tensor_value_info(name, _ONNX_FLOAT, None) for name in outputs)
    return model.SerializeToString()


def _onnx_states(data: bytes, images: np.ndarray) -> list[np.ndarray]:
    """Run an ONNX probe over ``images``, one at a time on one thread: one array per state, (N, units)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads, options.log_severity_level = 1, 1, 3
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    source = session.get_inputs()[0]
    shape = [1, *source.shape[1:]]
    collected = [[] for _ in session.get_outputs()]
    for image in images:
        for store, value in zip(collected, session.run(None, {source.name: image.reshape(shape).astype(np.float32)})):
            store.append(value.reshape(-1))
    return [np.stack(s) for s in collected]


_PROBES = {".tflite": (trip_count, probe, _states), ".onnx": (onnx_trip_count, onnx_probe, _onnx_states)}


def step_drift(int8_path: Path, fp32_path: Path, images: np.ndarray) -> dict | None:
    """Per step t = 1..T: mean and max |h_int8 - h_float| of every state variable, and the relative error.

    The artifacts are TFLite or ONNX (by suffix). None when they have no loop with a known trip count
    (nothing recurrent to report) or their loops do not match.
    """
    count, make_probe, run = _PROBES[Path(int8_path).suffix]
    int8, fp32 = Path(int8_path).read_bytes(), Path(fp32_path).read_bytes()
    steps = count(fp32)
    if not steps or count(int8) != steps:
        return None
    rows = []
    for t in range(1, steps + 1):
        q, f = make_probe(int8, t), make_probe(fp32, t)
        if q is None or f is None:
            return None
        quantized, reference = run(q, images), run(f, images)
        if len(quantized) != len(reference):
            return None
        for index, (hq, hf) in enumerate(zip(quantized, reference)):
            if hq.shape != hf.shape:
                return None
            diff, scale = np.abs(hq - hf), float(np.abs(hf).mean())
            rows.append({"step": t, "state": index, "mean_abs": float(diff.mean()), "max_abs": float(diff.max()),
                         "relative": float(diff.mean() / max(scale, 1e-12)), "float_mean_abs": scale})
    return {"images": len(images), "steps": steps, "states": 1 + max(r["state"] for r in rows), "rows": rows}


def markdown(drift: dict, fmt: str, every: int = 4) -> str:
    """A small table: every ``every``-th step and the last, per state variable."""
    lines = [f"Hidden-state drift of the {fmt} int8 artifact from {fmt} fp32, per time step "
             f"({drift['images']} test images):",
             "", "| step | state | mean abs err | max abs err | relative | mean abs float state |",
             "|---:|---:|---:|---:|---:|---:|"]
    for r in drift["rows"]:
        if r["step"] % every == 0 or r["step"] in (1, drift["steps"]):
            lines.append(f"| {r['step']} | {r['state']} | {r['mean_abs']:.4f} | {r['max_abs']:.3f} | "
                         f"{r['relative']:.1%} | {r.get('float_mean_abs', float('nan')):.3f} |")
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
