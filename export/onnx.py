"""Keras -> .onnx: fp32 through tf2onnx; fp16, dynamic and int8 derived from it with onnx tools and
ONNX Runtime's quantizer (static QDQ calibrated on the same images; dynamic where static cannot reach).

The batch dimension stays free. The opset is one that ONNX Runtime on a Raspberry Pi (recent wheels)
and on a Jetson (JetPack 5 ships ORT 1.16, opset <= 19) both run.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from edgeseq.atomic import atomic_path
from edgeseq.export import selection as select
from edgeseq.formats import Quant
from edgeseq.lazy import require

OPSET = 17
INPUT_NAME = "image"
# Ops ORT's static quantizer leaves in float but its dynamic quantizer turns into integer kernels.
DYNAMIC_ONLY_OPS = ("LSTM",)
FUSED_OPS = ("GRU", "RNN")  # what fp32 makes of a GRU or SimpleRNN Loop (:mod:`edgeseq.export.fuse`)


def convert(model, out_path: Path, quant: Quant, calibration: np.ndarray | None = None,
            fp32_path: Path | None = None, selection: np.ndarray | None = None) -> dict:
    """Write ``out_path``; fp16/dynamic/int8 start from ``fp32_path`` when given (else convert first).

    selection: held-out images (not calibration, never test) on which the int8 and dynamic recipes pick
    between their candidates by agreement with ``model``.
    """
    quant = Quant(quant)
    if quant is Quant.fp32:
        return convert_fp32(model, out_path)
    integer = quant in (Quant.int8, Quant.dynamic)
    reference = select.reference(model, selection) if integer else None
    with tempfile.TemporaryDirectory() as scratch:
        note = {}
        fused = [op for op in FUSED_OPS if op in _op_types(fp32_path)] if integer and fp32_path is not None else []
        if fused:  # ORT has no integer GRU/RNN kernel: quantizing the op would leave the recurrence in float
            ops = "/".join(fused)
            fp32_path, note = None, {"from": f"fp32 onnx with its {ops} unrolled (ORT has no integer {ops} kernel)"}
        if fp32_path is None:
            fp32_path = Path(scratch) / "fp32.onnx"
            convert_fp32(model, fp32_path, fuse=not integer)
        return {**derive(fp32_path, out_path, quant, calibration, reference), **note}


def _op_types(path: Path) -> set[str]:
    """Every op type in the model at ``path``, Loop bodies included."""
    onnx = require("onnx")
    return {n.op_type for g in _graphs(onnx.load(str(path)).graph) for n in g.node}


def convert_fp32(model, out_path: Path, fuse: bool = True) -> dict:
    """tf2onnx, then GRU and SimpleRNN loops as ONNX ``GRU``/``RNN`` ops (``fuse``) and the other loops
    unrolled, each kept only where it computes what the converter's graph computes."""
    tf = require("tensorflow")
    tf2onnx = require("tf2onnx")
    input_shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    function = tf.function(lambda x: model(x, training=False))
    spec = [tf.TensorSpec([None, *input_shape], tf.float32, name=INPUT_NAME)]
    proto, _ = tf2onnx.convert.from_function(function, input_signature=spec, opset=OPSET)
    proto, fused = fused_cells(proto) if fuse else (proto, {})
    proto, loops = unrolled(proto)
    slim(proto)
    with atomic_path(out_path) as tmp:
        tmp.write_bytes(proto.SerializeToString())
    return {"converter": f"tf2onnx {tf2onnx.__version__}", "opset": OPSET, "batch": "dynamic", **fused, **loops,
            **SLIM_NOTE}


UNROLL_TOLERANCE = 1e-5


def _refused(original, candidate, inputs: int = 4) -> tuple[str | None, float]:
    """Why ``candidate`` may not replace ``original`` (None when it may), and the largest output difference
    on ``inputs`` random batches (the last with every other row zero): it must pass the ONNX checker, open
    in ORT and match within UNROLL_TOLERANCE."""
    onnx = require("onnx")
    shape = [d.dim_value or 2 for d in original.graph.input[0].type.tensor_type.shape.dim]
    rng = np.random.default_rng(0)
    batches = [rng.random(shape, dtype=np.float32) for _ in range(inputs)]
    if len(shape) > 1:  # and rows of zeros, as an image's margins are: a mask or a skipped step shows there
        batches[-1][:, ::2] = 0
    try:
        onnx.checker.check_model(candidate)
        reason = ort_load_error(candidate)  # in a child process: ORT has crashed on graphs it could not take
    except Exception as exc:  # noqa: BLE001 - a graph the checker refuses is not used
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
    if reason is not None:
        return f"refused ({reason})", np.inf
    before, after = _outputs(original, batches), _outputs(candidate, batches)
    diff = max(float(np.max(np.abs(a - b))) if a.shape == b.shape else np.inf for a, b in zip(before, after))
    if not diff <= UNROLL_TOLERANCE:
        return f"differed by {diff:.2e} on random inputs", diff
    return None, diff


