"""fp32 .onnx -> dynamic and int8 .onnx with ONNX Runtime's quantizer, through the accuracy-aware search
(:mod:`edgeseq.export.search`).

Two families of integer graphs:

- **static QDQ** (int8): activations quantized with ranges calibrated on training images; MatMul/Gemm
  outputs stay float (MatMulIntegerToFloat: one requantization less per layer). ORT's static quantizer
  leaves ``LSTM`` float: its dynamic integer kernel (DynamicQuantizeLSTM) is applied on top.
- **dynamic integer**: int8/uint8 weights, activations quantized per call.

Stages, cheapest first: the standard candidates of each family; then static QDQ with percentile and
entropy ranges instead of min-max; then static QDQ of the model with its channel ranges equalized
(:mod:`edgeseq.export.equalize`: only weights change; per-channel weights, which its scales assume); then
float fallback of the most sensitive layers (measured one at a
time) in the family that scored best. ORT's CPU provider has no int16 MatMul/Conv kernels, so 16-bit
activations would run as float there: that remedy is not offered for ONNX.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeseq.atomic import atomic_path
from edgeseq.export import equalize, search
from edgeseq.formats import Quant
from edgeseq.lazy import require

INPUT_NAME = "image"
DYNAMIC_ONLY_OPS = ("LSTM",)  # left float by static QDQ; ORT's dynamic quantizer gives them integer kernels
MAC_OPS = ("MatMul", "Gemm", "Conv", "LSTM", "GRU", "RNN")
RANGES = {"percentile": "Percentile", "entropy": "Entropy"}  # stage 2: other range settings
HEAD_MAX_SHARE = 0.02  # keep the output layer float only while it is at most this share of the MACs,
# and of the weights: keras.io's convnet keeps 46 % of its weights in its 1600->10 head (0.7 % of its MACs),
# and a float head left its int8 ONNX at 0.62x fp32's size. At 5 % the 64->10 head of a 1-epoch SimpleRNN
# (9.8 % of its weights) went int8 and its onnx-int8 fell from 99.76 % to 99.49 % agreement.
HEAD_MAX_WEIGHTS = 0.25
EQUALIZED = "static QDQ, channels equalized"  # the family of the equalized graph, and its stage


ROUNDED = "rounded by output error"  # the families of the graph whose kernels are rounded so
ON_GRID = f"int8 per-channel, {ROUNDED}"  # what those families' weights are


@dataclass
class Rounded:
    """An fp32 .onnx of a copy of the model whose kernels sit on the symmetric int8 per-channel grid,
    rounded by output error (:mod:`edgeseq.export.rounding`), with that copy's layers."""

    path: Path
    keras: search.KerasLayers
    layers: list[str]  # the layers rounded


@dataclass
class Equalized:
    """An fp32 .onnx of an equalized copy of the model, with that copy's layers (which node is which)."""

    path: Path
    keras: search.KerasLayers
    pairs: list[dict]  # :meth:`edgeseq.export.equalize.Pair.record` of each equalized tensor


class _Calibration:
    """ORT CalibrationDataReader over (N, *input_shape) float32 images, one image per call."""

    def __init__(self, images: np.ndarray, name: str):
        self._items = iter([{name: images[i : i + 1]} for i in range(len(images))])

    def get_next(self):
        return next(self._items, None)


class _Family:
    """One family's candidates: ``build(name, float_layers)`` -> a slimmed .onnx in scratch.

    make(family, graph, out, exclude, **options) writes the quantized graph; it may note what it did on
    the family (``dynamic_ops``)."""

    def __init__(self, scratch: Path, graph: Path, make, layers: list[search.Layer], head: tuple[list[str], float],
                 variants: dict[str, dict], weights):
        self.scratch, self.graph, self.make = scratch, graph, make
        self.head, self.head_share = head
        self.layers = {layer.label: layer for layer in layers}
        self.variants = variants  # name suffix -> quantizer options of the standard candidates
        self.weights = weights  # candidate name -> what its weights are, for the recipe
        self.dynamic_ops: list[str] = []
        self.ops_left_dynamic: dict[Path, list[str]] = {}  # candidate -> ops given dynamic kernels on top

    def build(self, name: str, float_layers: list[str], **options) -> Path:
        from edgeseq.export.onnx import slim

        onnx = require("onnx")
        handle, name_on_disk = tempfile.mkstemp(dir=self.scratch, prefix="candidate-", suffix=".onnx")
        os.close(handle)
        path = Path(name_on_disk)
        raw = path.with_suffix(".raw.onnx")
        exclude = list(self.head) + [n for label in float_layers for n in self.layers[label].nodes]
        self.make(self, self.graph, raw, exclude, **options)
        model = onnx.load(str(raw))
        fuse_dynamic_matmuls(model)
        slim(model)
        onnx.save(model, str(path))
        self.ops_left_dynamic[path] = list(self.dynamic_ops)
        return path


