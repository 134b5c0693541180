"""How much of an artifact really runs in integer arithmetic: ops by kind, and the share of
multiply-accumulates (MACs) done by integer kernels.

A MAC op counts as integer when its activations and weights are int8 (statically quantized) or when
the runtime quantizes float activations on the fly against int8 weights ("dynamic": TFLite hybrid
kernels, ORT MatMulInteger / DynamicQuantizeLSTM). Ops inside loops (recurrent layers) are weighted by
the loop's trip count, so a float recurrent cell is not hidden behind a quantized head.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from edgeseq.lazy import require

# ---------------------------------------------------------------- TFLite

_TFL_MAC_OPS = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "BATCH_MATMUL", "TRANSPOSE_CONV")
_INT_TYPES = ("INT8", "UINT8", "INT16")
_FLOAT_TYPES = ("FLOAT32", "FLOAT16")


def tflite_schema():
    for module in ("ai_edge_litert.schema_py_generated", "tflite_runtime.schema_py_generated",
                   "tensorflow.lite.python.schema_py_generated"):
        try:
            return require(module)
        except Exception:  # noqa: BLE001 - try the next provider of the schema
            continue
    raise require("ai_edge_litert")  # raises the install hint


def _tfl_macs(op_name: str, sg, op) -> int:
    t = sg.tensors
    shape = lambda i: [int(d) for d in t[i].shape] if i >= 0 and t[i].shape is not None else []  # noqa: E731
    out = shape(op.outputs[0])
    if op_name == "FULLY_CONNECTED":
        w = shape(op.inputs[1])  # (units, in)
        rows = int(np.prod(shape(op.inputs[0]))) // max(w[1], 1)
        return rows * w[0] * w[1]
    if op_name in ("CONV_2D", "TRANSPOSE_CONV"):
        w = shape(op.inputs[1])  # (out_c, kh, kw, in_c)
        return int(np.prod(out)) * w[1] * w[2] * w[3]
    if op_name == "DEPTHWISE_CONV_2D":
        w = shape(op.inputs[1])  # (1, kh, kw, out_c)
        return int(np.prod(out)) * w[1] * w[2]
    if op_name == "BATCH_MATMUL":
        a = shape(op.inputs[0])
        adj_x = bool(getattr(op.builtinOptions, "adjX", False))
        return int(np.prod(out)) * (a[-2] if adj_x else a[-1])
    return 0


def tflite_trip_count(model, parent, while_op) -> int | None:
    """The iteration bound a WHILE's cond compares against (LESS(i, N)), when it is a constant."""
    cond = model.subgraphs[while_op.builtinOptions.condSubgraphIndex]
    bounds = []
    for op in cond.operators:
        if tflite_op_name(model, op) != "LESS":
            continue
        y = op.inputs[1]
        value = _const_int(model, cond, y)
        if value is None and y in list(cond.inputs):
            value = _const_int(model, parent, while_op.inputs[list(cond.inputs).index(y)])
        if value is not None:
            bounds.append(value)
    return min(bounds) if bounds else None


def _const_int(model, sg, tensor_index: int) -> int | None:
    tensor = sg.tensors[tensor_index]
    data = model.buffers[tensor.buffer].data if tensor.buffer < len(model.buffers) else None
    if data is None or len(data) != 4:
        return None
    return int(np.frombuffer(bytes(bytearray(data)), dtype=np.int32)[0])


_NAMES: dict | None = None


def _builtin_names() -> dict:
    global _NAMES
    if _NAMES is None:
        ops = tflite_schema().BuiltinOperator
        _NAMES = {v: k for k, v in vars(ops).items() if not k.startswith("_")}
    return _NAMES


def load_tflite(flatbuffer: bytes):
    """The model's object tree (the LiteRT schema: no TensorFlow needed)."""
    schema = tflite_schema()
    return schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(flatbuffer, 0))


def tflite_op_name(model, op) -> str:
    code = model.operatorCodes[op.opcodeIndex]
    return _builtin_names()[max(code.builtinCode, code.deprecatedBuiltinCode)]


