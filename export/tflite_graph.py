"""Surgery on .tflite flatbuffers for the recurrent int8 recipe: what the TFLite converter cannot do itself.

TFLite lowers a Keras 3 recurrent layer at a fixed batch to a WHILE op whose body holds the cell once:
weights stored a single time, 28 trips at run time. Full-integer conversion of such a model crashes in
the calibrator (tensorflow#75140: WHILE frees an output that its body passes through unchanged, and the
calibrator then reads freed memory). The functions here take the fp32 flatbuffer apart and put it back
so that the converter's own calibrator and quantizer can do the rest:

- :func:`break_while_passthrough` gives every pass-through loop variable its own output tensor;
- :func:`clamp_saturating_ranges` narrows calibrated ranges that feed TANH/LOGISTIC to where the int8
  output saturates anyway (no information lost, up to 2x finer steps for the pre-activation);
- :func:`fold_while_boundaries` moves the float<->int8 conversions the quantizer leaves at the loop's
  edges out of it, so the hidden state is carried in int8 and the body is integer from end to end;
- :func:`slim` drops internal tensor names and calibration min/max that nothing reads at run time.

All functions work on the flatbuffer object API (``schema_py_generated``) and return the changed
model or a count; :func:`load` / :func:`dump` convert from and to bytes.
"""

from __future__ import annotations

import copy
import functools
import math

import numpy as np

from edgeseq.lazy import require

_SCHEMA = "tensorflow.lite.python.schema_py_generated"
# Where the int8 output of a saturating activation stops changing (its output scale is fixed by TFLite):
# TANH: scale 1/128, zero point 0 -> every input beyond +-atanh(127.5/128) = +-3.12 gives -128 / 127.
# LOGISTIC: scale 1/256, zero point -128 -> beyond +-ln(255.5/0.5) = +-6.24 the output saturates.
SATURATION = {"TANH": math.atanh(127.5 / 128) + 0.05, "LOGISTIC": math.log(255.5 / 0.5) + 0.05}
INT8 = 9  # TensorType.INT8
FLOAT32 = 0


def schema():
    return require(_SCHEMA)


def load(flatbuffer: bytes):
    s = schema()
    return s.ModelT.InitFromObj(s.Model.GetRootAsModel(flatbuffer, 0))


def dump(model) -> bytes:
    flatbuffers = require("flatbuffers")
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


@functools.lru_cache(maxsize=1)
def _op_names() -> dict[int, str]:
    return {v: k for k, v in vars(schema().BuiltinOperator).items() if not k.startswith("_")}


def op_name(model, op) -> str:
    code = model.operatorCodes[op.opcodeIndex]
    return _op_names().get(max(code.builtinCode, code.deprecatedBuiltinCode), "CUSTOM")


def while_ops(model) -> list[tuple[int, object]]:
    """(subgraph index, op) for every WHILE op in the model."""
    return [(g, op) for g, sg in enumerate(model.subgraphs) for op in sg.operators if op_name(model, op) == "WHILE"]


def has_while(flatbuffer: bytes) -> bool:
    return bool(while_ops(load(flatbuffer)))


def _opcode(model, name: str) -> int:
    s = schema()
    code = getattr(s.BuiltinOperator, name)
    for i, c in enumerate(model.operatorCodes):
        if max(c.builtinCode, c.deprecatedBuiltinCode) == code:
            return i
    c = s.OperatorCodeT()
    c.builtinCode, c.deprecatedBuiltinCode, c.version = code, min(code, 127), 1
    model.operatorCodes.append(c)
    return len(model.operatorCodes) - 1


def _new_tensor(model, subgraph, like, name: bytes) -> int:
    tensor = copy.deepcopy(like)
    tensor.name = name
    model.buffers.append(schema().BufferT())
    tensor.buffer = len(model.buffers) - 1
    subgraph.tensors.append(tensor)
    return len(subgraph.tensors) - 1


