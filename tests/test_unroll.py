"""ONNX Loops (what tf2onnx makes of a SimpleRNN/GRU): unrolled (same outputs, weights once, named states) or
replaced by ONNX's GRU or RNN op (same outputs, else the Loop stays)."""

from __future__ import annotations

import copy

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from edgeseq.export import drift, fuse, unroll  # noqa: E402
from edgeseq.export.onnx import fused_cells, ort_load_error, unrolled  # noqa: E402

T, IN, UNITS = 6, 3, 4


def _cell(cell: str) -> list:
    """Body nodes from ``x_t``, ``h_in`` and the weights to ``h_new``: a SimpleRNN, or a GRU as tf2onnx leaves
    a Keras 3 one (bias added after each matmul, gates split; the reset gate after the recurrent matmul).
    "swapped-gru" mixes the old state and the candidate the other way round: a GRU's shapes, not ONNX's GRU;
    "linear" is a SimpleRNN without an activation, which ONNX's RNN op does not have."""
    if cell in ("simple", "linear"):
        return [helper.make_node("MatMul", ["x_t", "kernel"], ["xw"]),
                helper.make_node("Add", ["xw", "bias"], ["xwb"]),
                helper.make_node("MatMul", ["h_in", "recurrent_in"], ["hu"]),
                helper.make_node("Add", ["xwb", "hu"], ["z" if cell == "simple" else "h_new"]),
                *([helper.make_node("Tanh", ["z"], ["h_new"])] if cell == "simple" else [])]
    keep, mix = ("z", "one_minus_z") if cell == "gru" else ("one_minus_z", "z")
    return [helper.make_node("MatMul", ["x_t", "kernel"], ["xw"]),
            helper.make_node("Add", ["xw", "bias"], ["xwb"]),
            helper.make_node("Split", ["xwb"], ["x_z", "x_r", "x_h"], axis=-1),
            helper.make_node("MatMul", ["h_in", "recurrent_in"], ["hu"]),
            helper.make_node("Add", ["hu", "recurrent_bias"], ["hub"]),
            helper.make_node("Split", ["hub"], ["h_z", "h_r", "h_h"], axis=-1),
            helper.make_node("Add", ["x_z", "h_z"], ["z_in"]),
            helper.make_node("Sigmoid", ["z_in"], ["z"]),
            helper.make_node("Add", ["x_r", "h_r"], ["r_in"]),
            helper.make_node("Sigmoid", ["r_in"], ["r"]),
            helper.make_node("Mul", ["r", "h_h"], ["r_h"]),
            helper.make_node("Add", ["x_h", "r_h"], ["c_in"]),
            helper.make_node("Tanh", ["c_in"], ["candidate"]),
            helper.make_node("Sub", ["one_f", "z"], ["one_minus_z"]),
            helper.make_node("Mul", [keep, "h_in"], ["kept"]),
            helper.make_node("Mul", [mix, "candidate"], ["mixed"]),
            helper.make_node("Add", ["kept", "mixed"], ["h_new"])]