def integer(fp32_path: Path, out_path: Path, quant: Quant, calibration: np.ndarray | None,
            selection: search.Selection | None, baseline: Path | None = None, keras=None,
            equalized=None, rounded: Rounded | None = None) -> dict:
    """Write the dynamic or int8 artifact of ``fp32_path``; returns its recipe (with the search record).

    baseline: the fp32 artifact the result is timed and sized against (the bundle's own, when the
    integer graph starts from another form of it, e.g. with its GRU unrolled); keras: the model's
    :class:`~edgeseq.export.search.KerasLayers`, to tell which ops each layer became; equalized: () -> the
    :class:`Equalized` graph, or None where no tensor can be (a stage of the int8 search, built if reached);
    rounded: the :class:`Rounded` graph, whose families join the standard candidates.
    """
    onnx = require("onnx")
    ort = require("onnxruntime")
    from edgeseq.export.coverage import onnx_coverage

    input_shape = tuple(d.dim_value for d in onnx.load(str(fp32_path)).graph.input[0].type.tensor_type.shape.dim[1:])
    time_steps = input_shape[0] if len(input_shape) >= 2 else None
    if quant is Quant.int8 and (calibration is None or not len(calibration)):
        raise ValueError("int8 conversion needs calibration images")
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        source, hoisted = _hoisted_copy(fp32_path, scratch)
        images = np.asarray(calibration, np.float32).reshape((-1, *input_shape)) if quant is Quant.int8 else None
        families, later = _families(scratch, source, time_steps, hoisted, images, keras, equalized, rounded)
        if selection is None:  # nothing to measure on: the first family's standard candidate
            name, family = next(iter(families.items()))
            chosen_path, chosen_name, record = family.build(name, []), name, None
        else:
            target = search.Target(agreement=search.TARGET_AGREEMENT if quant is Quant.int8 else 0.999)
            scorer = search.Scorer(selection, baseline or fp32_path, lambda p: onnx_coverage(p, time_steps), target)
            chosen_name, chosen_path, record = _search(families, scorer, later)
            if later is not None and later.family is not None:
                families[EQUALIZED] = later.family
        with atomic_path(out_path) as tmp_out:
            tmp_out.write_bytes(Path(chosen_path).read_bytes())
    family_name = _family_of(chosen_name, families)
    family, static = families[family_name], family_name.startswith("static QDQ")
    weights = family.weights
    quantizer = "quantize_static" if static else "quantize_dynamic"
    recipe = {"from": "fp32 onnx", "batch": "dynamic", "io": "float32",
              "tool": f"onnxruntime.quantization.{quantizer} {ort.__version__}",
              "candidate": chosen_name, "weights": weights(chosen_name)}
    if static:
        recipe.update(format="QDQ", activations="int8 per-tensor", calibration_images=len(calibration),
                      matmul_outputs="float (integer MACs, no requantization)",
                      dynamic_fallback=family.ops_left_dynamic.get(Path(chosen_path)) or None)
    else:
        recipe["activations"] = "quantized per call"
    if hoisted:
        recipe["loops"] = (f"{hoisted} loop-carried constants hoisted into the loop body; its MatMuls run ORT's "
                           "dynamic integer kernels (MatMulInteger), weights stored once")
    remedies = {"equalized": later.equalized.pairs if family_name == EQUALIZED else None,
                "rounded": rounded.layers if ROUNDED in family_name else None}
    recipe.update({key: value for key, value in remedies.items() if value})
    if family.head:
        recipe["kept_float"] = {"nodes": family.head, "mac_share": round(family.head_share, 4),
                                "why": "output layer at higher precision"}
    if record is not None:
        recipe["search"] = record
    return recipe


