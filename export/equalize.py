"""Cross-layer equalization: rescale channels so one int8 range fits every channel of a tensor.

An int8 activation tensor has one scale for all its channels (per-tensor), so a channel whose values span
0..0.3 next to one that spans 0..12 is left with a handful of levels. Where a tensor lies between a layer
that can scale its output channels (S) and a layer that reads it channel by channel (C), with nothing in
between that cares about scale, the function does not change if S's output channel i is divided by s_i and
C's input channel i multiplied by s_i:

- S: ``BatchNormalization`` or ``LayerNormalization`` on the last axis (gamma and beta), ``Dense``,
  ``Conv1D``/``Conv2D``, ``DepthwiseConv2D``, ``SeparableConv2D`` (kernel output channel and bias);
- in between, only positively homogeneous layers, f(x / s) = f(x) / s for s > 0: ReLU without a cap
  (not ReLU6), leaky ReLU, PReLU, linear activations, max/average pooling, global pooling, dropout,
  padding, cropping, upsampling; each with one reader (a residual ``Add`` or a second reader ends it);
- C: ``Dense``, ``Conv1D``/``Conv2D`` (kernel input channel), ``DepthwiseConv2D`` and the depthwise half of
  ``SeparableConv2D`` (their kernel's channel).

Inside a ``SeparableConv2D`` the depthwise output (a tensor int8 converters quantize per-tensor too) is
equalized the same way between its depthwise and pointwise kernels.

The scales come from activation ranges measured on calibration images, as SmoothQuant chooses them
(Xiao et al. 2023): s_i = a_i^alpha / w_i^(1 - alpha), a_i the channel's largest |value|, w_i the largest
|weight| C reads from it. Where C's weights for channel i are quantized on their own (a depthwise kernel
per channel), scaling them costs nothing and alpha is 1: every channel gets the tensor's full range. The
scales assume per-channel weights (a per-tensor weight quantizer would lose what the activations gain).
Channels that are (nearly) always zero are left alone. The result is checked against the original on
the calibration images: only weights change, so outputs agree to float rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgeseq.lazy import require

STAGE = "cross-layer equalization"  # the int8 search stage that tries an equalized graph (both formats)
ALPHA = 0.5  # migration strength where C's weights share a quantization scale across its input channels
DEAD = 1e-3  # a channel whose largest value is below this share of the tensor's largest is left alone
SAMPLES = 512  # calibration images the activation ranges are measured on
TOLERANCE = 1e-3  # largest |equalized - original| output allowed, relative to the largest |output|

_NORMALIZATIONS = ("BatchNormalization", "LayerNormalization")
_WEIGHTED = ("Dense", "Conv1D", "Conv2D", "DepthwiseConv2D", "SeparableConv2D")
_PASS = ("MaxPooling1D", "MaxPooling2D", "AveragePooling1D", "AveragePooling2D", "GlobalAveragePooling1D",
         "GlobalAveragePooling2D", "GlobalMaxPooling1D", "GlobalMaxPooling2D", "Dropout", "SpatialDropout1D",
         "SpatialDropout2D", "ZeroPadding1D", "ZeroPadding2D", "Cropping1D", "Cropping2D", "UpSampling1D",
         "UpSampling2D", "Identity", "LeakyReLU", "PReLU")
_HOMOGENEOUS = ("linear", "relu", "leaky_relu")  # activation functions f with f(x / s) = f(x) / s, s > 0


@dataclass
class Pair:
    """One equalized tensor: S scales its output channels down, C its input channels up."""

    scaled: str  # S, the layer whose output channels are divided
    reader: str  # C, the layer whose input channels are multiplied
    through: tuple[str, ...]  # the homogeneous layers between them
    channels: int
    spread_before: float  # largest channel range / median live channel range, before and after
    spread_after: float
    inside: bool = False  # the depthwise -> pointwise tensor of one SeparableConv2D

    def record(self) -> dict:
        return {"from": self.scaled, "to": self.reader, "through": list(self.through), "channels": self.channels,
                "range_spread": [round(self.spread_before, 2), round(self.spread_after, 2)],
                **({"inside": "SeparableConv2D"} if self.inside else {})}


def _kind(layer) -> str:
    return type(layer).__name__


def _activation_ok(layer) -> bool:
    activation = getattr(layer, "activation", None)
    return activation is None or getattr(activation, "__name__", "") in _HOMOGENEOUS


def _passes(layer) -> bool:
    """Positively homogeneous, per channel: dividing its input channel i by s_i divides its output's."""
    kind = _kind(layer)
    if kind == "ReLU":
        config = layer.get_config()
        return config.get("max_value") is None and not config.get("threshold")
    if kind == "Activation":
        return _activation_ok(layer)
    return kind in _PASS


