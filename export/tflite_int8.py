"""Full-integer int8 .tflite through the accuracy-aware search (:mod:`edgeseq.export.search`).

Every candidate comes from the converter's own calibrator and MLIR quantizer, run on a float flatbuffer
(int8 input; int8 output unless the output layer is left float):

- **standard**: the stock converter's full-int8 result (models without WHILE loops: the converter's int8
  path crashes on them), and each float graph (the Keras cells, or a rewrite of them) quantized with
  per-channel and with per-tensor weights; a recurrent graph also from a copy whose kernels are rounded
  by output error (:mod:`edgeseq.export.rounding`), per-channel only. A WHILE loop stays a loop (a cell's
  weights stored once); see :mod:`edgeseq.export.tflite_graph` for the surgery before and after quantization.
- **cross-layer equalization**: a float graph of the model with its channel ranges equalized
  (:mod:`edgeseq.export.equalize`: only weights change), quantized with per-channel weights, which its
  scales assume.
- **16-bit activations** (models without WHILE loops): int16 activations, int8 weights (TFLite 16x8),
  still integer arithmetic; the kernels rounded by output error (:mod:`edgeseq.export.rounding`), since
  at 16 bits the weights' rounding is most of what is left to lose.
- **float fallback**: the quantizer's denylist leaves the most sensitive layers' ops float (their inputs
  dequantized, their outputs requantized), one more layer at a time; each step is also measured with the
  float layers' FULLY_CONNECTED weights in int8 (hybrid kernels: float activations, integer MACs), so a
  recurrent cell whose int8 state is what loses can be left float without becoming a float model.
"""

from __future__ import annotations

import functools
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeseq.export import equalize, search
from edgeseq.export import tflite_graph as graph
from edgeseq.lazy import require

WEIGHTS = {"per-channel": True, "per-tensor": False}  # weight granularity candidates: name -> per-channel?
HYBRID = "int8 weights in float layers"  # the fallback's hybrid variant, as its candidates are named
MAC_OPS = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "BATCH_MATMUL", "TRANSPOSE_CONV")
EQUALIZED = equalize.STAGE  # the stage, after the standard one, that tries the equalized graph


@dataclass
class Equalized:
    """The float graph of an equalized copy of the model (its Keras model: which layer each op is)."""

    name: str
    fp32: bytes
    model: object
    pairs: list[dict]  # :meth:`edgeseq.export.equalize.Pair.record` of each equalized tensor


class _Calibrated:
    """One float graph, calibrated once; ``quantize(per_channel, denylist)`` -> flatbuffer. model: the
    Keras model the graph was converted from, where it is not the exported one (an equalized copy)."""

    def __init__(self, tf, name: str, fp32: bytes, samples: np.ndarray, batch: int, model=None):
        calibrator = require("tensorflow.lite.python.optimize.calibrator")
        self.tf, self.name, self.fp32, self.model = tf, name, fp32, model
        model = graph.load(fp32)
        self.rerouted = graph.break_while_passthrough(model)
        prepared = calibrator.add_intermediate_tensors(graph.dump(model))
        calibrated = graph.load(calibrator.Calibrator(prepared).calibrate(_dataset(samples, batch)))
        self.clamped = graph.clamp_saturating_ranges(calibrated)
        self.calibrated = graph.dump(calibrated)
        self.folded = self.hybrid = 0
        main = model.subgraphs[0]
        self.outputs = {graph.tensor_name(main.tensors[t]) for t in main.outputs}  # what writes a model output

    def float_output(self, denylist: list[str] | None) -> bool:
        return bool(self.outputs.intersection(denylist or ()))

    def quantize(self, per_channel: bool, denylist: list[str] | None = None, hybrid: bool = False) -> bytes:
        """A flatbuffer with int8 input and output, or float32 output where ``denylist`` leaves an op that
        writes a model output float: requantizing a float head's probabilities to int8 (steps of 1/256)
        would tie the top two classes again, which is what leaving the head float is for. ``hybrid``: the
        denylisted FULLY_CONNECTED ops get int8 weights (:func:`tflite_graph.hybridize`)."""
        mlir = require("tensorflow.lite.python.convert")
        out = self.tf.float32 if self.float_output(denylist) else self.tf.int8
        quantized = graph.load(mlir.mlir_quantize(self.calibrated, disable_per_channel=not per_channel,
                                                  input_data_type=self.tf.int8, output_data_type=out,
                                                  denylisted_nodes=denylist or None))
        self.folded = graph.fold_while_boundaries(quantized)
        self.hybrid = graph.hybridize(quantized, set(denylist or ())) if hybrid else 0
        graph.slim(quantized)
        return graph.dump(quantized)


