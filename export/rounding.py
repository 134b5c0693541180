"""Weights rounded to the int8 grid by the output error they cause, not each to its nearest level.

Rounding every weight to its nearest int8 step is best weight by weight, not for the layer: the errors of
one output channel's weights add up over the inputs they multiply, and inputs that move together can
cancel one weight's error with another's. With H = X^T X of the layer's inputs X (measured on the
calibration images), rounding one output channel's weights one input at a time and moving each rounding
error onto the weights not yet rounded (in proportion to H's inverse) minimises the channel's output
error in least squares: the optimal brain surgeon step, as GPTQ applies it (Frantar et al. 2023; the same
aim as AdaRound, Nagel et al. 2020, without its training loop). Where 16-bit activations still lose
agreement, int8 *weights* are what is left to fix, and this is how.

The grid is the one int8 converters use for symmetric per-channel weights (TFLite, ONNX Runtime): a
scale of max|w| / 127 per output channel. Each channel's largest weight is held at its grid point, +-127
steps, so a converter that measures the scale again finds the same scale and reproduces the integers
chosen here exactly; every other weight stays within +-127 steps. A batch norm folded into the layer
after it scales whole output channels, which moves their scale and keeps their integers.

Rounded: ``Dense``, ``Conv1D``/``Conv2D`` (one group), ``DepthwiseConv2D`` (each channel on its own),
both halves of ``SeparableConv2D``, and the kernel and recurrent kernel of ``SimpleRNN``/``LSTM``/``GRU``
(the recurrent one on the states each step starts from: on the zoo rnn's distorted digits, its kernels
alone at int8 agreed 98.15 % with Keras rounded to nearest, 99.50 % rounded so); each called once in a
functional or Sequential model. Only
kernels change (biases stay): the rounded copy is meant for per-channel int8 weights, the only thing its
choices hold for.
"""

from __future__ import annotations

import numpy as np

from edgeseq.lazy import require

SAMPLES = 256  # calibration images the layers' inputs are measured on
ROWS = 16384  # input rows (image x position) per layer the Hessian is estimated from
DAMP = 0.01  # added to H's diagonal, as a share of its mean: keeps the inverse sane where inputs are collinear
LEVELS = 127  # symmetric int8: weights in [-127, 127] steps
_RECURRENT = ("SimpleRNN", "LSTM", "GRU")
_ROUNDED = ("Dense", "Conv1D", "Conv2D", "DepthwiseConv2D", "SeparableConv2D", *_RECURRENT)


def _kind(layer) -> str:
    return type(layer).__name__


def has_recurrent(model) -> bool:
    """Whether ``model`` has a SimpleRNN, LSTM or GRU layer of its own (what can become a WHILE loop)."""
    return any(_kind(layer) in _RECURRENT for layer in model.layers)


def _roundable(layer) -> bool:
    if _kind(layer) in _RECURRENT:  # its states are measured by running it forward from zero
        return not layer.go_backwards and not layer.stateful
    return _kind(layer) in _ROUNDED and getattr(layer, "data_format", "channels_last") == "channels_last" \
        and getattr(layer, "groups", 1) == 1


def grid_round(weights: np.ndarray, hessian: np.ndarray) -> np.ndarray:
    """``weights`` (out, in) rounded row by row onto each row's grid (max|w| / 127), errors moved onto the
    inputs not yet rounded by H^-1 (``hessian``: (in, in), X^T X of the inputs). Returns the rounded
    weights as float, on the grid."""
    w = np.array(weights, np.float64)
    original = w.copy()
    scale = np.abs(original).max(axis=1) / LEVELS
    scale[scale == 0] = 1.0
    pinned = np.abs(original).argmax(axis=1)  # each row's largest weight stays at +-127 steps
    h = np.array(hessian, np.float64)
    dead = np.diag(h) <= 0
    h[dead, dead] = 1.0
    h += DAMP * float(np.mean(np.diag(h))) * np.eye(len(h))
    upper = np.linalg.cholesky(np.linalg.inv(h)).T  # H^-1 = U^T U, U upper triangular
    rows = np.arange(len(w))
    out = np.zeros_like(w)
    for i in range(w.shape[1]):
        q = np.clip(np.round(w[:, i] / scale), -LEVELS, LEVELS)
        held = pinned == i
        q[held] = np.sign(original[rows[held], i]) * LEVELS
        out[:, i] = q * scale
        error = (w[:, i] - out[:, i]) / upper[i, i]
        w[:, i + 1:] -= np.outer(error, upper[i, i + 1:])
    return out


def output_error(weights: np.ndarray, rounded: np.ndarray, hessian: np.ndarray) -> float:
    """Mean squared output error of ``rounded`` against ``weights`` (out, in) on inputs with X^T X = H."""
    d = np.asarray(rounded, np.float64) - np.asarray(weights, np.float64)
    return float(np.einsum("oi,ij,oj->", d, hessian, d) / max(len(d), 1))


