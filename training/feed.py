"""How training batches reach the device, and how many steps run per call into the backend.

MNIST fits in any accelerator's memory many times over, so the input pipeline is never the data: it is
the work done per step on the host. Keras already keeps the device fed from in-memory arrays: on
TensorFlow it turns them into a ``tf.data`` pipeline (shuffled indices, gathered in graph, prefetched
with ``AUTOTUNE``); on JAX it slices the arrays and starts each batch's transfer to a GPU one step
ahead; on PyTorch it uses a ``DataLoader`` whose batches are sliced and converted on the host.

What is left per step is Python: the trainer's loop, the callbacks and the metric bookkeeping. For
models this small that is most of a GPU step, so edgeseq runs ``steps_per_execution`` steps for every
call back into Python (TensorFlow compiles them into one graph loop; JAX chains the jitted steps
without a round trip through the callbacks). The steps, their order and their batches are the same,
so the trained weights are identical bit for bit (``tests/test_zoo.py`` checks it); only the
per-batch progress granularity changes. PyTorch's Keras trainer accepts one step per execution only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from edgeseq.errors import InvalidValueError

STEPS_PER_EXECUTION = 32  # against 1 step, per model and backend: benchmarks/results/train_zoo.md

PIPELINES = {
    "tensorflow": "tf.data from in-memory arrays: shuffled indices gathered in graph, prefetch AUTOTUNE",
    "jax": "in-memory arrays sliced per batch, transfer to an accelerator started one batch ahead",
    "torch": "torch DataLoader over in-memory arrays, sliced and converted per batch on the host",
}


@dataclass(frozen=True)
class Feed:
    """The input side of one training run."""

    backend: str
    batch_size: int
    steps_per_execution: int

    def describe(self) -> dict:
        return {"pipeline": PIPELINES.get(self.backend, "Keras' default for in-memory arrays"),
                "batch_size": self.batch_size, "steps_per_execution": self.steps_per_execution}


def plan(backend: str, batch_size: int, train_images: int, steps_per_execution: int | None = None) -> Feed:
    """The feed for ``train_images`` images in batches of ``batch_size``: ``steps_per_execution`` as asked,
    else the default, never more than one epoch's steps (1 on PyTorch, which accepts nothing else)."""
    if steps_per_execution is not None and steps_per_execution < 1:
        raise InvalidValueError(f"steps per execution must be at least 1, got {steps_per_execution}")
    if backend == "torch":
        if steps_per_execution not in (None, 1):
            raise InvalidValueError(f"Keras' PyTorch trainer runs one step per execution, not {steps_per_execution}: "
                                    "leave it at the default or use the JAX or TensorFlow backend")
        return Feed(backend, batch_size, 1)
    steps = max(1, math.ceil(train_images / batch_size))
    return Feed(backend, batch_size, min(steps_per_execution or STEPS_PER_EXECUTION, steps))
