"""Replace an ONNX ``Loop`` that computes a GRU or SimpleRNN cell by ONNX's own ``GRU`` or ``RNN`` op.

tf2onnx recognises a Keras 3 ``LSTM`` and emits ONNX ``LSTM``, but not a Keras 3 ``GRU`` (its pattern wants
the Keras 2 graph: a bias read straight from a loop input, the recurrent projection split, not sliced) nor a
``SimpleRNN``, so they stay ``Loop``s. Unrolled (:mod:`edgeseq.export.unroll`) a GRU is still ~490 kernel
launches per inference and a SimpleRNN ~120, against one for ORT's ``GRU`` or ``RNN`` kernel (zoo, batch 1,
one thread: GRU 386 -> 145 µs, SimpleRNN 116 -> 95 µs).

The cell is found by its data flow, whatever ops a converter used for the bias split or the gate slices:

- one float state ``h`` carried through the loop (rank 2, free batch); other carried values are either
  handed on unchanged (the weights) or counters nobody reads after the loop;
- nothing read from outside the loop but the sequence and constants (a mask would be);
- one ``MatMul(x_t, W)`` with ``x_t = Gather(X, step)`` of a sequence ``X`` outside the loop, one
  ``MatMul(h, R)``, ``W`` (inputs, gH) and ``R`` (H, gH) constants, g = 3 gates (GRU) or 1 (SimpleRNN); an
  ``Add`` of a constant right after either is its bias (evaluated here, split or squeezed as the converter
  left it);
- for a SimpleRNN, the new state is a ``Tanh``, ``Relu`` or ``Sigmoid`` (ONNX ``RNN``'s activation);
- the per-step output, if read after the loop, is the new state.

What is between the matmuls and the new state is assumed, not matched: for a GRU the gate order (z, r, h)
and the reset gate applied after the recurrent matmul (``linear_before_reset=1``, Keras'
``reset_after=True``), for a SimpleRNN ``act(xW + hR + b)``. The exporter runs the fused graph and the Loop
on the same inputs and keeps the Loop unless the outputs agree (a ``reset_after=False`` cell or other
activations simply do not).
"""

from __future__ import annotations

import numpy as np

from edgeseq.export import unroll
from edgeseq.lazy import require


class _NoMatch(Exception):
    pass


RNN_ACTIVATIONS = ("Tanh", "Relu", "Sigmoid")  # ONNX RNN's activations that a Keras SimpleRNN can have


def fuse_loops(model) -> list[dict]:
    """Replace, in place, every main-graph Loop that computes a GRU or SimpleRNN cell; one entry per Loop:
    fused (with the op), or why not."""
    onnx = require("onnx")
    graph = model.graph
    report = []
    for index, node in enumerate([n for n in graph.node if n.op_type == "Loop"]):
        try:
            cell = _match(node, graph, onnx)
        except _NoMatch as why:
            report.append({"loop": index, "fused": False, "why": str(why)})
            continue
        _splice(graph, node, cell, index, onnx)
        report.append({"loop": index, "fused": True, "op": cell["op"], "hidden_size": cell["hidden"]})
    if any(r["fused"] for r in report):
        unroll.prune(graph)
    return report


def _alias(name: str, producers: dict) -> str:
    """``name`` with Identity nodes looked through."""
    while name in producers and producers[name].op_type == "Identity":
        name = producers[name].input[0]
    return name


def _known_values(node, body, graph, onnx) -> dict:
    """Names with a value fixed for the whole loop: initializers (outer or the body's), weights handed through
    the loop, and what the body computes from those alone (a bias split, a squeeze)."""
    outer = {i.name: onnx.numpy_helper.to_array(i) for i in graph.initializer}
    n_carried = len(node.input) - 2
    known = {**outer, **{i.name: onnx.numpy_helper.to_array(i) for i in body.initializer}}  # a body reads both
    for value in body.input:  # ... unless its own inputs shadow them
        known.pop(value.name, None)
    for k in unroll.passthrough(body, n_carried):
        if node.input[2 + k] in outer:
            known[body.input[2 + k].name] = outer[node.input[2 + k]]
    for n in body.node:
        if n.input and all(not x or x in known for x in n.input) and not any(a.type == onnx.AttributeProto.GRAPH
                                                                            for a in n.attribute):
            folded = unroll.fold(n, [known[x] if x else None for x in n.input], limit=1 << 24)
            if folded is not None:
                known.update(zip(n.output, folded))
    return known