def _families(scratch: Path, source: Path, time_steps, hoisted: int, images: np.ndarray | None, keras, equalized,
              rounded: Rounded | None = None) -> tuple[dict[str, "_Family"], "_Later | None"]:
    """The quantizer families to search (static QDQ ones where ``images`` calibrate int8; those of the
    ``rounded`` graph too, with per-channel int8 weights, the grid it was rounded on), and the equalized
    graph's family, built later if the search reaches it."""
    families = {"dynamic integer": _dynamic_family(scratch, source, time_steps, hoisted, keras)}
    if rounded is not None:
        folder = scratch / "rounded"  # its prepared graphs have the same names as the others'
        folder.mkdir()
        graph, loops = _hoisted_copy(rounded.path, folder)
        families[f"dynamic integer, {ROUNDED}"] = _dynamic_family(folder, graph, time_steps, loops, rounded.keras,
                                                                  on_grid=True)
    if images is None:
        return families, None
    static = _static_family(scratch, source, time_steps, hoisted, images, keras)
    families = {"static QDQ": static, **families}
    if "Gemm" in _op_types(static.graph):  # which of the two ORT runs faster differs by model: try both
        families["static QDQ, MatMul+Add kept"] = _static_family(scratch, source, time_steps, hoisted, images, keras,
                                                                 optimize=False)
    if rounded is not None:
        on_grid = _static_family(scratch / "rounded", graph, time_steps, loops, images, rounded.keras)
        on_grid.weights = lambda name: ON_GRID
        families[f"static QDQ, {ROUNDED}"] = on_grid
    return families, (_Later(scratch, equalized, time_steps, images) if equalized is not None else None)


class _Later:
    """The static QDQ family of the equalized graph, built the first time the search asks for it."""

    def __init__(self, scratch: Path, make, time_steps, images: np.ndarray):
        self.scratch, self.make, self.time_steps, self.images = scratch, make, time_steps, images
        self.equalized: Equalized | None = None
        self.family: _Family | None = None
        self.asked, self.failed = False, None  # why it could not be built

    def get(self) -> _Family | None:
        if not self.asked:
            self.asked = True
            try:
                self.equalized = self.make()
            except Exception as exc:  # noqa: BLE001 - a remedy that could not be built is a remedy less
                text = str(exc).strip()
                self.failed = (text.splitlines()[0] if text else type(exc).__name__)[:200]
            if self.equalized is not None:
                folder = self.scratch / "equalized"  # its prepared graph has the same name as the others'
                folder.mkdir()
                source, hoisted = _hoisted_copy(self.equalized.path, folder)
                self.family = _static_family(folder, source, self.time_steps, hoisted, self.images,
                                             self.equalized.keras)
        return self.family


def _search(families: dict[str, _Family], scorer: search.Scorer, later: _Later | None = None
            ) -> tuple[str, Path, dict]:
    """Stage 1 standard candidates, stage 2 other ranges (static), stage 3 the equalized graph, stage 4
    float fallback (from the best of all of them)."""
    built: dict[str, Path] = {}
    for name, family in families.items():
        for suffix, options in family.variants.items():
            built[f"{name}{suffix}"] = family.build(f"{name}{suffix}", [], **options)
    runner = search.Search(scorer)
    done = runner.stage("standard", built)
    if not done and "static QDQ" in families:
        leader = search.best([c for c in runner.candidates if c.name.startswith("static QDQ")], scorer.target)
        static = families[_family_of(leader.name, families)]
        options = _options_of(leader.name, static)
        ranges = {f"{leader.name}, {label} ranges": static.build(label, [], **options, method=method)
                  for label, method in RANGES.items()}
        done = runner.stage("range setting", ranges)
    equalized = later.get() if not done and later is not None else None
    if later is not None and later.failed:
        runner.skipped.append(f"{equalize.STAGE}: {later.failed}")
    if equalized is not None:
        families = {**families, EQUALIZED: equalized}
        built = {f"{EQUALIZED}{suffix}": equalized.build(f"{EQUALIZED}{suffix}", [], **options)
                 for suffix, options in equalized.variants.items()}
        done = runner.stage(equalize.STAGE, built)
    if not done:
        leader = search.best(runner.candidates, scorer.target)
        family = families[_family_of(leader.name, families)]
        options = _options_of(leader.name, family)
        runner.build = lambda name, layers: family.build(name, layers, **options)
        runner.layers, runner.family = list(family.layers.values()), leader.name
        runner.alternatives = _alternatives(families, leader.name, set(family.layers))
        runner.fallback()
    chosen, record = runner.result()
    return chosen.name, chosen.path, record