def nearest(weights: np.ndarray) -> np.ndarray:
    """Each weight at its nearest step of its row's grid: what a converter does."""
    w = np.asarray(weights, np.float64)
    scale = np.abs(w).max(axis=1, keepdims=True) / LEVELS
    scale[scale == 0] = 1.0
    return np.clip(np.round(w / scale), -LEVELS, LEVELS) * scale


def _same_pad(size: int, k: int, stride: int, dilation: int) -> tuple[int, int]:
    span = (k - 1) * dilation + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + span - size, 0)
    return total // 2, total - total // 2


def patches(x: np.ndarray, kernel: tuple[int, int], strides, padding: str, dilation) -> np.ndarray:
    """(N, H, W, C) -> (N * positions, kh * kw * C): the input each output position of a 2-D convolution
    reads, in its kernel's (kh, kw, C) order."""
    (kh, kw), (sh, sw), (dh, dw) = kernel, strides, dilation
    if padding == "same":
        x = np.pad(x, ((0, 0), _same_pad(x.shape[1], kh, sh, dh), _same_pad(x.shape[2], kw, sw, dw), (0, 0)))
    oh = (x.shape[1] - (kh - 1) * dh - 1) // sh + 1
    ow = (x.shape[2] - (kw - 1) * dw - 1) // sw + 1
    cols = [x[:, i * dh : i * dh + sh * (oh - 1) + 1 : sh, j * dw : j * dw + sw * (ow - 1) + 1 : sw, :]
            for i in range(kh) for j in range(kw)]
    return np.stack(cols, axis=3).reshape(-1, kh * kw * x.shape[-1])


def _rows(x: np.ndarray, rng) -> np.ndarray:
    return x if len(x) <= ROWS else x[rng.choice(len(x), ROWS, replace=False)]


