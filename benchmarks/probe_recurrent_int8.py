"""Research probe for issue 4 (int8 for recurrent models), not a product path yet.

Rewrites a trained zoo SimpleRNN into plain ops with shared weights -- one input projection for all 28
steps, then per step a bias-free recurrent fully-connected op reusing one weight tensor -- checks it is
float-identical to the original, and pushes it through edgeseq's own int8 converters.

    python benchmarks/probe_recurrent_int8.py rnn      # needs runs/zoo/rnn from benchmarks/train_zoo.py

Seen 2026-11-22 (TF 2.21, ORT 1.31), rnn: float max diff 0.0; TFLite full-int8 converts (the Keras
WHILE loop segfaults) with 100 % of MACs int8, agreement 99.48 %, accuracy -0.12 pts, 62.5 KB (int8
weights are 28 KB: the rest is metadata of 177 unrolled tensors); ONNX static QDQ agreement 98.46 %,
150.8 KB (larger than fp32: 283 Q/DQ nodes with long names).

Also measured, for the next step: (1) a rolled rewrite (tf.while_loop over a precomputed input
projection, no TensorList ops, weights as constants) still segfaults in TFLite full-int8 conversion:
the WHILE loop itself is the trigger; (2) slimming the unrolled flatbuffer (short names, activation
tensors on the empty buffer) gives 62.5 -> 57.1 KB with bit-identical outputs: the rest is the
flatbuffer structure of ~6 tensors per step, so unrolled TFLite int8 cannot meet 0.35x of fp32
(120 KB for rnn) on models this small; TFLite's fused integer sequence kernels (int8 weights, int16
cell state) are the candidate that keeps one op per layer.
"""

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np
from pathlib import Path
from edgeseq.training.models import load_model
from edgeseq.data import load_split
from edgeseq.export import tflite, onnx as eonnx
from edgeseq.export.coverage import tflite_coverage, onnx_coverage
from edgeseq.runtimes import open_runner
import keras
from keras import ops

def unroll(model, name):
    rnn = model.get_layer(name); head = model.layers[-1]
    W, U, b = rnn.get_weights(); H = U.shape[0]; T = model.inputs[0].shape[1]
    inp = keras.Input(tuple(model.inputs[0].shape[1:]), name="image")
    xw = keras.layers.Dense(H, name="input_projection")(inp)          # (B, T, H): all steps at once
    rec = keras.layers.Dense(H, use_bias=False, name="recurrent")      # shared across steps
    h = None
    for t in range(T):
        x_t = xw[:, t, :]
        h = ops.tanh(x_t if h is None else x_t + rec(h))
    new_head = keras.layers.Dense(head.units, activation=head.activation, name="digit")
    out = new_head(h)
    m = keras.Model(inp, out)
    m.get_layer("input_projection").set_weights([W, b]); rec.set_weights([U]); new_head.set_weights(head.get_weights())
    return m

def main() -> None:
    zoo = sys.argv[1] if len(sys.argv) > 1 else "rnn"
    m = load_model(f"runs/zoo/{zoo}/model.keras")
    u = unroll(m, "simplernn")
    te = load_split("test"); tr = load_split("train")
    ref = np.asarray(m.predict(te.images, batch_size=1000, verbose=0)); ur = np.asarray(u.predict(te.images, batch_size=1000, verbose=0))
    print("float unrolled vs original max diff", np.abs(ref-ur).max())
    out = Path(f"/tmp/probe-{zoo}-unrolled-int8.tflite")
    t=time.time(); tflite.convert(u, out, "int8", tr.images[:300]); print("tflite int8 convert", round(time.time()-t,1), "s size", out.stat().st_size)
    y = open_runner(out).run(te.images)
    print("tflite int8 agreement", (y.argmax(-1)==ref.argmax(-1)).mean(), "acc", (y.argmax(-1)==te.labels).mean(), "keras", (ref.argmax(-1)==te.labels).mean())
    c = tflite_coverage(out); print("coverage", c["int8_mac_share"], c["macs"], c["ops"]["float"])
    fp = Path(f"/tmp/probe-{zoo}-unrolled-fp32.onnx"); eonnx.convert(u, fp, "fp32")
    o8 = Path(f"/tmp/probe-{zoo}-unrolled-int8.onnx"); eonnx.convert(u, o8, "int8", tr.images[:300], fp32_path=fp)
    y = open_runner(o8).run(te.images, batch=1)
    print("onnx int8 agreement", (y.argmax(-1)==ref.argmax(-1)).mean(), "size", o8.stat().st_size, "fp32", fp.stat().st_size, "cov", onnx_coverage(o8, 28)["int8_mac_share"])


if __name__ == "__main__":
    main()
