"""Unroll ONNX ``Loop`` nodes with a constant trip count into straight-line graphs.

tf2onnx turns a Keras SimpleRNN or GRU into a ``Loop``. ONNX Runtime runs a Loop's body as a subgraph,
node by node, once per step, and every step pays its loop machinery (measured: 1.41 µs a step for a body
that adds 1, against 0.48 µs for a TFLite WHILE); the zoo's SimpleRNN ran 2-4x slower as ONNX than as
TFLite. Unrolled, the same nodes run as one flat graph that ORT plans, fuses and quantizes as a whole.

What is copied and what is not:

- The body runs once per step, in order; each copy reads the previous copy's loop-carried values.
- Body nodes that do not depend on the step (the cell's weights passed through the loop, a bias split)
  are emitted once, so weights stay stored once.
- Nodes whose inputs are all known small values (step counters, the loop condition) are evaluated
  here. A condition that is not a constant, or that turns false before the last trip, keeps the Loop.
- Per-step outputs (scan outputs) are stacked with Unsqueeze + Concat; a Slice that takes one step of them
  reads that step directly.
- The float loop state after step t (rank 2, free batch) is named ``edgeseq_loop{L}_state{K}_step{t}``: the
  per-step drift report reads it there, as it reads a Loop's carried values after t trips.

Nothing here is trusted: the exporter runs the unrolled and the original graph on the same inputs and keeps
the Loop unless the outputs match.
"""

from __future__ import annotations

import re

import numpy as np

from edgeseq.lazy import require

MAX_TRIPS = 64  # beyond this a loop stays a Loop: the graph would grow by the body times the trips
MAX_NODES = 8192  # body nodes x trips
_FOLD_MAX_ELEMENTS = 64
STATE = re.compile(r"^edgeseq_loop(\d+)_state(\d+)_step(\d+)$")
_FLOAT = 1


def state_name(loop: int, state: int, step: int) -> str:
    return f"edgeseq_loop{loop}_state{state}_step{step}"


def states_by_step(model, loop: int = 0) -> dict[int, list[str]]:
    """Step -> names of the unrolled loop's float states after that step (ordered by state), for ``loop``."""
    names = {o for n in model.graph.node for o in n.output} | {i.name for i in model.graph.initializer}
    found: dict[int, dict[int, str]] = {}
    for name in names:
        match = STATE.match(name)
        if match and int(match.group(1)) == loop:
            found.setdefault(int(match.group(3)), {})[int(match.group(2))] = name
    return {t: [states[k] for k in sorted(states)] for t, states in sorted(found.items())}