def break_while_passthrough(model) -> int:
    """Route each loop variable a WHILE body returns unchanged through a RESHAPE to its own shape.

    Float-identical; what it changes is that WHILE no longer frees that output (tensorflow#75140).
    Returns how many were rerouted.
    """
    s = schema()
    rerouted = 0
    for _, op in while_ops(model):
        body = model.subgraphs[op.builtinOptions.bodySubgraphIndex]
        outputs = list(body.outputs)
        for k, (inp, out) in enumerate(zip(body.inputs, body.outputs)):
            if inp != out:
                continue
            src = body.tensors[inp]
            copy_index = _new_tensor(model, body, src, (src.name or b"") + b"/passthrough")
            reshape = s.OperatorT()
            reshape.opcodeIndex = _opcode(model, "RESHAPE")
            reshape.inputs, reshape.outputs = [int(inp)], [copy_index]
            reshape.builtinOptionsType = s.BuiltinOptions.ReshapeOptions
            reshape.builtinOptions = s.ReshapeOptionsT()
            reshape.builtinOptions.newShape = [int(d) for d in src.shape]
            body.operators.append(reshape)
            outputs[k] = copy_index
            rerouted += 1
        body.outputs = outputs
    return rerouted


def _consumers(subgraph, tensor: int) -> list:
    return [op for op in subgraph.operators if tensor in list(op.inputs)]


def _producer(subgraph, tensor: int):
    return next((op for op in subgraph.operators if tensor in list(op.outputs)), None)


def clamp_saturating_ranges(model) -> int:
    """Narrow the calibrated (min, max) of tensors read only by TANH or LOGISTIC to their saturation points.

    Outputs are unchanged (both int8 activations saturate there anyway); the producer of the tensor gets
    a finer quantization step. Returns how many ranges were narrowed.
    """
    clamped = 0
    for subgraph in model.subgraphs:
        for index, tensor in enumerate(subgraph.tensors):
            q = tensor.quantization
            if q is None or q.min is None or q.max is None or len(q.min) != 1:
                continue
            users = _consumers(subgraph, index)
            kinds = {op_name(model, op) for op in users}
            if len(kinds) != 1 or not kinds <= set(SATURATION) or _producer(subgraph, index) is None:
                continue
            limit = SATURATION[kinds.pop()]
            lo, hi = float(q.min[0]), float(q.max[0])
            if lo < -limit or hi > limit:
                q.min = np.array([max(lo, -limit)], np.float32)
                q.max = np.array([min(hi, limit)], np.float32)
                clamped += 1
    return clamped


def _qparams(tensor) -> tuple | None:
    q = tensor.quantization
    if q is None or q.scale is None or len(q.scale) != 1:
        return None
    return float(q.scale[0]), int(q.zeroPoint[0])


def _remove_ops(subgraph, ops) -> None:
    doomed = {id(op) for op in ops}
    subgraph.operators = [op for op in subgraph.operators if id(op) not in doomed]


def _replace_input(subgraph, old: int, new: int) -> None:
    for op in subgraph.operators:
        op.inputs = [new if i == old else int(i) for i in op.inputs]


def fold_while_boundaries(model) -> int:
    """Carry loop variables in int8 where the quantizer left float<->int8 conversions at the loop's edges.

    A loop variable qualifies when, inside the body, only QUANTIZE ops read it and it is returned either
    unchanged or from a DEQUANTIZE of an int8 tensor; outside, it starts from a DEQUANTIZE or a float
    constant and is read only by QUANTIZE ops (or nothing). It is then carried in the int8 parameters it
    leaves the body with; a QUANTIZE that now meets different parameters stays as an int8 -> int8
    requantization, one that meets the same goes. Returns how many loop variables were folded.
    """
    folded = 0
    for graph_index, op in while_ops(model):
        outer = model.subgraphs[graph_index]
        body = model.subgraphs[op.builtinOptions.bodySubgraphIndex]
        cond = model.subgraphs[op.builtinOptions.condSubgraphIndex]
        for k in range(len(op.inputs)):
            folded += _fold_one(model, outer, body, cond, op, k)
    _drop_orphan_buffers(model)
    return folded


def _only(model, ops, name: str) -> bool:
    return all(op_name(model, o) == name for o in ops)


