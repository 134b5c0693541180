"""edgeseq.export: Keras -> TFLite / ONNX artifacts and bundles (extra ``edgeseq[train]``).

TensorFlow, tf2onnx and onnx are imported lazily, inside the functions that need them.
"""
