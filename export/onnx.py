"""Keras -> .onnx: fp32 through tf2onnx; fp16, dynamic and int8 derived from it with onnx tools and
ONNX Runtime's quantizer (static QDQ calibrated on the same images; dynamic where static cannot reach).

The batch dimension stays free. The opset is one that ONNX Runtime on a Raspberry Pi (recent wheels)
and on a Jetson (JetPack 5 ships ORT 1.16, opset <= 19) both run.
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import numpy as np

from edgeseq.atomic import atomic_path
from edgeseq.formats import Quant
from edgeseq.lazy import require

OPSET = 17
INPUT_NAME = "image"
FUSED_OPS = ("GRU", "RNN")  # what fp32 makes of a GRU or SimpleRNN Loop (:mod:`edgeseq.export.fuse`)


def convert(model, out_path: Path, quant: Quant, calibration: np.ndarray | None = None,
            fp32_path: Path | None = None, selection=None) -> dict:
    """Write ``out_path``; fp16 starts from ``fp32_path`` when given (else converts first).

    dynamic and int8 convert afresh with tf2onnx's names kept (they tell which Keras layer each node came
    from, for the search's per-layer fallback), GRU and SimpleRNN unrolled (ORT has no integer GRU/RNN
    kernel: quantizing the op would leave the recurrence float), and are timed and sized against
    ``fp32_path``. selection: a :class:`edgeseq.export.search.Selection` of held-out images (not
    calibration, never test) on which the dynamic and int8 searches measure their candidates.
    """
    quant = Quant(quant)
    if quant is Quant.fp32:
        return convert_fp32(model, out_path)
    if quant is Quant.fp16 and fp32_path is not None:
        return derive(fp32_path, out_path, quant, calibration)
    with tempfile.TemporaryDirectory() as scratch:
        source = Path(scratch) / "fp32.onnx"
        if quant is Quant.fp16:
            convert_fp32(model, source)
            return derive(source, out_path, quant, calibration)
        from edgeseq.export.search import KerasLayers

        fused = [op for op in FUSED_OPS if op in _op_types(fp32_path)] if fp32_path is not None else []
        note = {"from": f"fp32 onnx with its {'/'.join(fused)} unrolled (ORT has no integer {'/'.join(fused)} "
                        "kernel)"} if fused else {}
        made = convert_fp32(model, source, fuse=False, keep_names=True)
        note.update({k: made[k] for k in ("rewrites", "loops") if k in made})
        equalized = functools.partial(_equalized, model, calibration, Path(scratch) / "equalized.onnx")
        rounded = _rounded(model, calibration, source, Path(scratch) / "rounded.onnx")
        return {**derive(source, out_path, quant, calibration, selection, fp32_path or source, KerasLayers.of(model),
                         equalized, rounded), **note}


UNROLLED_CELLS = ("SimpleRNN", "GRU")  # Keras layers whose ONNX int8 graph runs unrolled


def _rounded(model, calibration: np.ndarray | None, source: Path, out_path: Path):
    """The float graph of a copy of ``model`` whose kernels are rounded by output error
    (:mod:`edgeseq.export.rounding`), as an :class:`edgeseq.export.onnx_quant.Rounded`, for a model with a
    SimpleRNN or GRU; else None. Their int8 graphs run unrolled, every step on the same int8 weights, so each
    weight's rounding error is paid at every step: on the zoo rnn's distorted digits
    (benchmarks/int8_robustness.py) its onnx-dynamic agreed 98.10 % with Keras with weights rounded to
    nearest, 98.70 % rounded so; rnn128-1ep's onnx-int8, 99.32 % -> 99.82 % on the test set. The output layer the integer graphs keep float (:func:`output_head`) and
    LSTM layers (kept an LSTM op, whose dynamic kernel ORT quantizes per tensor) keep their weights."""
    from edgeseq.export import onnx_quant, rounding
    from edgeseq.export.search import KerasLayers

    if calibration is None or not len(calibration) or \
            not any(type(layer).__name__ in UNROLLED_CELLS for layer in model.layers):
        return None
    shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    head = onnx_quant.output_head(source, shape[0] if len(shape) >= 2 else None)[0]
    skip = {KerasLayers.of(model).owner(name) for name in head[-1:]}
    skip |= {layer.name for layer in model.layers if type(layer).__name__ == "LSTM"}
    copy, done = rounding.round_weights(model, np.asarray(calibration, np.float32).reshape((-1, *shape)),
                                        skip=frozenset(name for name in skip if name))
    if not done:
        return None
    convert_fp32(copy, out_path, fuse=False, keep_names=True)
    return onnx_quant.Rounded(out_path, KerasLayers.of(copy), [d["layer"] for d in done])


def _equalized(model, calibration: np.ndarray | None, out_path: Path):
    """The float graph of ``model`` with its channel ranges equalized (:mod:`edgeseq.export.equalize`), as an
    :class:`edgeseq.export.onnx_quant.Equalized`; None where no tensor can be."""
    from edgeseq.export import equalize, onnx_quant
    from edgeseq.export.search import KerasLayers

    if calibration is None or not len(calibration):
        return None
    shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    same, pairs = equalize.equalize(model, np.asarray(calibration, np.float32).reshape((-1, *shape)))
    if not pairs:
        return None
    convert_fp32(same, out_path, fuse=False, keep_names=True)
    return onnx_quant.Equalized(out_path, KerasLayers.of(same), [p.record() for p in pairs])


def _op_types(path: Path) -> set[str]:
    """Every op type in the model at ``path``, Loop bodies included."""
    onnx = require("onnx")
    return {n.op_type for g in _graphs(onnx.load(str(path)).graph) for n in g.node}


def convert_fp32(model, out_path: Path, fuse: bool = True, keep_names: bool = False) -> dict:
    """tf2onnx, then GRU and SimpleRNN loops as ONNX ``GRU``/``RNN`` ops (``fuse``) and the other loops
    unrolled, each kept only where it computes what the converter's graph computes. Names are shortened
    (:func:`slim`) unless ``keep_names``."""
    tf = require("tensorflow")
    tf2onnx = require("tf2onnx")
    input_shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    function = tf.function(lambda x: model(x, training=False))
    spec = [tf.TensorSpec([None, *input_shape], tf.float32, name=INPUT_NAME)]
    proto, _ = tf2onnx.convert.from_function(function, input_signature=spec, opset=OPSET)
    initialized = {i.name for i in proto.graph.initializer}
    extra = [i.name for i in proto.graph.input if i.name != INPUT_NAME and i.name not in initialized]
    if extra:  # e.g. a layer called on a numpy constant at build time: TensorFlow captures the result
        raise ValueError(f"the model reads tensors from outside its layers ({', '.join(extra[:3])}): tf2onnx leaves "
                         "them as graph inputs with no value; compute them inside a layer instead")
    rewrites = runnable_ops(proto, model)
    proto, fused = fused_cells(proto) if fuse else (proto, {})
    proto, loops = unrolled(proto)
    if not keep_names:
        slim(proto)
    with atomic_path(out_path) as tmp:
        tmp.write_bytes(proto.SerializeToString())
    return {"converter": f"tf2onnx {tf2onnx.__version__}", "opset": OPSET, "batch": "dynamic", **rewrites, **fused,
            **loops, **SLIM_NOTE}


KERAS_TOLERANCE = 1e-4  # a rewritten graph against the Keras model, on random inputs


def runnable_ops(proto, model) -> dict:
    """Rewrite, in place, what tf2onnx emits but ONNX Runtime has no kernel for, and check the rewritten
    graph against ``model`` on random inputs. Returns the recipe note ({} when nothing was rewritten).

    ``Erfc`` (TensorFlow's exact GELU is ``0.5 x erfc(-x/sqrt 2)``; every transformer block has one)
    becomes ``1 - Erf``: ORT refuses to load a graph with Erfc, so without this no ONNX artifact of such
    a model runs at all.
    """
    onnx = require("onnx")
    count = 0
    for graph in _graphs(proto.graph):
        one = None
        for node in list(graph.node):
            if node.op_type != "Erfc" or node.domain not in ("", "ai.onnx"):
                continue
            if one is None:
                one = f"edgeseq_one_{count}"
                graph.initializer.append(onnx.numpy_helper.from_array(np.array(1.0, np.float32), one))
            erf = f"{node.output[0]}_erf"
            position = list(graph.node).index(node)
            graph.node.remove(node)
            graph.node.insert(position, onnx.helper.make_node("Sub", [one, erf], list(node.output),
                                                              name=f"{node.name}_sub"))
            graph.node.insert(position, onnx.helper.make_node("Erf", list(node.input), [erf], name=f"{node.name}_erf"))
            count += 1
    if not count:
        return {}
    diff = _keras_difference(proto, model)
    if not diff <= KERAS_TOLERANCE:
        raise ValueError(f"Erfc rewritten as 1 - Erf, but the graph then differs from Keras by {diff:.2e}")
    return {"rewrites": f"Erfc x{count} as 1 - Erf (ONNX Runtime has no Erfc kernel); outputs equal Keras' within "
                        f"{diff:.1e} on random inputs"}


def _keras_difference(proto, model, batches: int = 3) -> float:
    """Largest |ORT output - Keras output| over random batches of 4."""
    shape = [int(d) for d in model.inputs[0].shape[1:]]
    rng = np.random.default_rng(0)
    inputs = [rng.random((4, *shape), dtype=np.float32) for _ in range(batches)]
    ours = _outputs(proto, inputs)[0]
    theirs = np.concatenate([np.asarray(model(x, training=False)) for x in inputs])
    return float(np.max(np.abs(ours.reshape(theirs.shape) - theirs)))


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


def derive(fp32_path: Path, out_path: Path, quant: Quant, calibration: np.ndarray | None,
           selection=None, baseline: Path | None = None, keras=None, equalized=None, rounded=None) -> dict:
    """Write the ``quant`` artifact made from ``fp32_path``; returns its recipe.

    selection: a :class:`edgeseq.export.search.Selection` the dynamic and int8 searches measure on;
    equalized: () -> an :class:`edgeseq.export.onnx_quant.Equalized` graph (or None) the int8 search may
    also try; rounded: an :class:`edgeseq.export.onnx_quant.Rounded` graph whose families it tries too."""
    recipe = {"from": "fp32 onnx", "opset": OPSET, "batch": "dynamic"}
    with tempfile.TemporaryDirectory() as scratch:
        made = Path(scratch) / Path(out_path).name
        if quant is Quant.fp16:
            recipe = _fp16(fp32_path, made, recipe)
        else:
            from edgeseq.export import onnx_quant

            recipe = {**recipe, **onnx_quant.integer(fp32_path, made, quant, calibration, selection, baseline, keras,
                                                     equalized, rounded)}
        _write_slim(made, out_path)
    return {**recipe, **SLIM_NOTE}


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


