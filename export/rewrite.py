"""Float-identical rewrites of Keras recurrent layers into forms that quantize well.

:func:`concat_simple_rnn` turns every ``SimpleRNN`` (also inside ``Bidirectional``) into an ``RNN`` over a
cell that computes ``tanh([x_t, h_{t-1}] @ [W; U] + b)``: one fully-connected op per step instead of two
plus an ADD. In int8 that removes two of the three roundings of the pre-activation per step (the two
matmul outputs), which is what makes a SimpleRNN drift over 28 steps. Weights are the layer's own,
stacked once: the loop still stores them a single time.
"""

from __future__ import annotations

import functools

from edgeseq.lazy import require

SUFFIX = "_concat"  # a rewritten layer is named after the original: <name>_concat (search.KerasLayers.owner)


@functools.lru_cache(maxsize=1)
def _cell_class():
    keras = require("keras")
    ops = keras.ops

    @keras.saving.register_keras_serializable(package="edgeseq")  # Bidirectional rebuilds its layers from config
    class ConcatSimpleRNNCell(keras.layers.Layer):
        """SimpleRNN cell as one matmul over the concatenated input and state."""

        def __init__(self, units: int, activation="tanh", use_bias: bool = True, **kwargs):
            super().__init__(**kwargs)
            self.units, self.use_bias = units, use_bias
            self.activation = keras.activations.get(activation)
            self.state_size = units
            self.output_size = units

        def build(self, input_shape):
            self.kernel = self.add_weight(shape=(input_shape[-1] + self.units, self.units), name="kernel")
            self.bias = self.add_weight(shape=(self.units,), name="bias", initializer="zeros") if self.use_bias else None

        def call(self, inputs, states, training=False):
            state = states[0] if isinstance(states, (list, tuple)) else states
            z = ops.matmul(ops.concatenate([inputs, state], axis=-1), self.kernel)  # (batch, units)
            if self.bias is not None:
                z = z + self.bias
            out = self.activation(z)
            return out, [out]

        def get_config(self):
            return {**super().get_config(), "units": self.units, "use_bias": self.use_bias,
                    "activation": keras.activations.serialize(self.activation)}

    return ConcatSimpleRNNCell


def _fused(layer, cell_class, go_backwards: bool | None = None):
    """A new RNN layer over the concatenated cell, configured like the SimpleRNN ``layer``."""
    keras = require("keras")
    cfg = layer.get_config()
    cell = cell_class(cfg["units"], cfg["activation"], cfg["use_bias"])
    return keras.layers.RNN(cell, return_sequences=cfg["return_sequences"], return_state=cfg["return_state"],
                            go_backwards=cfg["go_backwards"] if go_backwards is None else go_backwards,
                            stateful=cfg["stateful"], unroll=cfg["unroll"], name=layer.name + SUFFIX)


def _stacked(layer) -> list:
    weights = layer.get_weights()  # kernel (in, units), recurrent (units, units)[, bias (units,)]
    import numpy as np

    return [np.concatenate([weights[0], weights[1]], axis=0), *weights[2:]]


def concat_simple_rnn(model) -> tuple[object, int]:
    """``model`` with every SimpleRNN computed as one matmul per step; (new model, layers rewritten).

    Returns ``(model, 0)`` unchanged when there is nothing to rewrite or the model is not functional.
    """
    keras = require("keras")
    simple = keras.layers.SimpleRNN

    def is_simple(layer) -> bool:
        return isinstance(layer, simple) or (isinstance(layer, keras.layers.Bidirectional)
                                             and isinstance(layer.forward_layer, simple))

    targets = [layer for layer in model.layers if is_simple(layer)]
    if not targets or not isinstance(model, keras.Model) or not hasattr(model, "inputs"):
        return model, 0
    cell_class = _cell_class()
    replaced = {}

    def clone(layer):
        if not is_simple(layer):
            return layer  # shared, weights included
        if isinstance(layer, simple):
            new = _fused(layer, cell_class)
        else:
            new = keras.layers.Bidirectional(_fused(layer.forward_layer, cell_class, go_backwards=False),
                                             backward_layer=_fused(layer.backward_layer, cell_class, go_backwards=True),
                                             merge_mode=layer.merge_mode, name=layer.name + SUFFIX)
        replaced[layer.name] = (layer, new)
        return new

    rewritten = keras.models.clone_model(model, clone_function=clone)
    for old, new in replaced.values():
        if isinstance(old, simple):
            new.set_weights(_stacked(old))
        else:
            new.forward_layer.set_weights(_stacked(old.forward_layer))
            new.backward_layer.set_weights(_stacked(old.backward_layer))
    return rewritten, len(replaced)