def _match(node, graph, onnx) -> dict:
    body = next((a.g for a in node.attribute if a.name == "body"), None)
    if body is None:
        raise _NoMatch("no body")
    n_carried = len(node.input) - 2
    same = unroll.passthrough(body, n_carried)
    producers = {o: n for n in body.node for o in n.output}
    states = [k for k in range(n_carried) if k not in same and unroll.is_state(body.input[2 + k])]
    if len(states) != 1:
        raise _NoMatch(f"{len(states)} float states carried, not one")
    k_state = states[0]
    read_after = {x for n in graph.node for x in n.input} | {o.name for o in graph.output}
    for k in range(n_carried):
        if k != k_state and k not in same and node.output[k] in read_after:
            raise _NoMatch(f"carried value {k} (not the state) is read after the loop")
    h_in, h_out = body.input[2 + k_state].name, _alias(body.output[1 + k_state].name, producers)
    known = _known_values(node, body, graph, onnx)
    inside = set(producers) | {i.name for i in body.input} | set(known)
    x_proj = h_proj = None
    for n in body.node:
        if n.op_type != "MatMul" or n.input[1] not in known or np.asarray(known[n.input[1]]).ndim != 2:
            continue
        operand = _alias(n.input[0], producers)
        source = producers.get(operand)
        if operand == h_in:
            if h_proj is not None:
                raise _NoMatch("more than one matmul reads the state")
            h_proj = n
        elif (source is not None and source.op_type == "Gather" and source.input[0] not in inside
              and next((a.i for a in source.attribute if a.name == "axis"), 0) == 0):
            if x_proj is not None:
                raise _NoMatch("more than one matmul reads the input sequence")
            x_proj, sequence = n, source.input[0]
        else:
            raise _NoMatch("a matmul reads neither the step's input nor the state")
    if x_proj is None or h_proj is None:
        raise _NoMatch("no input and recurrent matmul pair")
    others = {x for n in body.node for x in n.input if x and x not in inside} - {sequence}
    if others:  # a mask, a second sequence: something a GRU or RNN op would not read
        raise _NoMatch(f"the body also reads {sorted(others)[0]!r} from outside the loop")
    kernel, recurrent = (np.asarray(known[p.input[1]], np.float32) for p in (x_proj, h_proj))
    hidden = recurrent.shape[0]
    gates = recurrent.shape[1] // hidden if hidden else 0
    if gates not in (1, 3) or recurrent.shape != (hidden, gates * hidden) or kernel.shape[1] != gates * hidden:
        raise _NoMatch(f"weights {kernel.shape} and {recurrent.shape} are neither a GRU's (inputs, 3H) and (H, 3H) "
                       "nor a SimpleRNN's (inputs, H) and (H, H)")
    activation = producers[h_out].op_type if h_out in producers else None
    if gates == 1 and activation not in RNN_ACTIVATIONS:
        raise _NoMatch(f"the new state comes from {activation or 'no node'}, not one of ONNX RNN's "
                       f"{', '.join(RNN_ACTIVATIONS)}")
    n_scan = len(body.output) - 1 - n_carried
    for j in range(n_scan):
        out = node.output[n_carried + j] if n_carried + j < len(node.output) else ""
        if out in read_after and _alias(body.output[1 + n_carried + j].name, producers) != h_out:
            raise _NoMatch(f"per-step output {j} is not the state")
    width = gates * hidden
    attributes = {"linear_before_reset": 1} if gates == 3 else {"activations": [activation]}
    return {"sequence": sequence, "h0": node.input[2 + k_state], "k_state": k_state, "n_carried": n_carried,
            "op": "GRU" if gates == 3 else "RNN", "attributes": attributes,
            "hidden": hidden, "kernel": kernel, "recurrent": recurrent, "same": same,
            "input_bias": _bias(x_proj, body, known, width), "recurrent_bias": _bias(h_proj, body, known, width)}


def _bias(matmul, body, known: dict, width: int) -> np.ndarray:
    """The constant added right after ``matmul`` (``width`` values), or zeros when none is."""
    users = [n for n in body.node if matmul.output[0] in n.input]
    if len(users) == 1 and users[0].op_type == "Add":
        other = [x for x in users[0].input if x != matmul.output[0]]
        if len(other) == 1 and other[0] in known and np.asarray(known[other[0]]).size == width:
            return np.asarray(known[other[0]], np.float32).reshape(width)
    return np.zeros(width, np.float32)


def _splice(graph, node, cell: dict, index: int, onnx) -> None:
    """Put the GRU or RNN where the Loop was; the Loop's state and per-step outputs now come from it."""
    helper, numpy_helper = onnx.helper, onnx.numpy_helper
    prefix = f"edgeseq_{cell['op'].lower()}{index}"
    weights = {f"{prefix}_W": cell["kernel"].T[None], f"{prefix}_R": cell["recurrent"].T[None],
               f"{prefix}_B": np.concatenate([cell["input_bias"], cell["recurrent_bias"]])[None],
               f"{prefix}_axis0": np.array([0], np.int64), f"{prefix}_axis1": np.array([1], np.int64)}
    graph.initializer.extend(numpy_helper.from_array(np.ascontiguousarray(v), k) for k, v in weights.items())
    n_carried, k_state = cell["n_carried"], cell["k_state"]
    new = [helper.make_node("Unsqueeze", [cell["h0"], f"{prefix}_axis0"], [f"{prefix}_h0"], name=f"{prefix}_h0"),
           helper.make_node(cell["op"], [cell["sequence"], f"{prefix}_W", f"{prefix}_R", f"{prefix}_B", "",
                                         f"{prefix}_h0"],
                            [f"{prefix}_Y", f"{prefix}_Y_h"], name=prefix, hidden_size=cell["hidden"],
                            **cell["attributes"])]
    if node.output[k_state]:
        new.append(helper.make_node("Squeeze", [f"{prefix}_Y_h", f"{prefix}_axis0"], [node.output[k_state]],
                                    name=f"{prefix}_state"))
    for j, out in enumerate(node.output[n_carried:]):
        if out:
            new.append(helper.make_node("Squeeze", [f"{prefix}_Y", f"{prefix}_axis1"], [out], name=f"{prefix}_seq{j}"))
    for k in cell["same"]:  # weights handed through: read the Loop's input instead
        if node.output[k]:
            new.append(helper.make_node("Identity", [node.input[2 + k]], [node.output[k]], name=f"{prefix}_pass{k}"))
    position = list(graph.node).index(node)
    graph.node.remove(node)
    for offset, made in enumerate(new):
        graph.node.insert(position + offset, made)