def _family_of(name: str, families: dict[str, _Family]) -> str:
    """The family a candidate name starts with (the longest match: names extend their family's)."""
    return max((f for f in families if name.startswith(f)), key=len)


def _alternatives(families: dict[str, _Family], leader: str, labels: set[str]) -> dict:
    """The other standard candidates, as fallback starting points (those that name the same layers)."""
    found = {}
    for name, family in families.items():
        if set(family.layers) != labels:
            continue
        for suffix, options in family.variants.items():
            if f"{name}{suffix}" != leader:
                found[f"{name}{suffix}"] = (lambda f, o: lambda n, layers: f.build(n, layers, **o))(family, options)
    return found


def _options_of(name: str, family: _Family) -> dict:
    """The quantizer options of the standard or range-setting candidate called ``name``."""
    options = next((dict(o) for suffix, o in family.variants.items() if suffix and suffix in name), {})
    for label, method in RANGES.items():
        if f"{label} ranges" in name:
            options["method"] = method
    return options


def _layers(graph_path: Path, time_steps: int | None, skip: list[str], keras) -> list[search.Layer]:
    """The graph's nodes grouped by the Keras layer they came from (by kernel values for MAC ops, else by
    the layer scope tf2onnx keeps in node names); ``skip``: nodes kept float anyway (the output layer)."""
    from edgeseq.export.coverage import onnx_node_macs

    if keras is None:
        return []
    onnx = require("onnx")
    graph = onnx.load(str(graph_path)).graph
    arrays = {i.name: i for i in graph.initializer}
    macs = onnx_node_macs(graph_path, time_steps)
    entries = []
    for node in graph.node:
        if node.name in skip:
            continue
        kernel = None
        if node.op_type in MAC_OPS:
            name = next((x for x in node.input[1:] if x in arrays and len(arrays[x].dims) >= 2), None)
            kernel = onnx.numpy_helper.to_array(arrays[name]) if name else None
        entries.append((node.name, node.op_type, keras.owner(node.name, kernel), macs.get(node.name, 0)))
    return search.group_layers(entries)


def _static_family(scratch: Path, source: Path, time_steps, hoisted: int, images: np.ndarray, keras,
                   optimize: bool = True) -> _Family:
    """optimize: ORT's pre-processing fuses MatMul+Add into Gemm (else the graph keeps them apart)."""
    quantization = require("onnxruntime.quantization")
    onnx = require("onnx")
    prepared = scratch / f"prepared{'' if optimize else '-unfused'}.onnx"
    quantization.shape_inference.quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True,
                                                   skip_optimization=not optimize)
    head = output_head(prepared, time_steps)

    def make(family: _Family, graph: Path, out: Path, exclude: list[str], method: str = "MinMax",
             gemm_outputs: bool = False) -> None:
        static = out.with_suffix(".static.onnx")
        float_outputs = ["MatMul"] if gemm_outputs else ["MatMul", "Gemm"]
        quantization.quantize_static(
            str(graph), str(static), _Calibration(images, INPUT_NAME),
            quant_format=quantization.QuantFormat.QDQ, per_channel=True,
            activation_type=quantization.QuantType.QInt8, weight_type=quantization.QuantType.QInt8,
            calibrate_method=getattr(quantization.CalibrationMethod, method), nodes_to_exclude=exclude,
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True,
                           "OpTypesToExcludeOutputQuantization": float_outputs})
        family.dynamic_ops = sorted({n.op_type for n in onnx.load(str(static)).graph.node
                                     if n.op_type in DYNAMIC_ONLY_OPS and n.name not in exclude})
        if hoisted:
            family.dynamic_ops.append("Loop")
        if family.dynamic_ops:  # static QDQ leaves these float: give them ORT's integer dynamic kernels
            weights = quantization.QuantType.QInt8 if "LSTM" in family.dynamic_ops else quantization.QuantType.QUInt8
            quantization.quantize_dynamic(str(static), str(out), weight_type=weights, nodes_to_exclude=exclude,
                                          extra_options={"EnableSubgraph": bool(hoisted)},
                                          op_types_to_quantize=list(DYNAMIC_ONLY_OPS) + (["MatMul"] if hoisted else []))
        else:
            out.write_bytes(static.read_bytes())

    # Gemm outputs float (MatMulIntegerToFloat-like: no requantization), or requantized to int8: ORT fuses
    # DequantizeLinear -> Gemm -> QuantizeLinear into QGemm only with the Q there; without one it dequantizes
    # the weights on every run (measured: a Dense next to a float layer ran 14x slower than fp32).
    variants = {"": {}, ", int8 Gemm outputs": {"gemm_outputs": True}} if "Gemm" in _op_types(prepared) else {"": {}}
    return _Family(scratch, prepared, make, _layers(prepared, time_steps, head[0], keras), head, variants,
                   lambda name: "int8 per-channel")


