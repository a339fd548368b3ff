"""How long the consumer of a dataset waits for its next element, measured inside tf.data.

`metered(dataset, meter)` zips the dataset with a stream of timestamps: tf.data's zip asks its
inputs for their next element in turn, in the consumer's own call, so the first timestamp is taken
when the consumer asks and the element arrives after it; a sequential map then adds the
difference to `meter.seconds`. Backend-neutral (the input runs in tf.data under TensorFlow and
JAX alike) and the model is untouched. Under a distribution strategy whose iterator prefetches to
the devices, the consumer is that prefetcher: it waits as long as the devices would, since it
asks only when they have taken a batch.
"""

from __future__ import annotations

import tensorflow as tf


class WaitMeter:
    """Seconds spent waiting for elements of the datasets it meters, since the last `reset`."""

    def __init__(self):
        # a plain host variable, outside any distribution strategy, beside tf.data on the CPU
        with tf.init_scope(), tf.device("/CPU:0"):
            self._seconds = tf.Variable(0.0, dtype=tf.float64, trainable=False, name="input_wait_seconds")

    @property
    def seconds(self) -> float:
        return float(self._seconds.numpy())

    def reset(self) -> None:
        self._seconds.assign(0.0)

    def add(self, seconds) -> tf.Tensor:
        return self._seconds.assign_add(seconds)


def metered(dataset: tf.data.Dataset, meter: WaitMeter) -> tf.data.Dataset:
    """`dataset`, unchanged, with every wait for its next element added to `meter`."""
    asked = tf.data.Dataset.from_tensors(0).repeat().map(lambda _: tf.timestamp())

    def waited(asked_at, element):
        with tf.control_dependencies([meter.add(tf.timestamp() - asked_at)]):
            return tf.nest.map_structure(tf.identity, element)

    timed = tf.data.Dataset.zip((asked, dataset)).map(waited)  # sequential: runs in the consumer's call
    # ... unless tf.data puts a prefetch after it (its default `inject_prefetch` does so to the last
    # map of a pipeline): the timestamps would then be taken by that prefetch's thread, which asks
    # for the next element at once, and a slightly slow input would read as waiting all the time.
    options = tf.data.Options()
    options.experimental_optimization.inject_prefetch = False
    return timed.with_options(options)