def fused_cells(proto) -> tuple[object, dict]:
    """``proto`` with its GRU and SimpleRNN loops as ONNX ``GRU``/``RNN`` ops (:mod:`edgeseq.export.fuse`)
    when that computes what the Loops compute; else ``proto`` itself. Returns (model, recipe note)."""
    import copy

    from edgeseq.export import fuse

    candidate = copy.deepcopy(proto)
    done = [r for r in fuse.fuse_loops(candidate) if r["fused"]]
    if not done:
        return proto, {}
    ops = "/".join(sorted({r["op"] for r in done}))
    why, diff = _refused(proto, candidate)
    if why is not None:
        return proto, {"fused": f"ONNX {ops} op {why}: Loop kept"}
    cells = ", ".join(f"{r['op']} (hidden {r['hidden_size']})" for r in done)
    loops = f"{len(done)} Loop{'s' if len(done) > 1 else ''}"
    return candidate, {"fused": f"{loops} replaced by ONNX {cells}; outputs equal to the Loop's within {diff:.1e} "
                                "on random inputs"}


def unrolled(proto) -> tuple[object, dict]:
    """``proto`` with its Loops unrolled (:mod:`edgeseq.export.unroll`) when the unrolled graph gives the
    same outputs as the Loop on random batches; else ``proto`` itself. Returns (model, recipe note)."""
    import copy

    from edgeseq.export import unroll

    candidate = copy.deepcopy(proto)
    report = unroll.unroll_loops(candidate)
    done = [r for r in report if r["unrolled"]]
    kept = [f"Loop {r['loop']} kept: {r['why']}" for r in report if not r["unrolled"]]
    if not done:
        return proto, ({"loops": "; ".join(kept)} if kept else {})
    why, diff = _refused(proto, candidate)
    if why is not None:
        return proto, {"loops": f"unrolled graph {why}: Loop kept"}
    note = ", ".join(f"{r['trips']} steps of {r['body_nodes']} nodes" for r in done)
    return candidate, {"loops": f"unrolled ({note}); outputs equal to the Loop's within {diff:.1e} on random inputs"
                                + ("; " + "; ".join(kept) if kept else "")}


def _outputs(proto, batches: list) -> list:
    ort = require("onnxruntime")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return [np.concatenate([session.run(None, {name: b})[k] for b in batches]) for k in range(len(session.get_outputs()))]


SLIM_NOTE = {"names": "short tensor and node names, no value_info (same graph, smaller file)"}


def _graphs(graph):
    """``graph`` and every subgraph (Loop/If bodies) inside it, depth first."""
    onnx = require("onnx")
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _graphs(attr.g)
            for sub in attr.graphs:
                yield from _graphs(sub)


def slim(model) -> None:
    """Shorten every internal tensor and node name and drop value_info, in place.

    tf2onnx names carry the whole Keras scope (``rnn_1/simplernn_1/while/...``, 40-90 characters each),
    and in a small int8 model those names weigh a third of the file. Renaming is consistent across Loop
    bodies (which read outer-scope names); the model's input and output names stay, and so do an unrolled
    loop's per-step state names, which the drift report reads.
    """
    from edgeseq.export.unroll import STATE

    keep = {v.name for v in model.graph.input} | {v.name for v in model.graph.output}
    names: dict[str, str] = {}

    def short(name: str) -> str:
        if not name or name in keep or STATE.match(name):
            return name
        return names.setdefault(name, f"t{len(names)}")

    nodes = 0
    for graph in _graphs(model.graph):
        del graph.value_info[:]
        graph.doc_string = ""
        for tensor in graph.initializer:
            tensor.name = short(tensor.name)
        for value in list(graph.input) + list(graph.output):
            value.name = short(value.name)
        for node in graph.node:
            node.name, node.doc_string, nodes = f"n{nodes}", "", nodes + 1
            node.input[:] = [short(x) for x in node.input]
            node.output[:] = [short(x) for x in node.output]


def _write_slim(source: Path, out_path: Path) -> None:
    onnx = require("onnx")
    model = onnx.load(str(source))
    slim(model)
    with atomic_path(out_path) as tmp:
        tmp.write_bytes(model.SerializeToString())