def _dynamic_family(scratch: Path, source: Path, time_steps, hoisted: int, keras, on_grid: bool = False) -> _Family:
    """uint8 asymmetric weights (measured on the zoo's mlp at batch 1: 99.90 % agreement against 99.85 % for
    int8 symmetric), per-tensor and per-channel (which is better differs by model); int8 per-tensor weights
    where an LSTM is quantized (what its kernel takes). on_grid: ``source``'s kernels already sit on the
    symmetric int8 per-channel grid (ORT's scale for them is max|w| / 127, the one they were rounded on):
    int8 per-channel weights only."""
    quantization = require("onnxruntime.quantization")
    head = output_head(source, time_steps)
    lstm = "LSTM" in _op_types(source)
    weights = quantization.QuantType.QInt8 if lstm or on_grid else quantization.QuantType.QUInt8

    def make(family: _Family, graph: Path, out: Path, exclude: list[str], per_channel: bool = False) -> None:
        quantization.quantize_dynamic(str(graph), str(out), weight_type=weights, per_channel=per_channel,
                                      nodes_to_exclude=exclude, extra_options={"EnableSubgraph": bool(hoisted)})

    if on_grid:
        return _Family(scratch, source, make, _layers(source, time_steps, head[0], keras), head,
                       {", int8 per-channel": {"per_channel": True}}, lambda name: ON_GRID)
    variants = {"": {}} if lstm else {"": {}, " per-channel": {"per_channel": True}}
    kind = "int8" if lstm else "uint8 asymmetric"
    return _Family(scratch, source, make, _layers(source, time_steps, head[0], keras), head, variants,
                   lambda name: f"{kind} {'per-channel' if 'per-channel' in name else 'per-tensor'}")


def _op_types(path: Path) -> set[str]:
    onnx = require("onnx")
    return {n.op_type for n in onnx.load(str(path)).graph.node}


def hoist_loop_constants(model) -> int:
    """Turn Loop-carried inputs that are constants (an outer initializer passed through the body unchanged:
    how tf2onnx hands a recurrent cell its weights) into initializers of the body. The graph computes the
    same; quantizers, which only quantize initializers, can then reach the recurrent weights, and those are
    still stored once. Returns how many were hoisted."""
    import copy

    from edgeseq.export.onnx import _graphs
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