def _fold_one(model, outer, body, cond, op, k: int) -> bool:
    b_in, b_out = int(body.inputs[k]), int(body.outputs[k])
    o_in, o_out = int(op.inputs[k]), int(op.outputs[k])
    entry, after = _consumers(body, b_in), _consumers(outer, o_out)
    source = _producer(outer, o_in)
    constant = source is None and model.buffers[outer.tensors[o_in].buffer].data is not None
    if body.tensors[b_in].type != FLOAT32 or not _only(model, entry, "QUANTIZE") or not _only(model, after, "QUANTIZE"):
        return False
    if o_out in list(outer.outputs) or [int(i) for i in op.inputs].count(o_in) > 1:
        return False
    if not constant and (source is None or op_name(model, source) != "DEQUANTIZE"):
        return False
    if len(_consumers(outer, o_in)) > 1:  # the float value is needed elsewhere too
        return False
    exit_op = None
    if b_in == b_out:  # passed through: carried in the parameters it comes in with
        if constant:
            return False
        carry = _qparams(outer.tensors[int(source.inputs[0])])
    else:
        exit_op = _producer(body, b_out)
        if exit_op is None or op_name(model, exit_op) != "DEQUANTIZE" or _consumers(body, b_out) \
                or [int(i) for i in body.outputs].count(b_out) > 1:
            return False
        carry = _qparams(body.tensors[int(exit_op.inputs[0])])
    if carry is None:
        return False
    exit_requantizes = False
    if exit_op is not None and not _covers(carry, _start_range(model, outer, o_in, source)):
        # e.g. a decoder whose initial state is a wide-ranged code while each step ends in tanh: carry
        # the loop variable in the range calibrated at the body's entry, requantize at its exit.
        entry_params = {_qparams(body.tensors[int(q.outputs[0])]) for q in entry}
        if len(entry_params) != 1 or None in entry_params:
            return False
        carry, exit_requantizes = entry_params.pop(), True
    # -- outside, before the loop: an int8 start value in `carry`
    if constant:
        tensor = outer.tensors[o_in]
        values = np.frombuffer(bytes(model.buffers[tensor.buffer].data), np.float32)
        quantized = np.clip(np.round(values / carry[0]) + carry[1], -128, 127).astype(np.int8)
        start = _new_tensor(model, outer, tensor, (tensor.name or b"") + b"/int8")
        model.buffers[outer.tensors[start].buffer].data = np.frombuffer(quantized.tobytes(), np.uint8)
        _set_int8(outer.tensors[start], carry)
    elif _qparams(outer.tensors[int(source.inputs[0])]) == carry:
        start = int(source.inputs[0])
        _remove_ops(outer, [source])
    else:  # DEQUANTIZE becomes an int8 -> int8 requantization into `carry`
        source.opcodeIndex = _opcode(model, "QUANTIZE")
        _set_int8(outer.tensors[o_in], carry)
        start = o_in
    inputs = [int(i) for i in op.inputs]
    inputs[k] = start
    op.inputs = inputs
    # -- the loop variable itself, in all three graphs
    _set_int8(outer.tensors[o_out], carry)
    for graph in (body, cond):
        _set_int8(graph.tensors[int(graph.inputs[k])], carry)
    if exit_requantizes:  # DEQUANTIZE becomes an int8 -> int8 requantization into `carry`
        exit_op.opcodeIndex = _opcode(model, "QUANTIZE")
        _set_int8(body.tensors[b_out], carry)
    elif exit_op is not None:
        outputs = [int(i) for i in body.outputs]
        outputs[k] = int(exit_op.inputs[0])
        body.outputs = outputs
        _remove_ops(body, [exit_op])
    # -- QUANTIZE ops that read it: gone where the parameters already match, requantizations elsewhere
    for graph, tensor, readers in ((body, b_in, entry), (outer, o_out, after)):
        same = [q for q in readers if _qparams(graph.tensors[int(q.outputs[0])]) == carry]
        for q in same:
            _replace_input(graph, int(q.outputs[0]), tensor)
            if int(q.outputs[0]) in [int(i) for i in graph.outputs]:
                graph.outputs = [tensor if int(i) == int(q.outputs[0]) else int(i) for i in graph.outputs]
        _remove_ops(graph, same)
    for q in [q for q in entry if q not in same]:
        _absorb_requantize(model, body, q)
    return True