def tflite_ops(model, notes: list | None = None):
    """(subgraph index, subgraph, op, op name, executions per inference) for every op a run executes, in order.

    A WHILE is yielded, then its body's ops, weighted by the loop's trip count (its cond is not walked).
    """
    def walk(index: int, weight: int, seen: tuple):
        sg = model.subgraphs[index]
        for op in sg.operators:
            name = tflite_op_name(model, op)
            yield index, sg, op, name, weight
            if name != "WHILE":
                continue
            trips = tflite_trip_count(model, sg, op)
            if trips is None:
                trips = 1
                if notes is not None:
                    notes.append("a loop's trip count is not a constant: its ops counted once")
            body = op.builtinOptions.bodySubgraphIndex
            if body not in seen:
                yield from walk(body, weight * trips, seen + (body,))

    yield from walk(0, 1, (0,))


def tflite_coverage(path: str | Path) -> dict:
    model = load_tflite(Path(path).read_bytes())
    type_names = {v: k for k, v in vars(tflite_schema().TensorType).items() if not k.startswith("_")}
    totals = Counter()
    ops_by_kind = {"int8": Counter(), "dynamic": Counter(), "float": Counter()}
    float_mac_ops = Counter()
    notes = []
    for index, sg, op, name, weight in tflite_ops(model, notes):
        if name == "WHILE":
            continue
        types = [type_names[sg.tensors[i].type] for i in list(op.inputs) + list(op.outputs) if i >= 0]
        if name in _TFL_MAC_OPS:
            act, wt = type_names[sg.tensors[op.inputs[0]].type], type_names[sg.tensors[op.inputs[1]].type]
            kind = "int8" if act in _INT_TYPES and wt in _INT_TYPES else "dynamic" if wt in _INT_TYPES else "float"
            totals[kind] += _tfl_macs(name, sg, op) * weight
            if kind == "float":
                float_mac_ops[name] += weight
        elif name in ("QUANTIZE", "DEQUANTIZE"):
            kind = "float" if name == "DEQUANTIZE" and "FLOAT32" in types and index != 0 else "int8"
        else:
            kind = "float" if any(t in _FLOAT_TYPES for t in types) else "int8"
        ops_by_kind[kind][name] += weight
    return _summary(totals, ops_by_kind, float_mac_ops, notes)


def _summary(totals: Counter, ops_by_kind: dict, float_mac_ops: Counter, notes: list) -> dict:
    total = sum(totals.values())
    integer = totals["int8"] + totals["dynamic"]
    return {
        "macs": int(total),
        "macs_int8_static": int(totals["int8"]),
        "macs_int8_dynamic": int(totals["dynamic"]),
        "macs_float": int(totals["float"]),
        "int8_mac_share": round(integer / total, 4) if total else 0.0,
        "ops": {kind: dict(sorted(c.items())) for kind, c in ops_by_kind.items()},
        "float_mac_ops": dict(sorted(float_mac_ops.items())),
        "notes": sorted(set(notes)),
    }


# ---------------------------------------------------------------- ONNX

_ONNX_FLOAT_MAC = ("MatMul", "Gemm", "Conv", "LSTM", "GRU", "RNN", "ConvTranspose")
MAC_OP_TYPES = frozenset(_TFL_MAC_OPS + _ONNX_FLOAT_MAC)  # float multiply-accumulate ops, both formats
_ONNX_INT_MAC_STATIC = ("QLinearMatMul", "QLinearConv", "QGemm")
_ONNX_INT_MAC_DYNAMIC = ("MatMulInteger", "ConvInteger", "DynamicQuantizeLSTM", "DynamicQuantizeMatMul",
                         "MatMulIntegerToFloat")


def onnx_coverage(path: str | Path, time_steps: int | None = None) -> dict:
    """Coverage of an ONNX graph. ``time_steps`` bounds Loops whose trip count is not a constant."""
    return _summary(*_onnx_walk(path, time_steps)[:4])


def onnx_node_macs(path: str | Path, time_steps: int | None = None) -> dict[str, int]:
    """MACs of each top-level node (a Loop's include its body times its trip count)."""
    return _onnx_walk(path, time_steps)[4]


def onnx_loop_trips(node, consts: dict) -> int | None:
    """A Loop's constant trip count M (``consts``: name -> array), or None: absent, computed, or tf2onnx's
    "run until cond" sentinel."""
    if not node.input or node.input[0] not in consts:
        return None
    trips = int(np.asarray(consts[node.input[0]]).reshape(-1)[0])
    return trips if trips <= 10**6 else None


