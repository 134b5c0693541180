"""Data-parallel training over every visible accelerator, through Keras 3's own distribution API.

``keras.distribution.DataParallel`` replicates the model on each device and splits every batch across
them; the gradient is the mean over the whole (global) batch, so a recipe's batch size means the same
on one device and on eight and results stay comparable. Keras 3 implements the distribution API on the
JAX backend only: on TensorFlow (``tf.distribute.MirroredStrategy``) or PyTorch (``DistributedDataParallel``)
the same thing needs that framework's own strategy, which edgeseq does not wire in, so asking for it
there is an error that says so rather than a silent single-device run.

Every batch must split evenly: the global batch must be a multiple of the device count, and the
training and validation sets are trimmed to a multiple of it (at most count - 1 images each; the card
records how many).
"""

from __future__ import annotations

from dataclasses import dataclass

from edgeseq.errors import InvalidValueError


@dataclass(frozen=True)
class Plan:
    """How one training run is spread over devices."""

    devices: tuple[str, ...]  # e.g. ("gpu:0", "gpu:1") or ("cpu:0", "cpu:1")
    global_batch: int

    @property
    def count(self) -> int:
        return len(self.devices)

    @property
    def per_device_batch(self) -> int:
        return self.global_batch // self.count

    def trimmed(self, n: int) -> int:
        """The largest size <= n that splits evenly over the devices."""
        return n - n % self.count

    def describe(self, dropped: int) -> dict:
        return {"strategy": "keras.distribution.DataParallel", "devices": list(self.devices), "count": self.count,
                "global_batch": self.global_batch, "per_device_batch": self.per_device_batch,
                "images_dropped_to_split_evenly": dropped}


def data_parallel(keras, global_batch: int) -> Plan:
    """Set Keras' distribution to data parallel over every visible device; returns the plan."""
    backend = keras.backend.backend()
    if backend != "jax":
        raise InvalidValueError(
            f"data-parallel training runs on the JAX backend (KERAS_BACKEND=jax), not {backend}: Keras 3's "
            "distribution API (keras.distribution.DataParallel) is implemented for JAX only")
    devices = tuple(keras.distribution.list_devices())
    if global_batch % len(devices):
        raise InvalidValueError(f"batch size {global_batch} does not split evenly over {len(devices)} devices "
                                f"({', '.join(devices)}): use a multiple of {len(devices)}")
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=list(devices)))
    return Plan(devices, global_batch)


def single_device(keras) -> None:
    """Back to no distribution (inference after training, the next run in this process)."""
    if keras.backend.backend() == "jax":
        keras.distribution.set_distribution(None)
