"""Unrolling ONNX Loops (what tf2onnx makes of a SimpleRNN/GRU): same outputs, weights once, named states."""

from __future__ import annotations

import copy

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from edgeseq.export import drift, unroll  # noqa: E402
from edgeseq.export.onnx import ort_load_error, unrolled  # noqa: E402

T, IN, UNITS = 6, 3, 4


def _rnn_loop(trips: int = T, condition: str = "counter", last_step_only: bool = True):
    """A tf2onnx-shaped SimpleRNN: a Loop over the time-major input, the weights carried through it,
    a counter and a condition, the state and a per-step scan output."""
    rng = np.random.default_rng(1)
    body_nodes = [
        helper.make_node("Add", ["counter_in", "one"], ["counter_out"]),
        helper.make_node("Gather", ["sequence", "counter_in"], ["x_t"], axis=0),
        helper.make_node("MatMul", ["x_t", "kernel"], ["xw"]),
        helper.make_node("Add", ["xw", "bias"], ["xwb"]),
        helper.make_node("MatMul", ["h_in", "recurrent_in"], ["hu"]),
        helper.make_node("Add", ["xwb", "hu"], ["z"]),
        helper.make_node("Tanh", ["z"], ["h_new"]),
        helper.make_node("Identity", ["h_new"], ["h_out"]),
        helper.make_node("Identity", ["recurrent_in"], ["recurrent_out"]),
    ]
    if condition == "counter":
        body_nodes.append(helper.make_node("Less", ["counter_out", "limit"], ["cond_out"]))
    else:  # stops when the state grows: data-dependent
        body_nodes += [helper.make_node("ReduceSum", ["h_new"], ["total"], keepdims=0),
                       helper.make_node("Less", ["total", "big"], ["cond_out"])]
    body = helper.make_graph(
        body_nodes, "body",
        [helper.make_tensor_value_info("iter", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("counter_in", TensorProto.INT32, []),
         helper.make_tensor_value_info("h_in", TensorProto.FLOAT, ["N", UNITS]),
         helper.make_tensor_value_info("recurrent_in", TensorProto.FLOAT, [UNITS, UNITS])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("counter_out", TensorProto.INT32, []),
         helper.make_tensor_value_info("h_out", TensorProto.FLOAT, ["N", UNITS]),
         helper.make_tensor_value_info("recurrent_out", TensorProto.FLOAT, [UNITS, UNITS]),
         helper.make_tensor_value_info("h_new", TensorProto.FLOAT, ["N", UNITS])],
        [numpy_helper.from_array(np.array(1, np.int32), "one"), numpy_helper.from_array(np.array(trips, np.int32), "limit"),
         numpy_helper.from_array(np.array(1e9, np.float32), "big")])
    inits = [numpy_helper.from_array(np.array(trips, np.int64), "trips"), numpy_helper.from_array(np.array(True), "go"),
             numpy_helper.from_array(np.array(0, np.int32), "zero"),
             numpy_helper.from_array(rng.normal(size=(IN, UNITS)).astype(np.float32), "kernel"),
             numpy_helper.from_array(rng.normal(size=(UNITS,)).astype(np.float32), "bias"),
             numpy_helper.from_array(rng.normal(size=(UNITS, UNITS)).astype(np.float32) * 0.5, "recurrent"),
             numpy_helper.from_array(np.zeros((1, UNITS), np.float32), "h0_row"),
             numpy_helper.from_array(np.array([-1], np.int64), "minus_one"),
             numpy_helper.from_array(np.array([2**31 - 1], np.int64), "end"),
             numpy_helper.from_array(np.array([0], np.int64), "axis0")]
    nodes = [
        helper.make_node("Transpose", ["x"], ["sequence"], perm=[1, 0, 2]),
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Slice", ["shape", "axis0", "end_one"], ["batch"]),
        helper.make_node("Concat", ["batch", "units"], ["h0_shape"], axis=0),
        helper.make_node("Expand", ["h0_row", "h0_shape"], ["h0"]),
        helper.make_node("Loop", ["trips", "go", "zero", "h0", "recurrent"], ["count", "h_last", "rec", "all_h"], body=body),
    ]
    inits += [numpy_helper.from_array(np.array([1], np.int64), "end_one"),
              numpy_helper.from_array(np.array([UNITS], np.int64), "units")]
    outputs = [helper.make_tensor_value_info("h_last", TensorProto.FLOAT, ["N", UNITS])]
    if last_step_only:  # what tf2onnx does for return_sequences=False: the scan output's last step
        nodes += [helper.make_node("Slice", ["all_h", "minus_one", "end", "axis0"], ["last"]),
                  helper.make_node("Squeeze", ["last", "axis0"], ["y"])]
        outputs.append(helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", UNITS]))
    else:
        nodes.append(helper.make_node("Identity", ["all_h"], ["y"]))
        outputs.append(helper.make_tensor_value_info("y", TensorProto.FLOAT, [T, "N", UNITS]))
    graph = helper.make_graph(nodes, "rnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", T, IN])],
                              outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _run(model, x):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})