def _calibrated_equalized(tf, equalizer, samples: np.ndarray, batch: int) -> tuple[Equalized, _Calibrated] | None:
    made = equalizer()
    if made is None:
        return None
    return made, _Calibrated(tf, made.name, made.fp32, samples, batch, made.model)


def _dataset(samples: np.ndarray, batch: int):
    from edgeseq.export.tflite import _representative

    return functools.partial(_representative, samples, batch)


def layers(fp32: bytes, keras) -> list[search.Layer]:
    """The ops of every subgraph grouped by the Keras layer they came from (by kernel values for MAC ops,
    else by the layer scope in their output tensor's name); nodes are output tensor names (what the
    quantizer's denylist takes); MACs count a loop body once per time step."""
    from edgeseq.export.coverage import _tfl_macs, load_tflite, tflite_ops

    model = load_tflite(fp32)
    entries = []
    owners: dict[tuple[int, int], str] = {}  # (subgraph, tensor) -> the Keras layer whose op produced it
    for index, sg, op, name, weight in tflite_ops(model):
        if name == "WHILE" or not len(op.outputs):
            continue
        kernel, macs = None, 0
        if name in MAC_OPS and len(op.inputs) >= 2:
            tensor = sg.tensors[op.inputs[1]]
            data = model.buffers[tensor.buffer].data if tensor.buffer < len(model.buffers) else None
            if data is not None and len(data) == 4 * int(np.prod(tensor.shape)):
                kernel = np.frombuffer(bytes(bytearray(data)), np.float32).reshape(tuple(tensor.shape))
            macs = _tfl_macs(name, sg, op) * weight
        out = graph.tensor_name(sg.tensors[op.outputs[0]])
        owner = keras.owner(out, kernel)
        if owner is None and index == 0 and op.outputs[0] in list(sg.outputs):
            # the op that writes a model output is renamed after the signature ("StatefulPartitionedCall:0"):
            # it belongs to the layer that feeds it (a Dense layer's softmax), so that layer can be left float
            owner = next((owners[(index, t)] for t in op.inputs if (index, t) in owners), None)
        if owner is not None:
            owners[(index, op.outputs[0])] = owner
        entries.append((out, name, owner, macs))
    return search.group_layers(entries)


def _fallback_builder(c: _Calibrated, per_channel: bool, found: list[search.Layer], notes: dict, write,
                      hybrid: bool = False):
    """``build(name, float_layers)`` for one calibrated graph and weight granularity (``hybrid``: the
    float layers' FULLY_CONNECTED weights in int8)."""
    by_label = {layer.label: layer for layer in found}

    def build(name: str, float_layers: list[str]) -> Path:
        denylist = [n for label in float_layers for n in by_label[label].nodes]
        path = write(c.quantize(per_channel, denylist, hybrid))
        notes[name] = {"graph": c.name, "weights": "int8 " + ("per-channel" if per_channel else "per-tensor"),
                       "folded": c.folded, "float_output": c.float_output(denylist), "hybrid_ops": c.hybrid}
        return path

    return build


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