# Integer kernels that derive their rescaling from their input's parameters when prepared.
_RESCALING_READERS = {"FULLY_CONNECTED", "ADD", "SUB", "MUL", "TANH", "LOGISTIC"}


def _absorb_requantize(model, subgraph, requantize) -> bool:
    """Let the readers of an int8 -> int8 QUANTIZE read its input directly (one rounding less per trip).

    Only where every reader rescales from its input's parameters at prepare time; a FULLY_CONNECTED
    bias (int32, scale = input scale x weight scale) is rescaled to the new input scale.
    """
    source, target = int(requantize.inputs[0]), int(requantize.outputs[0])
    readers = _consumers(subgraph, target)
    if target in [int(i) for i in subgraph.outputs] or not readers:
        return False
    if any(op_name(model, r) not in _RESCALING_READERS for r in readers):
        return False
    if any(op_name(model, r) == "FULLY_CONNECTED" and int(r.inputs[0]) != target for r in readers):
        return False
    old_scale, new_scale = _qparams(subgraph.tensors[target])[0], _qparams(subgraph.tensors[source])[0]
    for r in readers:
        if op_name(model, r) == "FULLY_CONNECTED" and len(r.inputs) > 2 and r.inputs[2] >= 0:
            if not _rescale_bias(model, subgraph, r, old_scale, new_scale):
                return False
    _replace_input(subgraph, target, source)
    _remove_ops(subgraph, [requantize])
    return True


def _rescale_bias(model, subgraph, fc, old_input_scale: float, new_input_scale: float) -> bool:
    index = int(fc.inputs[2])
    bias = subgraph.tensors[index]
    data = model.buffers[bias.buffer].data
    if bias.type != 2 or data is None or len(_consumers(subgraph, index)) != 1:  # int32 constant, this FC's own
        return False
    values = np.frombuffer(bytes(data), np.int32).astype(np.float64) * (old_input_scale / new_input_scale)
    if np.abs(values).max(initial=0) >= 2**31 - 1:
        return False
    model.buffers[bias.buffer].data = np.frombuffer(np.round(values).astype(np.int32).tobytes(), np.uint8)
    bias.quantization.scale = np.asarray(bias.quantization.scale, np.float32) * np.float32(new_input_scale / old_input_scale)
    return True


def _representable(params: tuple) -> tuple[float, float]:
    scale, zero = params
    return (-128 - zero) * scale, (127 - zero) * scale


def _start_range(model, subgraph, tensor: int, source) -> tuple[float, float]:
    """Range of a loop variable's start value: a constant's values, or what its int8 source can hold."""
    if source is None:
        values = np.frombuffer(bytes(model.buffers[subgraph.tensors[tensor].buffer].data), np.float32)
        return float(values.min(initial=0)), float(values.max(initial=0))
    return _representable(_qparams(subgraph.tensors[int(source.inputs[0])]))


def _covers(params: tuple, span: tuple[float, float]) -> bool:
    lo, hi = _representable(params)
    return lo - params[0] / 2 <= span[0] and span[1] <= hi + params[0] / 2


def _drop_orphan_buffers(model) -> None:
    """Empty constant buffers that no tensor still in use points at (left behind by folding)."""
    used = set()
    for subgraph in model.subgraphs:
        live = {int(i) for op in subgraph.operators for i in list(op.inputs) + list(op.outputs) if i >= 0}
        live |= {int(i) for i in subgraph.inputs} | {int(i) for i in subgraph.outputs}
        used |= {subgraph.tensors[i].buffer for i in live}
    for index, buffer in enumerate(model.buffers):
        if index not in used and buffer.data is not None:
            buffer.data = None


def tensor_name(tensor) -> str:
    name = tensor.name
    return name.decode() if isinstance(name, bytes) else str(name)