def _channels_last(layer) -> bool:
    return getattr(layer, "data_format", "channels_last") == "channels_last"


def _scales_output(layer, rank: int) -> bool:
    """Can divide its output channels (the last axis of a rank-``rank`` tensor) by a scale each."""
    kind = _kind(layer)
    if kind in _NORMALIZATIONS:
        axis = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
        return bool(layer.scale) and [a % rank for a in axis] == [rank - 1]
    return kind in _WEIGHTED and _channels_last(layer) and _activation_ok(layer) and getattr(layer, "groups", 1) == 1


def _reads_channels(layer) -> bool:
    return _kind(layer) in _WEIGHTED and _channels_last(layer) and getattr(layer, "groups", 1) == 1


class _Graph:
    """The call graph of a functional model (a Sequential's own): who reads each tensor, and the one call
    of each layer called once (a layer called twice shares its weights between two tensors: left alone)."""

    def __init__(self, model):
        functional = getattr(model, "_functional", None) or model  # a Sequential keeps its graph there
        nodes = [n for depth in functional._nodes_by_depth.values() for n in depth]  # noqa: SLF001
        calls: dict[int, int] = {}
        for node in nodes:
            calls[id(node.operation)] = calls.get(id(node.operation), 0) + 1
        self.inputs = functional.inputs
        self.call = {n.operation.name: n for n in nodes if calls[id(n.operation)] == 1 and len(n.output_tensors) == 1}
        self.readers: dict[int, list] = {}
        for node in nodes:
            for tensor in node.input_tensors:
                self.readers.setdefault(id(tensor), []).append(node.operation)
        for tensor in functional.outputs:
            self.readers.setdefault(id(tensor), []).append(None)

    def input(self, layer):
        return self.call[layer.name].input_tensors[0]

    def output(self, layer):
        return self.call[layer.name].output_tensors[0]

    def chain(self, start) -> tuple[object, list, object] | None:
        """(tensor C reads, the homogeneous layers from ``start`` to C, C), or None."""
        through, layer = [], start
        while True:
            readers = self.readers.get(id(self.output(layer)), [])
            if len(readers) != 1 or readers[0] is None or readers[0].name not in self.call:
                return None
            nxt = readers[0]
            if len(self.call[nxt.name].input_tensors) != 1:
                return None
            if _reads_channels(nxt):
                return self.output(layer), through, nxt
            if not _passes(nxt):
                return None
            through.append(nxt)
            layer = nxt


def pairs_of(model) -> list[tuple]:
    """Every (S, tensor, through, C) of ``model`` that can be equalized, in layer order."""
    graph = _graph(model)
    if graph is None:
        return []
    found = []
    for layer in model.layers:
        if layer.name not in graph.call or not _scales_output(layer, len(graph.output(layer).shape)):
            continue
        chain = graph.chain(layer)
        if chain is not None:
            found.append((layer, *chain))
    return found