def _onnx_walk(path: str | Path, time_steps: int | None):
    onnx = require("onnx")
    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    totals = Counter()
    ops_by_kind = {"int8": Counter(), "dynamic": Counter(), "float": Counter()}
    float_mac_ops = Counter()
    notes = []
    per_node = Counter()  # top-level node name -> MACs

    def shapes_of(graph, outer: dict) -> dict:
        known = dict(outer)
        for vi in list(graph.input) + list(graph.value_info) + list(graph.output):
            dims = vi.type.tensor_type.shape.dim
            known[vi.name] = [d.dim_value if d.dim_value > 0 else 1 for d in dims]  # symbolic (batch) -> 1
        for init in graph.initializer:
            known[init.name] = list(init.dims)
        return known

    def walk(graph, weight: int, outer_shapes: dict, outer_consts: dict, top: str | None = None):
        shapes = shapes_of(graph, outer_shapes)
        consts = dict(outer_consts)
        consts.update({i.name: onnx.numpy_helper.to_array(i) for i in graph.initializer})
        producers = {o: n for n in graph.node for o in n.output}
        for node in graph.node:
            if node.op_type == "Constant":
                for attr in node.attribute:
                    if attr.name == "value":
                        consts[node.output[0]] = onnx.numpy_helper.to_array(attr.t)
            if node.op_type in ("Loop", "Scan"):
                trips = onnx_loop_trips(node, consts) if node.op_type == "Loop" else None
                if trips is None:
                    trips = time_steps or 1
                    notes.append(f"a {node.op_type}'s trip count is not a constant: taken as "
                                 f"{'the input time steps' if time_steps else '1'} ({trips})")
                ops_by_kind["float"][node.op_type] += 0  # the container itself does no arithmetic
                for attr in node.attribute:
                    if attr.type == onnx.AttributeProto.GRAPH:
                        walk(attr.g, weight * trips, shapes, consts, top or node.name)
                continue
            macs = _onnx_macs(node, shapes)
            if node.op_type in _ONNX_INT_MAC_STATIC:
                kind = "int8"
            elif node.op_type in _ONNX_INT_MAC_DYNAMIC:
                kind = "dynamic"
            elif node.op_type in _ONNX_FLOAT_MAC:
                fed = [producers.get(i) for i in node.input[:2]]
                qdq = all(p is not None and p.op_type == "DequantizeLinear" for p in fed)
                kind = "int8" if qdq else "float"  # ORT fuses DQ -> op -> Q into an integer kernel
                if kind == "float":
                    float_mac_ops[node.op_type] += weight
            elif node.op_type in ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"):
                kind = "int8"
            else:
                kind = "float"
                macs = 0
            totals[kind] += macs * weight
            ops_by_kind[kind][node.op_type] += weight
            per_node[top or node.name] += macs * weight

    walk(model.graph, 1, {}, {})
    for counter in ops_by_kind.values():
        for key in [k for k, v in counter.items() if v == 0]:
            del counter[key]
    return totals, ops_by_kind, float_mac_ops, notes, dict(per_node)