HYBRID_OPS = ("FULLY_CONNECTED",)  # ops a float layer can keep integer MACs in: int8 weights, float activations


def hybridize(model, outputs: set[str]) -> int:
    """Give the float FULLY_CONNECTED ops that write one of ``outputs`` (tensor names) int8 weights,
    symmetric per output channel, with their input quantized per call (TFLite's hybrid kernel, as in a
    dynamic-range model): the layer's activations stay float and its MACs integer. A weight whose buffer
    another tensor also reads is left float. Returns how many ops were changed."""
    s = schema()
    readers: dict[int, int] = {}
    for subgraph in model.subgraphs:
        for tensor in subgraph.tensors:
            readers[tensor.buffer] = readers.get(tensor.buffer, 0) + 1
    changed = 0
    for subgraph in model.subgraphs:
        for op in subgraph.operators:
            if op_name(model, op) not in HYBRID_OPS or len(op.inputs) < 2 or not len(op.outputs):
                continue
            out = tensor_name(subgraph.tensors[op.outputs[0]])
            x, w = subgraph.tensors[op.inputs[0]], subgraph.tensors[op.inputs[1]]
            data = model.buffers[w.buffer].data
            if out not in outputs or x.type != FLOAT32 or w.type != FLOAT32 or data is None or readers[w.buffer] != 1:
                continue
            kernel = np.frombuffer(bytes(bytearray(data)), np.float32).reshape(tuple(w.shape))
            rows = kernel.reshape(len(kernel), -1)
            scale = np.abs(rows).max(axis=1) / 127.0
            scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
            q = np.clip(np.round(rows / scale[:, None]), -127, 127).astype(np.int8)
            model.buffers[w.buffer].data = np.frombuffer(q.tobytes(), np.uint8)
            w.type = INT8
            params = s.QuantizationParametersT()
            params.scale, params.zeroPoint = scale, np.zeros(len(scale), np.int64)
            params.quantizedDimension = 0
            w.quantization = params
            op.builtinOptions.asymmetricQuantizeInputs = True
            op.opcodeIndex = _opcode_at_least(model, op.opcodeIndex, HYBRID_VERSION)
            changed += 1
    return changed


# The FULLY_CONNECTED version TensorFlow's converter writes for this kernel (per-channel int8 weights, float
# input quantized per call). Left at the int8 op's version, tflite-runtime 2.14 loads the op and returns
# wrong outputs (measured: top-1 differed from LiteRT 2.3 on every input); at this version it refuses to
# load the model, naming the op, as it does the converter's own dynamic-range output.
HYBRID_VERSION = 12


def _opcode_at_least(model, index: int, version: int) -> int:
    """The index of an operator code like ``index``'s with at least ``version`` (added when missing)."""
    code = model.operatorCodes[index]
    if code.version >= version:
        return index
    for i, other in enumerate(model.operatorCodes):
        if (other.builtinCode, other.deprecatedBuiltinCode, other.customCode) == (
                code.builtinCode, code.deprecatedBuiltinCode, code.customCode) and other.version == version:
            return i
    new = schema().OperatorCodeT()
    new.builtinCode, new.deprecatedBuiltinCode = code.builtinCode, code.deprecatedBuiltinCode
    new.customCode, new.version = code.customCode, version
    model.operatorCodes.append(new)
    return len(model.operatorCodes) - 1


def _set_int8(tensor, params: tuple) -> None:
    s = schema()
    tensor.type = INT8
    q = s.QuantizationParametersT()
    q.scale = np.array([params[0]], np.float32)
    q.zeroPoint = np.array([params[1]], np.int64)
    tensor.quantization = q


def slim(model) -> None:
    """Drop what nothing reads at run time: names of internal tensors, calibration min/max."""
    for g, subgraph in enumerate(model.subgraphs):
        keep = set(int(i) for i in subgraph.inputs) | set(int(i) for i in subgraph.outputs) if g == 0 else set()
        for index, tensor in enumerate(subgraph.tensors):
            if index not in keep:
                tensor.name = b""
            if tensor.quantization is not None:
                tensor.quantization.min = tensor.quantization.max = None