class _Calibration:
    """ORT CalibrationDataReader over (N, *input_shape) float32 images, one image per call."""

    def __init__(self, images: np.ndarray, name: str):
        self._items = iter([{name: images[i : i + 1]} for i in range(len(images))])

    def get_next(self):
        return next(self._items, None)


def derive(fp32_path: Path, out_path: Path, quant: Quant, calibration: np.ndarray | None,
           reference: tuple | None = None) -> dict:
    """Write the ``quant`` artifact made from ``fp32_path``; returns its recipe."""
    with tempfile.TemporaryDirectory() as scratch:
        made = Path(scratch) / Path(out_path).name
        recipe = _derive(fp32_path, made, quant, calibration, reference)
        _write_slim(made, out_path)
    return {**recipe, **SLIM_NOTE}


def _derive(fp32_path: Path, out_path: Path, quant: Quant, calibration: np.ndarray | None,
            reference: tuple | None = None) -> dict:
    onnx = require("onnx")
    ort = require("onnxruntime")
    quantization = require("onnxruntime.quantization")
    recipe = {"from": "fp32 onnx", "opset": OPSET, "batch": "dynamic"}
    if quant is Quant.fp16:
        return _fp16(fp32_path, out_path, recipe)
    input_shape = tuple(d.dim_value for d in onnx.load(str(fp32_path)).graph.input[0].type.tensor_type.shape.dim[1:])
    time_steps = input_shape[0] if len(input_shape) >= 2 else None
    if quant is Quant.dynamic:
        head, share = output_head(fp32_path, time_steps)
        # uint8 asymmetric weights: measured on the zoo's mlp at batch 1, 99.90 % agreement against 99.85 %
        # for int8 symmetric. Per-tensor or per-channel differs by model (mlp: per-channel 99.75 %; the
        # unrolled SimpleRNN: per-channel 99.91 %, per-tensor 99.88 %), so both are made and one is chosen.
        with tempfile.TemporaryDirectory() as scratch:
            candidates = {"per-tensor": Path(scratch) / "per-tensor.onnx", "per-channel": Path(scratch) / "per-channel.onnx"}
            for name, path in candidates.items():
                quantization.quantize_dynamic(str(fp32_path), str(path), weight_type=quantization.QuantType.QUInt8,
                                              per_channel=name == "per-channel", nodes_to_exclude=head)
            chosen, selection = select.choose(candidates, reference, preferred="per-tensor")
            with atomic_path(out_path) as tmp:
                tmp.write_bytes(candidates[chosen].read_bytes())
        return {**recipe, "tool": f"onnxruntime.quantization.quantize_dynamic {ort.__version__}",
                "weights": f"uint8 asymmetric {chosen}", "activations": "uint8, quantized per call",
                **_head_note(head, share), **selection}
    if calibration is None or not len(calibration):
        raise ValueError("int8 conversion needs calibration images")
    images = np.asarray(calibration, np.float32).reshape((-1, *input_shape))
    with tempfile.TemporaryDirectory() as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        static = Path(scratch) / "static.onnx"
        source, hoisted = _hoisted_copy(fp32_path, Path(scratch))
        quantization.shape_inference.quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        head, share = output_head(prepared, time_steps)
        quantization.quantize_static(
            str(prepared), str(static), _Calibration(images, INPUT_NAME),
            quant_format=quantization.QuantFormat.QDQ, per_channel=True,
            activation_type=quantization.QuantType.QInt8, weight_type=quantization.QuantType.QInt8,
            calibrate_method=quantization.CalibrationMethod.MinMax, nodes_to_exclude=head,
            # Integer MACs with float outputs (MatMulIntegerToFloat): one requantization less per layer.
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True,
                           "OpTypesToExcludeOutputQuantization": ["MatMul", "Gemm"]},
        )
        dynamic_ops = [n.op_type for n in onnx.load(str(static)).graph.node if n.op_type in DYNAMIC_ONLY_OPS]
        if hoisted:
            dynamic_ops.append("Loop")
        weights = quantization.QuantType.QInt8 if "LSTM" in dynamic_ops else quantization.QuantType.QUInt8
        candidates = {"static QDQ": Path(scratch) / "candidate-static.onnx"}
        if dynamic_ops:  # static QDQ leaves these float: give them ORT's integer dynamic kernels
            quantization.quantize_dynamic(str(static), str(candidates["static QDQ"]), weight_type=weights,
                                          nodes_to_exclude=head, extra_options={"EnableSubgraph": bool(hoisted)},
                                          op_types_to_quantize=list(DYNAMIC_ONLY_OPS) + (["MatMul"] if hoisted else []))
        else:
            candidates["static QDQ"].write_bytes(static.read_bytes())
        if reference is not None:  # the others: every MAC op on dynamic integer kernels
            dynamic_head, dynamic_share = output_head(source, time_steps)  # node names of the graph it starts from
            # per-channel weights: the unrolled SimpleRNN's choice as dynamic (its LSTM kernel takes per-tensor)
            for per_channel in (False, True) if weights == quantization.QuantType.QUInt8 else (False,):
                name = "dynamic integer" + (" per-channel" if per_channel else "")
                candidates[name] = Path(scratch) / f"candidate-{name.replace(' ', '-')}.onnx"
                quantization.quantize_dynamic(str(source), str(candidates[name]), weight_type=weights,
                                              per_channel=per_channel, nodes_to_exclude=dynamic_head,
                                              extra_options={"EnableSubgraph": bool(hoisted)})
        chosen, selection = select.choose(candidates, reference, preferred="static QDQ")
        with atomic_path(out_path) as tmp:
            tmp.write_bytes(candidates[chosen].read_bytes())
    if chosen.startswith("dynamic integer"):
        return {**recipe, "tool": f"onnxruntime.quantization.quantize_dynamic {ort.__version__}",
                "weights": f"{'int8' if weights == quantization.QuantType.QInt8 else 'uint8'} "
                           f"{'per-channel' if chosen.endswith('per-channel') else 'per-tensor'}",
                "activations": "quantized per call", "io": "float32", **_loop_note(hoisted),
                **_head_note(dynamic_head, dynamic_share), **selection}
    return {**recipe, "tool": f"onnxruntime.quantization.quantize_static {ort.__version__}", "format": "QDQ",
            "weights": "int8 per-channel", "activations": "int8 per-tensor (MinMax)", "io": "float32",
            "calibration_images": len(images), "matmul_outputs": "float (integer MACs, no requantization)",
            "dynamic_fallback": sorted(set(dynamic_ops)) or None, **_loop_note(hoisted), **_head_note(head, share),
            **selection}