def _constants(graph) -> dict:
    """Main-graph initializers and Constant-node outputs, and every small integer/bool value they fold to."""
    onnx = require("onnx")
    consts = {i.name: onnx.numpy_helper.to_array(i) for i in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            consts[node.output[0]] = onnx.numpy_helper.to_array(node.attribute[0].t)
            continue
        values = [consts.get(x) for x in node.input if x]
        if node.op_type != "Loop" and node.input and all(v is not None for v in values):
            folded = fold(node, [consts[x] if x else None for x in node.input])
            if folded is not None:
                consts.update(zip(node.output, folded))
    return consts


def fold(node, values: list, limit: int = _FOLD_MAX_ELEMENTS) -> list | None:
    """Evaluate ``node`` on known values of at most ``limit`` elements (counters, shapes, conditions); None
    when they are larger or the reference evaluator cannot."""
    if any(v is not None and np.asarray(v).size > limit for v in values):
        return None
    onnx = require("onnx")
    from onnx.reference import ReferenceEvaluator

    names = [f"i{k}" if v is not None else "" for k, v in enumerate(values)]
    single = onnx.helper.make_node(node.op_type, names, [f"o{k}" for k in range(len(node.output))])
    single.attribute.extend(node.attribute)
    try:
        graph = onnx.helper.make_graph(
            [single], "fold",
            [onnx.helper.make_tensor_value_info(n, onnx.helper.np_dtype_to_tensor_dtype(np.asarray(v).dtype), None)
             for n, v in zip(names, values) if n],
            [onnx.helper.make_empty_tensor_value_info(o) for o in single.output])
        model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
        out = ReferenceEvaluator(model).run(None, {n: np.asarray(v) for n, v in zip(names, values) if n})
    except Exception:  # noqa: BLE001 - an op the reference cannot evaluate simply stays a node
        return None
    out = [np.asarray(o) for o in out]
    if any(o.size > limit for o in out):
        return None
    return out


def is_state(value_info) -> bool:
    """A loop-carried value that is a recurrent state: float, rank 2, free first (batch) dimension (the
    constants a converter carries through a loop have fixed shapes)."""
    kind = value_info.type.tensor_type
    dims = kind.shape.dim
    return kind.elem_type == _FLOAT and len(dims) == 2 and not dims[0].dim_value


def passthrough(body, n_carried: int) -> set[int]:
    """The loop-carried values a Loop body hands on unchanged (directly or through one Identity): how a
    converter passes a cell its weights."""
    producers = {o: n for n in body.node for o in n.output}
    same = set()
    for k in range(n_carried):
        inner, result = body.input[2 + k].name, body.output[1 + k].name
        producer = producers.get(result)
        if result == inner or (producer is not None and producer.op_type == "Identity" and producer.input[0] == inner):
            same.add(k)
    return same


class _Unroller:
    """Emits the copies of one Loop's body into the main graph."""

    def __init__(self, node, index: int, consts: dict, trips: int):
        onnx = require("onnx")
        self.onnx, self.index, self.consts = onnx, index, consts
        self.body = next(a.g for a in node.attribute if a.name == "body")
        self.trips = trips
        self.prefix = f"edgeseq_u{index}"
        self.nodes: list = []  # emitted, in order
        self.initializers: list = []
        self._const_names: dict = {}
        body = self.body
        self.n_carried = len(node.input) - 2
        self.n_scan = len(body.output) - 1 - self.n_carried
        self.passthrough = passthrough(body, self.n_carried)
        # names that change from step to step: the iteration number, the condition and the carried values
        self.variant = {body.input[0].name, body.input[1].name} | {
            body.input[2 + k].name for k in range(self.n_carried) if k not in self.passthrough}
        for n in body.node:
            if any(x in self.variant for x in n.input):
                self.variant.update(n.output)
        floats = [k for k in range(self.n_carried) if k not in self.passthrough and is_state(body.input[2 + k])]
        self.marked = {k: j for j, k in enumerate(floats)}
        # once for all steps: body initializers and passthrough carried values
        self.shared: dict[str, str] = {}  # body name -> main-graph name
        self.shared_values: dict = {}  # body name -> small known value
        for k in self.passthrough:
            inner, outer = body.input[2 + k].name, node.input[2 + k]
            self.shared[inner] = outer
            if outer in consts and np.asarray(consts[outer]).size <= _FOLD_MAX_ELEMENTS:
                self.shared_values[inner] = consts[outer]
        for init in body.initializer:
            copy = onnx.TensorProto()
            copy.CopyFrom(init)
            copy.name = f"{self.prefix}_{init.name}"
            self.initializers.append(copy)
            self.shared[init.name] = copy.name
            value = onnx.numpy_helper.to_array(init)
            if value.size <= _FOLD_MAX_ELEMENTS:
                self.shared_values[init.name] = value

    def _const(self, value: np.ndarray) -> str:
        value = np.asarray(value)
        key = (value.dtype.str, value.shape, value.tobytes())
        if key not in self._const_names:
            name = f"{self.prefix}_c{len(self._const_names)}"
            self.initializers.append(self.onnx.numpy_helper.from_array(value, name))
            self._const_names[key] = name
            self.consts[name] = value
        return self._const_names[key]

    def _input(self, x: str, names: dict, values: dict) -> str:
        """The main-graph name a copy reads for body name ``x``: an existing tensor before a new constant."""
        if not x:
            return ""
        if x in names:
            return names[x]
        return self._const(values[x]) if x in values else x

    def run(self, carried: list[str]) -> tuple[list[str], list[list[str]]] | None:
        """Emit every step; (final carried names, per-scan-output list of per-step names), or None when the
        loop condition is not a known constant true up to the last trip."""
        body, onnx = self.body, self.onnx
        names, values = dict(self.shared), dict(self.shared_values)  # body name -> main name / known value
        scans: list[list[str]] = [[] for _ in range(self.n_scan)]
        for step in range(self.trips):
            values[body.input[0].name] = np.array(step, np.int64)
            values[body.input[1].name] = np.array(True)
            for k in range(self.n_carried):
                if k in self.passthrough:
                    continue
                inner = body.input[2 + k].name
                names[inner] = carried[k]
                values.pop(inner, None)
                if carried[k] in self.consts:
                    values[inner] = self.consts[carried[k]]
            emitted = []
            for n in body.node:
                if step and not (set(n.output) & self.variant):
                    continue  # step-invariant: emitted (or folded) at step 0
                if n.op_type == "Identity":  # an alias: no node
                    for table in (names, values):
                        table.pop(n.output[0], None)
                        if n.input[0] in table:
                            table[n.output[0]] = table[n.input[0]]
                    if n.input[0] not in names and n.input[0] not in values:
                        names[n.output[0]] = n.input[0]  # an outer-scope name
                    continue
                known = [values.get(x) if x else None for x in n.input]
                if all(v is not None or not x for v, x in zip(known, n.input)):
                    folded = fold(n, known)
                    if folded is not None:
                        values.update(zip(n.output, folded))
                        for o in n.output:
                            names.pop(o, None)
                        continue
                copy = onnx.NodeProto()
                copy.CopyFrom(n)
                tag = f"s{step}" if set(n.output) & self.variant else "inv"
                copy.name = f"{self.prefix}_{tag}_{n.name or 'node'}_{len(self.nodes) + len(emitted)}"
                copy.input[:] = [self._input(x, names, values) for x in n.input]
                copy.output[:] = [f"{self.prefix}_{tag}_{o}" if o else "" for o in n.output]
                for inner, outer in zip(n.output, copy.output):
                    if inner:
                        names[inner] = outer
                        values.pop(inner, None)
                emitted.append(copy)
            condition = values.get(body.output[0].name)
            if condition is None or (not bool(np.asarray(condition).reshape(-1)[0]) and step < self.trips - 1):
                return None
            carried = list(carried)
            for k in range(self.n_carried):
                if k in self.passthrough:
                    continue
                result = body.output[1 + k].name
                if result not in names:
                    carried[k] = self._input(result, names, values)
                    continue
                carried[k] = names[result]
                if k in self.marked:
                    carried[k] = self._rename(emitted, names, carried[k], state_name(self.index, self.marked[k], step + 1))
            for j in range(self.n_scan):
                out = body.output[1 + self.n_carried + j].name
                scans[j].append(self._input(out, names, values))
            self.nodes.extend(emitted)
        return carried, scans

    @staticmethod
    def _rename(emitted: list, names: dict, old: str, new: str) -> str:
        """Give this step's tensor ``old`` the name ``new`` (it must be produced by this step's nodes)."""
        if not any(old in n.output for n in emitted):
            return old
        for n in emitted:
            n.input[:] = [new if x == old else x for x in n.input]
            n.output[:] = [new if x == old else x for x in n.output]
        for inner, outer in names.items():
            if outer == old:
                names[inner] = new
        return new


def _single_step(node, consts: dict, trips: int) -> int | None:
    """The step a Slice of a stacked scan output takes, when it takes exactly one along axis 0."""
    if node.op_type != "Slice" or len(node.input) < 4 or any(x not in consts for x in node.input[1:4]):
        return None
    starts, ends, axes = (np.asarray(consts[x]).reshape(-1) for x in node.input[1:4])
    steps = np.asarray(consts[node.input[4]]).reshape(-1) if len(node.input) > 4 and node.input[4] else np.array([1])
    if list(axes) != [0] or list(steps) != [1] or len(starts) != 1:
        return None
    picked = list(range(trips))[slice(int(starts[0]), int(min(ends[0], 2**62)))]
    return picked[0] if len(picked) == 1 else None


def unroll_loops(model, max_trips: int = MAX_TRIPS) -> list[dict]:
    """Unroll, in place, every main-graph Loop that can be; one entry per Loop: what was done, or why not."""
    onnx = require("onnx")
    from edgeseq.export.coverage import onnx_loop_trips

    graph = model.graph
    report = []
    index = kept = 0
    while True:
        loops = [n for n in graph.node if n.op_type == "Loop"]
        if len(loops) <= kept:  # the first ``kept`` Loops stay; unrolled ones are gone
            break
        node = loops[kept]
        consts = _constants(graph)
        body = next(a.g for a in node.attribute if a.name == "body")
        trips = onnx_loop_trips(node, consts)
        condition = consts.get(node.input[1]) if node.input[1] else np.array(True)
        why = None
        if trips is None:
            why = "trip count is not a constant"
        elif trips > max_trips or trips * len(body.node) > MAX_NODES:
            why = f"{trips} trips of {len(body.node)} nodes: too large to unroll"
        elif condition is None or not bool(np.asarray(condition).reshape(-1)[0]):
            why = "entry condition is not a constant true"
        elif any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for n in body.node for a in n.attribute):
            why = "body holds subgraphs"
        result = None
        if why is None:
            unroller = _Unroller(node, index, consts, trips)
            result = unroller.run(list(node.input[2:]))
            if result is None:
                why = "loop condition is not a known constant true on every trip"
        if why is not None:
            kept += 1
            report.append({"loop": index, "unrolled": False, "why": why})
            index += 1
            continue
        carried, scans = result
        replace = {}
        extra = []
        for k, out in enumerate(node.output[: unroller.n_carried]):
            if out:
                replace[out] = carried[k]
        position = list(graph.node).index(node)
        for j, out in enumerate(node.output[unroller.n_carried:]):
            if not out:
                continue
            for consumer in graph.node:
                step = _single_step(consumer, consts, trips) if consumer.input and consumer.input[0] == out else None
                if step is not None:
                    consumer.op_type = "Unsqueeze"
                    consumer.input[:] = [scans[j][step], unroller._const(np.array([0], np.int64))]
            axes = unroller._const(np.array([0], np.int64))
            parts = []
            for t, name in enumerate(scans[j]):
                parts.append(f"{unroller.prefix}_scan{j}_{t}")
                extra.append(onnx.helper.make_node("Unsqueeze", [name, axes], [parts[-1]], name=f"{parts[-1]}_unsqueeze"))
            extra.append(onnx.helper.make_node("Concat", parts, [out], axis=0, name=f"{unroller.prefix}_scan{j}_concat"))
        graph_outputs = {o.name for o in graph.output}
        for out, new in list(replace.items()):
            if out in graph_outputs:
                extra.append(onnx.helper.make_node("Identity", [new], [out], name=f"{out}_unrolled"))
                del replace[out]
        for other in graph.node:
            other.input[:] = [replace.get(x, x) for x in other.input]
        graph.node.remove(node)
        for offset, emitted in enumerate(unroller.nodes + extra):
            graph.node.insert(position + offset, emitted)
        graph.initializer.extend(unroller.initializers)
        report.append({"loop": index, "unrolled": True, "trips": trips, "body_nodes": len(body.node),
                       "states": len(unroller.marked)})
        index += 1
    if any(r["unrolled"] for r in report):
        prune(graph)
        hoisted = hoist_input_projections(graph)
        for r in report:
            r["input_projections_hoisted"] = hoisted
    return report