def output_head(path: Path, time_steps: int | None) -> tuple[list[str], float]:
    """The output layer: nodes from the last MAC op to the graph output, and that op's share of all MACs.

    Returns ([], share) when the head is too big to keep in float: more than HEAD_MAX_SHARE of the MACs
    or more than HEAD_MAX_WEIGHTS of the weights. Keeping the last layer at higher precision is what keeps
    int8 agreement on low-margin models (measured on the zoo's mlp: int8 weights in the 32->10 output
    layer alone flip 0.10 % of predictions, for 0.5 % of the MACs).
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
    weights = _weight_sizes(graph)
    head_weights = sum(weights.get(name, 0) for name in node.input)
    small = share <= HEAD_MAX_SHARE and head_weights <= HEAD_MAX_WEIGHTS * max(sum(weights.values()), 1)
    return (head, share) if small else ([], share)


def _weight_sizes(graph) -> dict[str, int]:
    """Element counts of the weight matrices and kernels (initializers of two or more dimensions) that MAC
    ops read, by name."""
    initializers = {t.name: t for t in graph.initializer}
    sizes = {}
    for node in graph.node:
        if node.op_type in MAC_OPS:
            for name in node.input:
                tensor = initializers.get(name)
                if tensor is not None and len(tensor.dims) >= 2:
                    sizes[name] = int(np.prod(tensor.dims))
    return sizes


def fuse_dynamic_matmuls(model) -> int:
    """Store each dynamic-quantized MatMul as the one node ONNX Runtime runs it as, in place.

    ORT's dynamic quantizer writes ``DynamicQuantizeLinear(x) -> MatMulInteger -> Cast -> Mul(., x_scale *
    w_scale) [-> Add(., bias)]``: five or six nodes, which ORT fuses into one ``DynamicQuantizeMatMul`` when
    it loads the graph. In an unrolled recurrent cell that chain repeats every step, and its nodes weigh as
    much as a fifth of a small int8 file (rnn128: 242 nodes, 10 KB of 37 KB). Written fused, the file is
    what runs; the arithmetic is the same kernel. Only chains whose intermediate values nothing else reads,
    with constant weights, scales and zero points, are fused. Returns how many were."""
    onnx = require("onnx")
    graph = model.graph
    readers: dict[str, list] = {}
    for node in graph.node:
        for x in node.input:
            readers.setdefault(x, []).append(node)
    for value in graph.output:
        readers.setdefault(value.name, []).append(None)
    producer = {o: n for n in graph.node for o in n.output}
    constants = {i.name: i for i in graph.initializer}
    chains = [_dynamic_chain(node, producer, constants, readers) for node in graph.node
              if node.op_type == "MatMulInteger"]
    replace, drop = {}, set()
    for index, (inputs, chain) in enumerate(c for c in chains if c is not None):
        replace[id(chain[-1])] = onnx.helper.make_node("DynamicQuantizeMatMul", inputs, [chain[-1].output[0]],
                                                       domain="com.microsoft", name=f"edgeseq_dqmm{index}")
        drop.update(id(n) for n in chain)
    if replace:
        kept = [replace.get(id(n), n) for n in graph.node if id(n) not in drop or id(n) in replace]
        del graph.node[:]
        graph.node.extend(kept)
        if not any(o.domain == "com.microsoft" for o in model.opset_import):
            model.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))
    return len(replace)


def _dynamic_chain(mmi, producer: dict, constants: dict, readers: dict[str, list]) -> tuple[list[str], list] | None:
    """(DynamicQuantizeMatMul inputs, the nodes it replaces, last one last) for the chain around the
    MatMulInteger ``mmi`` (see :func:`fuse_dynamic_matmuls`), or None where it is not that chain."""
    def sole(name: str, op: str):
        users = readers.get(name, [])
        return users[0] if len(users) == 1 and users[0] is not None and users[0].op_type == op else None

    quant = producer.get(mmi.input[0])
    if len(mmi.input) != 4 or quant is None or quant.op_type != "DynamicQuantizeLinear" or mmi.input[2] != quant.output[2]:
        return None
    weight, weight_zero, cast = mmi.input[1], mmi.input[3], sole(mmi.output[0], "Cast")
    if weight not in constants or weight_zero not in constants or cast is None:
        return None
    if sole(quant.output[0], "MatMulInteger") is not mmi or sole(quant.output[2], "MatMulInteger") is not mmi:
        return None
    rescale, scales = sole(cast.output[0], "Mul"), sole(quant.output[1], "Mul")
    if rescale is None or scales is None or sole(scales.output[0], "Mul") is not rescale:
        return None
    weight_scale = next((x for x in scales.input if x != quant.output[1]), None)
    if weight_scale not in constants:
        return None
    inputs, chain = [quant.input[0], weight, weight_scale, weight_zero], [quant, mmi, cast, scales, rescale]
    add = sole(rescale.output[0], "Add")
    bias = next((x for x in add.input if x != rescale.output[0]), None) if add is not None else None
    if bias in constants and len(constants[bias].dims) == 1:
        inputs.append(bias)
        chain.append(add)
    return inputs, chain