def _rnn_loop(trips: int = T, condition: str = "counter", last_step_only: bool = True, cell: str = "simple"):
    """A tf2onnx-shaped recurrent layer: a Loop over the time-major input, the recurrent weights carried
    through it (the input kernel read from outside), a counter and a condition, the state and a per-step
    scan output."""
    rng = np.random.default_rng(1)
    gates = 1 if cell in ("simple", "linear") else 3
    body_nodes = [
        helper.make_node("Add", ["counter_in", "one"], ["counter_out"]),
        helper.make_node("Gather", ["sequence", "counter_in"], ["x_t"], axis=0),
        *_cell(cell),
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
         helper.make_tensor_value_info("recurrent_in", TensorProto.FLOAT, [UNITS, gates * UNITS])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("counter_out", TensorProto.INT32, []),
         helper.make_tensor_value_info("h_out", TensorProto.FLOAT, ["N", UNITS]),
         helper.make_tensor_value_info("recurrent_out", TensorProto.FLOAT, [UNITS, gates * UNITS]),
         helper.make_tensor_value_info("h_new", TensorProto.FLOAT, ["N", UNITS])],
        [numpy_helper.from_array(np.array(1, np.int32), "one"), numpy_helper.from_array(np.array(trips, np.int32), "limit"),
         numpy_helper.from_array(np.array(1e9, np.float32), "big"),
         numpy_helper.from_array(np.array(1, np.float32), "one_f")])
    inits = [numpy_helper.from_array(np.array(trips, np.int64), "trips"), numpy_helper.from_array(np.array(True), "go"),
             numpy_helper.from_array(np.array(0, np.int32), "zero"),
             numpy_helper.from_array(rng.normal(size=(IN, gates * UNITS)).astype(np.float32), "kernel"),
             numpy_helper.from_array(rng.normal(size=(gates * UNITS,)).astype(np.float32), "bias"),
             numpy_helper.from_array(rng.normal(size=(gates * UNITS,)).astype(np.float32), "recurrent_bias"),
             numpy_helper.from_array(rng.normal(size=(UNITS, gates * UNITS)).astype(np.float32) * 0.5, "recurrent"),
             numpy_helper.from_array(rng.normal(size=(1, UNITS)).astype(np.float32) * 0.5, "h0_row"),
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
    assert kept is model and "unrolled graph differed by" in note["loops"] and "Loop kept" in note["loops"]

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


@pytest.mark.parametrize("cell, op", [("gru", "GRU"), ("simple", "RNN")])
@pytest.mark.parametrize("last_step_only", [True, False])
def test_a_gru_or_simple_rnn_loop_becomes_one_onnx_op(cell, op, last_step_only):
    model = _rnn_loop(cell=cell, last_step_only=last_step_only)
    fused, note = fused_cells(model)
    ops = [n.op_type for n in fused.graph.node]
    assert ops.count(op) == 1 and "Loop" not in ops and f"replaced by ONNX {op} (hidden 4)" in note["fused"], note
    x = np.random.default_rng(0).random((3, T, IN), dtype=np.float32)
    for before, after in zip(_run(model, x), _run(fused, x)):  # the final state and the output
        np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-6)
    assert len(fused.graph.initializer) < len(model.graph.initializer)  # the Loop's weights are gone
    # the drift probe reads the op's state after t steps: the Loop's after t trips
    assert drift.onnx_trip_count(fused.SerializeToString()) == T
    one = x[:1]
    for t in (1, 4):
        stopped = copy.deepcopy(model)
        stopped.graph.initializer.append(numpy_helper.from_array(np.array(t, np.int64), "t_trips"))
        next(n for n in stopped.graph.node if n.op_type == "Loop").input[0] = "t_trips"
        session = ort.InferenceSession(drift.onnx_probe(fused.SerializeToString(), t), providers=["CPUExecutionProvider"])
        np.testing.assert_allclose(session.run(None, {"x": one})[0].reshape(1, UNITS), _run(stopped, one)[0],
                                   rtol=1e-5, atol=1e-6)


def test_a_loop_that_is_not_onnx_gru_or_rnn_is_kept():
    swapped = _rnn_loop(cell="swapped-gru")  # a GRU's shapes and ops, another update rule
    assert fuse.fuse_loops(copy.deepcopy(swapped))[0]["fused"]  # the data flow matches ...
    kept, note = fused_cells(swapped)
    assert kept is swapped and "differed by" in note["fused"] and "Loop kept" in note["fused"]  # ... the numbers do not
    gated = _rnn_loop(cell="gru")  # a GRU whose new state is also scaled by something computed outside
    loop = next(n for n in gated.graph.node if n.op_type == "Loop")
    body = next(a.g for a in loop.attribute if a.name == "body")
    next(n for n in body.node if "h_new" in n.output).output[:] = ["h_raw"]
    body.node.append(helper.make_node("Mul", ["h_raw", "gate"], ["h_new"]))
    gated.graph.node.insert(list(gated.graph.node).index(loop), helper.make_node("Sigmoid", ["h0"], ["gate"]))
    report = fuse.fuse_loops(copy.deepcopy(gated))
    assert not report[0]["fused"] and "reads 'gate' from outside the loop" in report[0]["why"], report
    linear = _rnn_loop(cell="linear")
    report = fuse.fuse_loops(copy.deepcopy(linear))
    assert not report[0]["fused"] and "comes from Add, not one of ONNX RNN's" in report[0]["why"], report
    assert fused_cells(linear) == (linear, {})


def test_a_kept_loop_gets_its_carried_weights_as_body_initializers():
    """What int8 does with a Loop that stays a Loop: the recurrent weights carried through it become body
    initializers (quantizers only reach initializers), stored once, and the graph computes the same."""
    from edgeseq.export.onnx_quant import hoist_loop_constants

    model = _rnn_loop()
    hoisted = copy.deepcopy(model)
    assert hoist_loop_constants(hoisted) == 1
    loop = next(n for n in hoisted.graph.node if n.op_type == "Loop")
    body = next(a.g for a in loop.attribute if a.name == "body")
    assert len(loop.input) == 4  # trips, condition, counter, state: the weights no longer carried
    assert [list(i.dims) for i in body.initializer if len(i.dims) == 2] == [[UNITS, UNITS]]
    assert "recurrent" not in {i.name for i in hoisted.graph.initializer}
    x = np.random.default_rng(2).random((2, T, IN), dtype=np.float32)
    for before, after in zip(_run(model, x), _run(hoisted, x)):
        np.testing.assert_allclose(after, before, rtol=1e-6)