def hoist_loop_constants(model) -> int:
    """Turn Loop-carried inputs that are constants (an outer initializer passed through the body unchanged:
    how tf2onnx hands a recurrent cell its weights) into initializers of the body. The graph computes the
    same; quantizers, which only quantize initializers, can then reach the recurrent weights, and those are
    still stored once. Returns how many were hoisted."""
    import copy

    from edgeseq.export.unroll import passthrough

    onnx = require("onnx")
    graph = model.graph
    initializers = {i.name: i for i in graph.initializer}
    consumers = {x for n in graph.node for x in n.input} | {o.name for o in graph.output}
    hoisted = 0
    for node in graph.node:
        if node.op_type != "Loop":
            continue
        body = next(a.g for a in node.attribute if a.type == onnx.AttributeProto.GRAPH)
        n_state = len(node.input) - 2
        unchanged = passthrough(body, n_state)
        keep = []
        for k in range(n_state):
            outer, inner = node.input[2 + k], body.input[2 + k].name
            if outer in initializers and k in unchanged and node.output[k] not in consumers:
                constant = copy.deepcopy(initializers[outer])
                constant.name = inner
                body.initializer.append(constant)
                hoisted += 1
            else:
                keep.append(k)
        if len(keep) == n_state:
            continue
        inputs = list(node.input[:2]) + [node.input[2 + k] for k in keep]
        outputs = [node.output[k] for k in keep] + list(node.output[n_state:])
        body_inputs = list(body.input[:2]) + [body.input[2 + k] for k in keep]
        body_outputs = [body.output[0]] + [body.output[1 + k] for k in keep] + list(body.output[1 + n_state:])
        for field, values in ((node.input, inputs), (node.output, outputs), (body.input, body_inputs),
                              (body.output, body_outputs)):
            del field[:]
            field.extend(values)
    used = {x for g in _graphs(graph) for n in g.node for x in n.input}  # a body may read outer names
    for name in [n for n in initializers if n not in used]:
        graph.initializer.remove(initializers[name])
    return hoisted


def _hoisted_copy(fp32_path: Path, scratch: Path) -> tuple[Path, int]:
    onnx = require("onnx")
    model = onnx.load(str(fp32_path))
    count = hoist_loop_constants(model)
    if not count:
        return fp32_path, 0
    path = scratch / "hoisted.onnx"
    onnx.save(model, str(path))
    return path, count