def _graph(model) -> _Graph | None:
    keras = require("keras")
    if not isinstance(model, keras.Model) or not getattr(model, "inputs", None):
        return None
    functional = getattr(model, "_functional", None) or model
    return _Graph(model) if hasattr(functional, "_nodes_by_depth") else None


def _ranges(values: np.ndarray) -> np.ndarray:
    """(..., C) -> (C,) largest |value| per channel."""
    return np.abs(values).reshape(-1, values.shape[-1]).max(axis=0)


def _reader_weight(layer) -> tuple[np.ndarray, bool]:
    """(largest |weight| per input channel, whether each channel's weights are quantized on their own)."""
    weights = {w.name: np.asarray(w) for w in layer.weights}
    kind = _kind(layer)
    if kind == "DepthwiseConv2D":
        return np.abs(weights["kernel"]).max(axis=(0, 1, 3)), True
    if kind == "SeparableConv2D":
        return np.abs(weights["depthwise_kernel"]).max(axis=(0, 1, 3)), True
    kernel = weights["kernel"]  # (..., in, out)
    return np.abs(kernel).reshape(-1, kernel.shape[-2], kernel.shape[-1]).max(axis=(0, 2)), False


def _scales(activation: np.ndarray, weight: np.ndarray, free: bool, alpha: float) -> np.ndarray:
    """s_i (C,): activation channel i is divided by it, weight channel i multiplied. The largest range of
    the equalized tensor is the original's largest; dead channels get 1."""
    top = float(activation.max()) if activation.size else 0.0
    live = (activation > DEAD * top) & (weight > 0)
    scales = np.ones_like(activation, dtype=np.float64)
    if top <= 0 or not live.any():
        return scales
    a, w = activation[live].astype(np.float64), weight[live].astype(np.float64)
    raw = a if free else a**alpha / w ** (1 - alpha)
    raw = raw * (a / raw).max() / top  # so that max(a / s) is the original top
    scales[live] = raw
    return scales


def _spread(ranges: np.ndarray) -> float:
    live = ranges[ranges > DEAD * ranges.max()] if ranges.size and ranges.max() > 0 else ranges
    return float(ranges.max() / np.median(live)) if live.size else 1.0


def _divide_output(layer, scales: np.ndarray) -> None:
    """Divide ``layer``'s output channel i by scales[i] (its weights, in place)."""
    kind = _kind(layer)
    values = {w.name: np.asarray(w) for w in layer.weights}
    if kind in _NORMALIZATIONS:
        targets = ("gamma", "beta")
    elif kind == "SeparableConv2D":
        targets = ("pointwise_kernel", "bias")
    else:
        targets = ("kernel", "bias")
    for name in targets:
        if name not in values:
            continue
        value = values[name]
        if kind == "DepthwiseConv2D" and name == "kernel":  # (kh, kw, in, m): output channel in * m + m'
            values[name] = (value.reshape(*value.shape[:2], -1) / scales).reshape(value.shape)
        else:
            values[name] = value / scales
    layer.set_weights([values[w.name].astype(np.float32) for w in layer.weights])


def _multiply_input(layer, scales: np.ndarray) -> None:
    """Multiply the weights ``layer`` applies to its input channel i by scales[i] (in place)."""
    kind = _kind(layer)
    values = {w.name: np.asarray(w) for w in layer.weights}
    if kind in ("DepthwiseConv2D", "SeparableConv2D"):
        name = "kernel" if kind == "DepthwiseConv2D" else "depthwise_kernel"
        values[name] = values[name] * scales[None, None, :, None]
    else:
        values["kernel"] = values["kernel"] * scales[:, None]
    layer.set_weights([values[w.name].astype(np.float32) for w in layer.weights])