@pytest.mark.parametrize("last_step_only", [True, False])
def test_unrolled_loop_computes_what_the_loop_did(last_step_only):
    model = _rnn_loop(last_step_only=last_step_only)
    flat = copy.deepcopy(model)
    report = unroll.unroll_loops(flat)
    assert report[0]["unrolled"] and report[0]["trips"] == T and report[0]["input_projections_hoisted"] == 1
    onnx.checker.check_model(flat)
    x = np.random.default_rng(0).random((3, T, IN), dtype=np.float32)
    for before, after in zip(_run(model, x), _run(flat, x)):
        np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-6)
    ops = [n.op_type for n in flat.graph.node]
    assert "Loop" not in ops and ops.count("Identity") == 1 + (not last_step_only)  # naming graph outputs
    # the cell's weights are stored once, and the T input projections are one MatMul over the sequence
    assert sum(1 for i in flat.graph.initializer if list(i.dims) == [UNITS, UNITS]) == 1
    assert sum(1 for n in flat.graph.node if n.op_type == "MatMul" and "sequence" in n.input) == 1
    assert ops.count("MatMul") == T + 1 and ops.count("Tanh") == T
    # the state after each step is named, and equals the Loop's state after that many trips
    steps = unroll.states_by_step(flat)
    assert sorted(steps) == list(range(1, T + 1)) and all(len(v) == 1 for v in steps.values())
    for t in (1, 3, T):
        probe = drift.onnx_probe(flat.SerializeToString(), t)
        stopped = copy.deepcopy(model)
        stopped.graph.initializer.append(numpy_helper.from_array(np.array(t, np.int64), "t_trips"))
        next(n for n in stopped.graph.node if n.op_type == "Loop").input[0] = "t_trips"
        session = ort.InferenceSession(probe, providers=["CPUExecutionProvider"])
        np.testing.assert_allclose(session.run(None, {"x": x})[0], _run(stopped, x)[0], rtol=1e-5, atol=1e-6)
    assert drift.onnx_trip_count(flat.SerializeToString()) == T


@pytest.mark.parametrize("case, why", [
    ("data-dependent", "loop condition is not a known constant true on every trip"),
    ("too long", "too large to unroll"),
])
def test_a_loop_that_cannot_be_unrolled_is_kept_and_says_why(case, why):
    model = _rnn_loop(condition="state") if case == "data-dependent" else _rnn_loop(trips=unroll.MAX_TRIPS + 1)
    kept = copy.deepcopy(model)
    report = unroll.unroll_loops(kept)
    assert not report[0]["unrolled"] and why in report[0]["why"]
    assert kept == model  # untouched, names included


def test_the_exporter_keeps_the_loop_when_the_unrolled_graph_differs(monkeypatch):
    model = _rnn_loop()
    flat, note = unrolled(model)
    assert "Loop" not in {n.op_type for n in flat.graph.node} and note["loops"].startswith("unrolled (6 steps of 10 nodes)")
    real = unroll.unroll_loops

    def wrong(graph_model):  # an unroller bug, deliberately: the recurrent weights changed
        report = real(graph_model)
        weights = next(i for i in graph_model.graph.initializer if list(i.dims) == [UNITS, UNITS])
        weights.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weights) * 1.1, weights.name))
        return report

    monkeypatch.setattr(unroll, "unroll_loops", wrong)
    kept, note = unrolled(model)
    assert kept is model and "differed from the Loop" in note["loops"] and "Loop kept" in note["loops"]

    def unloadable(graph_model):  # one ORT cannot open
        report = real(graph_model)
        next(n for n in graph_model.graph.node if n.op_type == "Tanh").op_type = "NoSuchOp"
        return report

    monkeypatch.setattr(unroll, "unroll_loops", unloadable)
    kept, note = unrolled(model)
    assert kept is model and note["loops"].startswith("unrolled graph refused (") and "Loop kept" in note["loops"]


def test_ort_load_error_names_what_onnx_runtime_refuses():
    assert ort_load_error(_rnn_loop()) is None
    broken = _rnn_loop()
    broken.graph.node[0].op_type = "NoSuchOp"
    reason = ort_load_error(broken)
    assert reason and "NoSuchOp" in reason and "\n" not in reason
