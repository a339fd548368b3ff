"""The input-wait meter: how long the consumer of a dataset waits for it, against sleeps of known
length, and `input_wait` in Keras's logs for an input-bound and a model-bound fit."""

from __future__ import annotations

import time

import keras
import numpy as np
import tensorflow as tf

from pipeline import wait_meter
from training import callbacks

SLEEP = 0.02  # seconds


def slow(dataset):
    """Each element `SLEEP` seconds late (py_function: test-only, to have a known production time)."""
    def late(x):
        return tf.py_function(lambda v: (time.sleep(SLEEP), v)[1], [x], x.dtype)
    return dataset.map(late)


def test_a_slow_producer_is_waited_for_and_a_ready_one_is_not():
    meter = wait_meter.WaitMeter()
    for _ in wait_meter.metered(slow(tf.data.Dataset.range(20)), meter):
        pass
    assert 20 * SLEEP * 0.9 <= meter.seconds <= 20 * SLEEP * 3, meter.seconds  # 20 sleeps of 20 ms
    meter.reset()
    # produced ahead (prefetch) while the consumer itself takes 20 ms an element: no wait to speak of
    ready = slow(tf.data.Dataset.range(20)).prefetch(30)
    iterator = iter(wait_meter.metered(ready, meter))
    values = [int(next(iterator))]  # tf.data starts producing at the first request
    time.sleep(1.0)  # the other 19 produced meanwhile
    meter.reset()
    for element in iterator:
        values.append(int(element))
        time.sleep(SLEEP)
    assert values == list(range(20))  # the elements themselves unchanged, in order
    assert meter.seconds < 20 * SLEEP * 0.25, meter.seconds


def test_a_producer_a_little_slower_than_its_consumer_is_waited_for_the_difference():
    """Produced in 20 ms, consumed in 10 ms: once the one element made ahead is used up, every
    request waits about 20 - 10 = 10 ms (not the whole 20 ms of a prefetch thread's view)."""
    meter = wait_meter.WaitMeter()
    iterator = iter(wait_meter.metered(slow(tf.data.Dataset.range(40)).prefetch(1), meter))
    next(iterator)
    meter.reset()
    start = time.perf_counter()
    for _ in iterator:
        time.sleep(SLEEP / 2)
    elapsed = time.perf_counter() - start
    assert 39 * SLEEP / 2 * 0.5 <= meter.seconds <= 39 * SLEEP / 2 * 1.6, (meter.seconds, elapsed)
    assert meter.seconds < 0.75 * elapsed  # the consumer's own 10 ms per element are not waiting


def fit_input_wait(dataset, model, steps=12):
    meter = wait_meter.WaitMeter()
    advice = []
    history = model.fit(wait_meter.metered(dataset, meter), epochs=2, steps_per_epoch=steps, verbose=0, shuffle=False,
                        callbacks=[callbacks.InputWait(meter, advice.append)])
    return history.history["input_wait"], advice


def test_input_wait_in_the_logs_of_an_input_bound_and_a_model_bound_fit():
    images = np.zeros([8, 16, 16, 3], np.float32)
    labels = np.zeros([8, 2], np.float32)
    batch = tf.data.Dataset.from_tensors((images, labels))
    free = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.GlobalAveragePooling2D(),
                             keras.layers.Dense(2)])  # test model: the rules do not apply here
    free.compile("sgd", "categorical_crossentropy")
    late = batch.repeat().map(lambda x, y: (tf.py_function(lambda v: (time.sleep(0.05), v)[1], [x], tf.float32), y))
    late = late.map(lambda x, y: (tf.ensure_shape(x, images.shape), y))
    shares, advice = fit_input_wait(late, free)
    # 50 ms a batch against a step of about a millisecond (the first epoch also compiles the step)
    assert shares[-1] > 0.8 and shares[0] > 0.3, shares
    assert len(advice) == 1 and "augment.on = \"device\"" in advice[0]  # said once, not every epoch

    heavy = keras.Sequential([keras.Input((48, 48, 3)), keras.layers.Conv2D(128, 3, padding="same"),
                              keras.layers.Conv2D(128, 3, padding="same"), keras.layers.GlobalAveragePooling2D()])
    heavy.compile("sgd", "mse")
    ready = tf.data.Dataset.from_tensors((np.zeros([8, 48, 48, 3], np.float32), np.zeros([8, 128], np.float32)))
    shares, advice = fit_input_wait(ready.repeat().prefetch(4), heavy, steps=6)
    # batches ready long before a step ends: 48 x 48 x 9 x 2 x (3 x 128 + 128 x 128) x 8 ~ 5.6 GFLOP
    # forward, ~17 a step with the gradients (a tenth of a second or more on a CPU core) against
    # microseconds to hand over a batch made ahead
    assert all(share < 0.1 for share in shares), shares
    assert advice == []