def search_int8(tf, graphs: dict[str, bytes], stock: bytes | None, sixteen, samples: np.ndarray, batch: int,
                recipe: dict, selection, model, equalizer=None, models: dict | None = None) -> bytes:
    """Run the search (``sixteen``: builds the 16x8 candidate, None where it does not apply; ``equalizer``:
    builds the :class:`Equalized` graph, or None where no tensor can be; ``models``: the Keras model of
    each graph not converted from ``model`` itself, a copy with rounded kernels); fills ``recipe`` and
    returns the chosen flatbuffer."""
    models = models or {}
    calibrated = {name: _Calibrated(tf, name, fp32, samples, batch, models.get(name)) for name, fp32 in graphs.items()}
    with tempfile.TemporaryDirectory() as tmp:
        run = _Run(Path(tmp), calibrated, model, functools.partial(_calibrated_equalized, tf, equalizer, samples, batch)
                   if equalizer is not None else None)
        standard = run.standard(stock)
        if selection is None:
            chosen_name, record = next(iter(standard)), None
            chosen = standard[chosen_name]
        else:
            chosen_name, chosen, record = run.search(selection, next(iter(graphs.values())), standard, sixteen)
        flatbuffer = Path(chosen).read_bytes()
    note = run.notes.get(chosen_name, {})
    first = calibrated.get(note.get("graph")) or next(iter(calibrated.values()))
    sixteen_bit = note.get("activations") == "int16"
    recipe.update(weights=note.get("weights", "int8 per-channel"), calibration_images=len(samples),
                  activations="int16 per-tensor" if sixteen_bit else "int8 per-tensor",
                  io="int16" if sixteen_bit else "int8 input, float32 output" if note.get("float_output") else "int8",
                  candidate=chosen_name)
    if run.equalized is not None and note.get("graph") == run.equalized.name:
        recipe["equalized"] = run.equalized.pairs
    if note.get("hybrid_ops"):
        recipe["float_layers"] = (f"{note['hybrid_ops']} FULLY_CONNECTED ops with int8 weights per channel and float "
                                  "activations (hybrid kernels: input quantized per call, integer MACs)")
    if graph.has_while(next(iter(graphs.values()))):
        recipe["while_loop"] = {
            "kept": "WHILE: cell weights stored once, run once per time step", "cell": note.get("graph"),
            "calibration": "converter calibrator; loop variables passed through unchanged rerouted "
                           f"(tensorflow#75140): {first.rerouted}",
            "saturating_ranges_clamped": first.clamped, "int8_loop_variables": note.get("folded", 0)}
    if record is not None:
        recipe["search"] = record
    return flatbuffer