def _fp16(fp32_path: Path, out_path: Path, recipe: dict) -> dict:
    """float16 compute where ORT accepts the converted graph, else float16 weight storage.

    onnxconverter_common mistypes Loop bodies (a Loop kept by tf2onnx): ORT then refuses the file; ORT
    1.31 crashes opening the unrolled SimpleRNN in float16 (see :func:`ort_load_error`). The fallback
    stores every float weight as float16 with a Cast back to float32 (what TFLite's fp16 does): half the
    size, float32 arithmetic.
    """
    onnx = require("onnx")
    float16 = require("onnxconverter_common.float16")
    model = float16.convert_float_to_float16(onnx.load(str(fp32_path)), keep_io_types=True)
    reason = ort_load_error(model)
    if reason is None:
        mode = {"tool": "onnxconverter_common.float16", "weights": "float16", "compute": "float16", "io": "float32"}
    else:
        model = onnx.load(str(fp32_path))
        _store_weights_as_float16(model.graph, onnx)
        mode = {"tool": "float16 weight storage", "weights": "float16 (Cast to float32 at load)",
                "compute": "float32", "io": "float32", "fallback": f"float16 compute graph rejected by ORT: {reason}"}
    with atomic_path(out_path) as tmp:
        onnx.save(model, str(tmp))
    return {**recipe, **mode}


def ort_load_error(model) -> str | None:
    """Why ONNX Runtime cannot open ``model`` (one line), or None when it can. Tried in a child process:
    ORT's graph optimizer has crashed the process on converter output (a segfault in its NCHWc transformer
    on the unrolled SimpleRNN in float16), and a crash here must cost the fallback, not the export."""
    import subprocess
    import sys

    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "candidate.onnx"
        path.write_bytes(model.SerializeToString())
        code = ("import sys, onnxruntime as ort; o = ort.SessionOptions(); o.log_severity_level = 3; "
                "ort.InferenceSession(sys.argv[1], o, providers=['CPUExecutionProvider'])")
        done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True)
    if done.returncode == 0:
        return None
    if done.returncode < 0:
        return f"ONNX Runtime crashed opening it (signal {-done.returncode})"
    lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else f"exit {done.returncode}"
    return last.split(" failed:", 1)[-1].split("] : ", 2)[-1].strip()[:200]  # ORT's message, not its wrapping


def _store_weights_as_float16(graph, onnx, min_elements: int = 16) -> None:
    """Replace float32 initializers (this graph and subgraphs) by float16 ones plus a Cast to float32."""
    casts = []
    for init in list(graph.initializer):
        if init.data_type != onnx.TensorProto.FLOAT or int(np.prod(init.dims)) < min_elements:
            continue
        half = onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(init).astype(np.float16), init.name + "_fp16")
        graph.initializer.remove(init)
        graph.initializer.append(half)
        casts.append(onnx.helper.make_node("Cast", [half.name], [init.name], to=onnx.TensorProto.FLOAT,
                                           name=init.name + "_to_fp32"))
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                _store_weights_as_float16(attr.g, onnx, min_elements)
    for i, cast in enumerate(casts):
        graph.node.insert(i, cast)


HEAD_MAX_SHARE = 0.02  # keep the output layer float only while it is at most this share of the MACs


def output_head(path: Path, time_steps: int | None) -> tuple[list[str], float]:
    """The output layer: nodes from the last MAC op to the graph output, and that op's share of all MACs.

    Returns ([], share) when the head is too big to keep in float. Keeping the last layer at higher
    precision is what keeps int8 agreement on low-margin models (measured on the zoo's mlp: int8
    weights in the 32->10 output layer alone flip 0.10 % of predictions, for 0.5 % of the MACs).
    """
    from edgeseq.export.coverage import onnx_node_macs

    onnx = require("onnx")
    graph = onnx.load(str(path)).graph
    producers = {o: n for n in graph.node for o in n.output}
    head, node = [], producers.get(graph.output[0].name)
    while node is not None and node.op_type not in ("MatMul", "Gemm", "Conv"):
        head.append(node.name)
        node = producers.get(node.input[0]) if node.input else None
    if node is None:
        return [], 0.0
    head.append(node.name)
    macs = onnx_node_macs(path, time_steps)
    share = macs.get(node.name, 0) / max(sum(macs.values()), 1)
    return (head, share) if share <= HEAD_MAX_SHARE else ([], share)


def _loop_note(hoisted: int) -> dict:
    return {"loops": f"{hoisted} loop-carried constants hoisted into the loop body; its MatMuls run ORT's "
                     "dynamic integer kernels (MatMulInteger), weights stored once"} if hoisted else {}


def _head_note(head: list[str], share: float) -> dict:
    return {"kept_float": {"nodes": head, "mac_share": round(share, 4),
                           "why": "output layer at higher precision"}} if head else {}