def _onnx_macs(node, shapes: dict) -> int:
    get = lambda name: shapes.get(name, [])  # noqa: E731
    op = node.op_type
    if op in ("MatMul", "MatMulInteger", "QLinearMatMul", "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "Gemm", "QGemm"):
        a_name, b_name = (node.input[0], node.input[3]) if op == "QLinearMatMul" else (node.input[0], node.input[1])
        b = get(b_name)
        if op in ("Gemm", "QGemm"):
            trans_b = any(a.name == "transB" and a.i for a in node.attribute)
            k, n = (b[1], b[0]) if trans_b and len(b) == 2 else (b[0], b[1]) if len(b) == 2 else (0, 0)
        else:
            k, n = (b[-2], b[-1]) if len(b) >= 2 else (0, 0)
        a = get(a_name)
        rows = int(np.prod(a)) // k if a and k else 1
        return rows * k * n
    if op in ("Conv", "ConvInteger", "QLinearConv"):
        w = get(node.input[3] if op == "QLinearConv" else node.input[1])  # (out_c, in_c/group, kh, kw)
        out = get(node.output[0])
        return int(np.prod(out)) * int(np.prod(w[1:])) if out and w else 0
    if op in ("LSTM", "GRU", "RNN", "DynamicQuantizeLSTM"):
        gates = {"LSTM": 4, "DynamicQuantizeLSTM": 4, "GRU": 3, "RNN": 1}[op]
        x, w = get(node.input[0]), get(node.input[1])  # x (seq, batch, in); w (dirs, gates*H, in)
        if len(x) < 3 or len(w) < 3:
            return 0
        hidden = (w[1] if op != "DynamicQuantizeLSTM" else w[2]) // gates
        inputs = w[2] if op != "DynamicQuantizeLSTM" else w[1]
        return x[0] * x[1] * w[0] * gates * hidden * (inputs + hidden)
    return 0


# ---------------------------------------------------------------- where the bytes go

_QUANT_PARAM_BYTES = 12  # a TFLite scale (float32) and zero point (int64) per tensor or channel
_QDQ_OPS = ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear")


def _storage(total: int, constants: list[tuple[tuple, str, int]], quantization: int, names: int) -> dict:
    """``constants``: (shape, dtype kind 'f'/'i'/other, bytes) of every constant stored once."""
    parts = {"weights_float": 0, "float_weight_elements": 0, "weights_integer": 0, "vectors": 0}
    for shape, kind, size in constants:
        if len(shape) >= 2 and kind == "f":
            parts["weights_float"] += size
            parts["float_weight_elements"] += int(np.prod(shape))
        elif len(shape) >= 2:
            parts["weights_integer"] += size
        else:
            parts["vectors"] += size
    stored = parts["weights_float"] + parts["weights_integer"] + parts["vectors"]
    graph = max(total - stored - quantization, 0)
    return {**parts, "quantization": quantization, "graph": graph, "names": min(names, graph)}


def tflite_storage(path: str | Path) -> dict:
    """Where a .tflite file's bytes go (see :class:`edgeseq.schema.Storage`): constant buffers by shape
    and type, quantization parameters, and the graph (operators, tensor descriptions, names)."""
    data = Path(path).read_bytes()
    model = load_tflite(data)
    types = {v: k for k, v in vars(tflite_schema().TensorType).items() if not k.startswith("_")}
    seen, constants, quantization, names = set(), [], 0, 0
    for subgraph in model.subgraphs:
        for tensor in subgraph.tensors:
            names += len(tensor.name or b"")
            q = tensor.quantization
            if q is not None and q.scale is not None:
                quantization += _QUANT_PARAM_BYTES * len(q.scale)
            buffer = model.buffers[tensor.buffer] if tensor.buffer < len(model.buffers) else None
            size = 0 if buffer is None else (len(buffer.data) if buffer.data is not None else int(buffer.size or 0))
            if not size or tensor.buffer in seen:
                continue
            seen.add(tensor.buffer)
            kind = "f" if types.get(tensor.type) in _FLOAT_TYPES else "i"
            constants.append((tuple(tensor.shape if tensor.shape is not None else ()), kind, size))
    return _storage(len(data), constants, quantization, names)


def onnx_storage(path: str | Path) -> dict:
    """Where an .onnx file's bytes go: initializers and Constant nodes (loop bodies too) by shape and
    type, the scales and zero points that (de)quantize nodes read, and the graph."""
    onnx = require("onnx")
    from onnx import numpy_helper

    path = Path(path)
    model = onnx.load(str(path))
    constants, quantization, names = [], 0, 0

    def walk(graph):
        nonlocal quantization, names
        names += sum(len(n.name) + sum(map(len, n.input)) + sum(map(len, n.output)) for n in graph.node)
        names += sum(len(t.name) for t in graph.initializer)
        qparams = {name for node in graph.node if node.op_type in _QDQ_OPS for name in node.input[1:]}
        tensors = [(t.name, t) for t in graph.initializer]
        tensors += [(node.output[0], a.t) for node in graph.node if node.op_type == "Constant"
                    for a in node.attribute if a.name == "value"]
        for name, tensor in tensors:
            array = numpy_helper.to_array(tensor)
            if name in qparams:
                quantization += array.nbytes
            else:
                constants.append((array.shape, array.dtype.kind, array.nbytes))
        for node in graph.node:
            for attribute in node.attribute:
                if attribute.type == onnx.AttributeProto.GRAPH:
                    walk(attribute.g)

    walk(model.graph)
    return _storage(path.stat().st_size, constants, quantization, names)