def _hessian(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x.T @ x / max(len(x), 1)


def _as_2d(layer, x: np.ndarray) -> tuple[np.ndarray, tuple, tuple, tuple]:
    """A 1-D convolution's input and geometry as a 2-D one's (height 1)."""
    if x.ndim == 3:
        return x[:, None], (1, *layer.kernel_size), (1, *layer.strides), (1, *layer.dilation_rate)
    return x, tuple(layer.kernel_size), tuple(layer.strides), tuple(layer.dilation_rate)


def _round_dense_like(kernel: np.ndarray, inputs: np.ndarray) -> tuple[np.ndarray, float, float]:
    """A (..., in, out) kernel whose rows of ``inputs`` (n, prod(...) * in) it reads: rounded, and the
    output error before (nearest) and after."""
    w = kernel.reshape(-1, kernel.shape[-1]).T
    h = _hessian(inputs)
    done = grid_round(w, h)
    return done.T.reshape(kernel.shape), output_error(w, nearest(w), h), output_error(w, done, h)


def _round_depthwise(kernel: np.ndarray, x: np.ndarray, layer, rng) -> tuple[np.ndarray, float, float]:
    """(kh, kw, C, m): output channel c * m + j reads input channel c alone, through kh * kw weights."""
    x, size, strides, dilation = _as_2d(layer, x)
    out, before, after = np.empty_like(kernel), 0.0, 0.0
    for c in range(kernel.shape[2]):
        rows = _rows(patches(x[..., c : c + 1], size, strides, layer.padding, dilation), rng)
        w = kernel[:, :, c, :].reshape(-1, kernel.shape[3]).T  # (m, kh * kw)
        h = _hessian(rows)
        done = grid_round(w, h)
        out[:, :, c, :] = done.T.reshape(kernel.shape[0], kernel.shape[1], kernel.shape[3])
        before, after = before + output_error(w, nearest(w), h), after + output_error(w, done, h)
    return out, before, after


def _conv_rows(layer, x: np.ndarray, rng) -> np.ndarray:
    x, size, strides, dilation = _as_2d(layer, x)
    return _rows(patches(x, size, strides, layer.padding, dilation), rng)


def _recurrent_rows(layer, x: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray]:
    """What a recurrent layer's two matmuls read at every step, on the same sampled rows: the input x_t
    (n, F) and the previous state h_{t-1} (n, U), measured by running a copy of the layer that returns
    every step's state (zeros before the first)."""
    config = {**layer.get_config(), "return_sequences": True, "return_state": False, "name": f"{layer.name}_steps"}
    twin = type(layer).from_config(config)
    twin.build(x.shape)
    twin.set_weights(layer.get_weights())
    h = np.asarray(twin(x), np.float32)
    previous = np.concatenate([np.zeros_like(h[:, :1]), h[:, :-1]], axis=1)
    rows = rng.permutation(x.shape[0] * x.shape[1])[:ROWS]
    return x.reshape(-1, x.shape[-1])[rows], previous.reshape(-1, previous.shape[-1])[rows]


def _round_recurrent(weights: list[np.ndarray], x: np.ndarray, h: np.ndarray, joint: bool) -> tuple[float, float]:
    """Round a SimpleRNN/LSTM/GRU's kernel (F, kU) on the inputs and its recurrent kernel (U, kU) on the
    states, in place; ``joint``: as one (F + U, U) matrix on [x_t, h_{t-1}] (what a graph that computes a
    SimpleRNN step as one matmul quantizes, on one grid per output channel)."""
    if joint:
        stacked, before, after = _round_dense_like(np.concatenate(weights[:2], axis=0), np.concatenate([x, h], axis=1))
        weights[0], weights[1] = stacked[: len(weights[0])], stacked[len(weights[0]):]
        return before, after
    weights[0], b0, a0 = _round_dense_like(weights[0], x)
    weights[1], b1, a1 = _round_dense_like(weights[1], h)
    return b0 + b1, a0 + a1


def _round_layer(layer, x: np.ndarray, rng, joint: bool = False) -> tuple[list[np.ndarray], float, float] | None:
    """The layer's weights with its kernel(s) rounded, and the output error before and after; None when
    it has nothing to round. ``joint``: a SimpleRNN's two kernels on one grid (:func:`_round_recurrent`)."""
    keras = require("keras")
    kind, weights = _kind(layer), [np.asarray(w) for w in layer.get_weights()]
    if kind in _RECURRENT:
        before, after = _round_recurrent(weights, *_recurrent_rows(layer, x, rng), joint and kind == "SimpleRNN")
    elif kind == "Dense":
        rows = _rows(x.reshape(-1, x.shape[-1]), rng)
        weights[0], before, after = _round_dense_like(weights[0], rows)
    elif kind in ("Conv1D", "Conv2D"):
        weights[0], before, after = _round_dense_like(weights[0], _conv_rows(layer, x, rng))
    elif kind == "DepthwiseConv2D":
        weights[0], before, after = _round_depthwise(weights[0], x, layer, rng)
    elif kind == "SeparableConv2D":
        weights[0], before, after = _round_depthwise(weights[0], x, layer, rng)
        middle = np.asarray(keras.ops.depthwise_conv(x, weights[0], strides=layer.strides, padding=layer.padding,
                                                     dilation_rate=layer.dilation_rate))
        pointwise, b2, a2 = _round_dense_like(weights[1], _rows(middle.reshape(-1, middle.shape[-1]), rng))
        weights[1], before, after = pointwise, before + b2, after + a2
    else:
        return None
    return weights, before, after


def round_weights(model, calibration: np.ndarray, seed: int = 0, joint: bool = False,
                  min_elements: int = 0, skip: frozenset[str] = frozenset()) -> tuple[object, list[dict]]:
    """A copy of ``model`` with the kernels of its roundable layers on the int8 grid, rounded by output
    error, and a record per layer (its output error with nearest rounding and with this, on the
    calibration images); ``(model, [])`` when no layer can be. calibration: (N, *input_shape) float32.
    ``joint``: each SimpleRNN's kernel and recurrent kernel rounded as the one matrix of
    :func:`edgeseq.export.rewrite.concat_simple_rnn` (the copy is meant to be rewritten so).
    ``min_elements``: a layer with a smaller kernel keeps its weights (a converter that leaves such
    weights float, as TFLite's dynamic range does under 1,024, would otherwise run them perturbed).
    ``skip``: names of layers that keep their weights (an output layer a converter keeps float)."""
    from edgeseq.export.equalize import _graph, _run

    keras = require("keras")
    graph = _graph(model)
    if graph is None:
        return model, []
    layers = [layer for layer in model.layers if _roundable(layer) and layer.name in graph.call and layer.get_weights()
              and layer.name not in skip
              and min((np.size(w) for w in layer.get_weights() if np.ndim(w) >= 2), default=0) >= min_elements]
    if not layers:
        return model, []
    images = np.asarray(calibration, np.float32)[:SAMPLES]
    inputs = graph.inputs[0] if len(graph.inputs) == 1 else graph.inputs
    measured = _run(keras.Model(inputs, [graph.input(layer) for layer in layers]), images)
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    targets = {layer.name: layer for layer in copy.layers}
    rng = np.random.default_rng(seed)
    done = []
    for layer, x in zip(layers, measured):
        made = _round_layer(layer, np.asarray(x, np.float32), rng, joint)
        if made is None:
            continue
        weights, before, after = made
        targets[layer.name].set_weights([w.astype(np.float32) for w in weights])
        done.append({"layer": layer.name, "output_error": [float(f"{before:.3g}"), float(f"{after:.3g}")]})
    return copy, done