def prune(graph) -> None:
    """Drop nodes whose outputs nobody reads, then initializers nobody reads (main graph; subgraphs may read
    outer names, so their inputs count as read)."""
    from edgeseq.export.onnx import _graphs

    def reads():
        used = {o.name for o in graph.output}
        for g in _graphs(graph):
            used.update(x for n in g.node for x in n.input)
        return used

    while True:
        used = reads()
        dead = [n for n in graph.node if not any(o in used for o in n.output if o)]
        if not dead:
            break
        for n in dead:
            graph.node.remove(n)
    used = reads()
    for init in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(init)


def hoist_input_projections(graph) -> int:
    """After unrolling: compute each step's input projection for all steps at once.

    An unrolled recurrent cell reads step t of the sequence (``Gather(X, t)``) and projects it with the same
    weights every step (``MatMul(x_t, W)``, often then ``Add(., b)``): T small matrix products. They become
    one product over the whole sequence, ``MatMul(X, W) [+ b]``, and each step gathers its row of it: one big
    GEMM instead of T thin ones, and two or three nodes less per step. Returns how many groups were hoisted.
    """
    onnx = require("onnx")
    matrices = {i.name for i in graph.initializer if len(i.dims) == 2}  # a batched MatMul would not commute
    initializers = {i.name for i in graph.initializer}
    for node in graph.node:  # and what is computed from them alone (a bias split once for all steps)
        if node.input and all(x in initializers for x in node.input if x):
            initializers.update(node.output)
    consumers: dict[str, list] = {}
    for node in graph.node:
        for x in node.input:
            consumers.setdefault(x, []).append(node)

    def only(name: str, op: str):
        users = consumers.get(name, [])
        return users[0] if len(users) == 1 and users[0].op_type == op else None

    groups: dict[tuple, list] = {}
    for gather in graph.node:
        axis = next((a.i for a in gather.attribute if a.name == "axis"), 0)
        if gather.op_type != "Gather" or axis != 0 or gather.input[0] in initializers or gather.input[1] not in initializers:
            continue
        matmul = only(gather.output[0], "MatMul")
        if matmul is None or matmul.input[0] != gather.output[0] or matmul.input[1] not in matrices:
            continue
        add = only(matmul.output[0], "Add")
        bias = add.input[1] if add is not None and add.input[0] == matmul.output[0] and add.input[1] in initializers else None
        groups.setdefault((gather.input[0], matmul.input[1]), []).append((gather, matmul, add if bias else None, bias))
    hoisted = 0
    for (sequence, weights), members in groups.items():
        if len(members) < 2:
            continue
        biases = {bias for *_, bias in members}
        with_bias = len(biases) == 1 and None not in biases
        name = f"edgeseq_proj{hoisted}"
        new = [onnx.helper.make_node("MatMul", [sequence, weights], [name], name=f"{name}_matmul")]
        projected_bias = biases.pop() if with_bias else None
        if with_bias:
            new.append(onnx.helper.make_node("Add", [name, projected_bias], [f"{name}_b"], name=f"{name}_add"))
        projected = new[-1].output[0]
        nodes = list(graph.node)
        first = min(nodes.index(g) for g, *_ in members)
        if with_bias:  # after whatever computes the bias
            first = max([first] + [nodes.index(n) + 1 for n in nodes if projected_bias in n.output])
        for offset, node in enumerate(new):
            graph.node.insert(first + offset, node)
        for gather, matmul, add, _ in members:  # each step now gathers its row of the projection
            last = add if with_bias else matmul
            last.op_type = "Gather"
            last.input[:] = [projected, gather.input[1]]
            del last.attribute[:]
            graph.node.remove(gather)
            if with_bias:
                graph.node.remove(matmul)
        hoisted += 1
    return hoisted