class _Run:
    """One search: candidate files in ``scratch``, and what each candidate is (``notes``)."""

    def __init__(self, scratch: Path, calibrated: dict[str, _Calibrated], model, equalizer=None):
        self.scratch, self.calibrated, self.model = scratch, calibrated, model
        self.equalizer = equalizer  # () -> (Equalized, its _Calibrated), or None: built when its stage comes
        self.equalized: Equalized | None = None
        self.notes: dict[str, dict] = {}
        self.count = 0

    def write(self, flatbuffer: bytes) -> Path:
        self.count += 1
        path = self.scratch / f"candidate-{self.count}.tflite"
        path.write_bytes(flatbuffer)
        return path

    def standard(self, stock: bytes | None) -> dict[str, Path]:
        """The stock converter's int8 (when it has one), and each float graph with each weight granularity."""
        built = {}
        if stock is not None:
            built["converter full int8"] = self.write(stock)
            self.notes["converter full int8"] = {"graph": "converter", "weights": "int8 per-channel"}
        for graph_name, c in self.calibrated.items():
            for weights, per_channel in WEIGHTS.items():
                if stock is not None and per_channel:
                    continue  # what the stock converter does
                if c.model is not None and not per_channel:
                    continue  # rounded on the per-channel grid: its choices hold for that alone
                name = f"{graph_name}, {weights} weights"
                built[name] = self.write(c.quantize(per_channel))
                self.notes[name] = {"graph": graph_name, "weights": f"int8 {weights}", "folded": c.folded}
        return built

    def search(self, selection, fp32: bytes, standard: dict[str, Path], sixteen) -> tuple[str, Path, dict]:
        from edgeseq.export.coverage import tflite_coverage

        runner = search.Search(search.Scorer(selection, self.write(fp32), tflite_coverage))
        done = runner.stage("standard", standard)
        if not done and self.equalizer is not None:
            try:
                equalized = self._equalized()
            except Exception as exc:  # noqa: BLE001 - a remedy that could not be built is a remedy less
                runner.skipped.append(f"{EQUALIZED}: {_first_line(exc)}")
                equalized = {}
            done = bool(equalized) and runner.stage(EQUALIZED, equalized)
            standard = {**standard, **equalized}
        if not done and sixteen is not None:
            done = self._sixteen(runner, sixteen)
        if not done:
            self._fallback(runner, standard)
        best, record = runner.result()
        return best.name, best.path, record

    def _equalized(self) -> dict[str, Path]:
        """The equalized graph with per-channel weights (what its scales are chosen for); {} where no
        tensor could be equalized."""
        made = self.equalizer()
        if made is None:
            return {}
        self.equalized, c = made
        self.calibrated[c.name] = c
        name = f"{c.name}, per-channel weights"
        built = {name: self.write(c.quantize(True))}
        self.notes[name] = {"graph": c.name, "weights": "int8 per-channel", "folded": c.folded}
        return built

    def _sixteen(self, runner: search.Search, sixteen) -> bool:
        try:
            built = self.write(sixteen())
        except Exception as exc:  # noqa: BLE001 - the converter refuses 16x8 for some ops: a remedy less
            runner.skipped.append(f"16-bit activations: the converter refused ({_first_line(exc)})")
            return False
        self.notes["16-bit activations"] = {"graph": "converter", "weights": "int8 per-channel, rounded by output error",
                                            "activations": "int16"}
        return runner.stage("16-bit activations", {"16-bit activations": built})

    def _fallback(self, runner: search.Search, standard: dict[str, Path]) -> None:
        """Float fallback from the best standard (or equalized) candidate; the others get the same layers
        as alternatives."""
        leader = search.best([c for c in runner.candidates if c.name in standard], runner.target)
        first = next(iter(self.calibrated))
        starts = {}  # (calibrated graph, per-channel?) of each standard candidate
        for name in standard:
            graph_name = self.notes[name]["graph"]
            starts[name] = (self.calibrated[graph_name if graph_name in self.calibrated else first],
                            self.notes[name]["weights"].endswith("per-channel"))
        keras: dict[int, search.KerasLayers] = {}  # the exported model's, or an equalized copy's

        def keras_of(c: _Calibrated) -> search.KerasLayers:
            model = c.model or self.model
            if id(model) not in keras:
                keras[id(model)] = search.KerasLayers.of(model)
            return keras[id(model)]

        found = {name: layers(c.fp32, keras_of(c)) for name, (c, _) in starts.items()}
        builders = {name: _fallback_builder(c, per_channel, found[name], self.notes, self.write)
                    for name, (c, per_channel) in starts.items()}
        labels = {layer.label for layer in found[leader.name]}
        runner.build, runner.family, runner.layers = builders.pop(leader.name), leader.name, found[leader.name]
        runner.alternatives = {name: b for name, b in builders.items() if {x.label for x in found[name]} == labels}
        c, per_channel = starts[leader.name]
        runner.alternatives[f"{leader.name}, {HYBRID}"] = _fallback_builder(c, per_channel, found[leader.name],
                                                                           self.notes, self.write, hybrid=True)
        runner.hybrid_ops = graph.HYBRID_OPS
        runner.fallback()
