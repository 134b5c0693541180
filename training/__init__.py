"""edgeseq.training: the model zoo, training and evaluation (extra ``edgeseq[train]``).

Keras/TensorFlow are imported lazily, inside the functions that need them.
"""