def _inside_separable(original, layer, inputs: np.ndarray, alpha: float) -> Pair:
    """Equalize one SeparableConv2D's depthwise output against its pointwise kernel (``layer``, in place).

    The depthwise output is measured on ``original``, the layer before any equalization, with its input
    (inputs): where the layer is also a pair's C, its copy reads a scaled input with a kernel scaled back,
    and that output is the same."""
    ops = require("keras").ops
    kernel = next(np.asarray(w) for w in original.weights if w.name == "depthwise_kernel")
    middle = np.asarray(ops.depthwise_conv(inputs, kernel, strides=original.strides, padding=original.padding,
                                           data_format="channels_last", dilation_rate=original.dilation_rate))
    values = {w.name: np.asarray(w) for w in layer.weights}
    depthwise, pointwise = values["depthwise_kernel"], values["pointwise_kernel"]  # (kh, kw, in, m), (1, 1, in*m, out)
    activation = _ranges(middle)
    weight = np.abs(pointwise).reshape(-1, pointwise.shape[-1]).max(axis=1)
    scales = _scales(activation, weight, False, alpha)
    values["depthwise_kernel"] = (depthwise.reshape(*depthwise.shape[:2], -1) / scales).reshape(depthwise.shape)
    values["pointwise_kernel"] = pointwise * scales[None, None, :, None]
    layer.set_weights([values[w.name].astype(np.float32) for w in layer.weights])
    return Pair(layer.name + " (depthwise)", layer.name + " (pointwise)", (), len(scales), _spread(activation),
                _spread(activation / scales), inside=True)


def equalize(model, calibration: np.ndarray, alpha: float = ALPHA) -> tuple[object, list[Pair]]:
    """A copy of ``model`` with every equalizable tensor equalized, and what was done; ``(model, [])``
    when nothing can be. calibration: (N, *input_shape) float32, the images int8 is calibrated on.

    Raises ValueError when the copy's outputs differ from the original's (it would be a bug here)."""
    keras = require("keras")
    graph = _graph(model)
    if graph is None:
        return model, []
    pairs = pairs_of(model)
    separable = [layer for layer in model.layers if _kind(layer) == "SeparableConv2D" and _channels_last(layer)
                 and layer.name in graph.call]
    if not pairs and not separable:
        return model, []
    images = np.asarray(calibration, np.float32)[:SAMPLES]
    inputs = graph.inputs[0] if len(graph.inputs) == 1 else graph.inputs
    probe = keras.Model(inputs, [t for _, t, _, _ in pairs] + [graph.input(layer) for layer in separable])
    measured = _run(probe, images)
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    layers = {layer.name: layer for layer in copy.layers}
    done = []
    for (scaled, _, through, reader), values in zip(pairs, measured):
        activation = _ranges(values)
        weight, free = _reader_weight(layers[reader.name])
        scales = _scales(activation, weight, free, alpha)
        _divide_output(layers[scaled.name], scales)
        _multiply_input(layers[reader.name], scales)
        done.append(Pair(scaled.name, reader.name, tuple(t.name for t in through), len(scales), _spread(activation),
                         _spread(activation / scales)))
    for layer, inputs in zip(separable, measured[len(pairs):]):
        done.append(_inside_separable(layer, layers[layer.name], inputs, alpha))
    _check(model, copy, images)
    return copy, done


def _run(model, images: np.ndarray, batch: int = 128) -> list[np.ndarray]:
    """Every output of ``model`` on ``images``, called in batches (no predict(): no retracing per model)."""
    parts = []
    for start in range(0, len(images), batch):
        out = model(images[start : start + batch], training=False)
        parts.append([np.asarray(o) for o in (out if isinstance(out, (list, tuple)) else [out])])
    return [np.concatenate(column) for column in zip(*parts)]


def _check(model, copy, images: np.ndarray) -> None:
    before, after = _run(model, images[:128])[0], _run(copy, images[:128])[0]
    diff = float(np.max(np.abs(before - after)))
    scale = max(float(np.max(np.abs(before))), 1e-12)
    if not diff <= TOLERANCE * scale:
        raise ValueError(f"equalized model differs from the original by {diff:.2e} (outputs up to {scale:.2e})")
