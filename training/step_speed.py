"""How fast a model trains on batches already on the device: the rate to set beside the input's.

`tools.benchmark --model NAME_OR_FILE` prints both, so that a student sees before a 12-hour run
whether the accelerator will wait for data (the trainer then measures it every epoch as
`input_wait`). The model is built on the device, precision and XLA setting that `train.py` would
pick, with SGD and momentum and label-smoothed cross-entropy (the optimiser's cost barely depends
on which); the batch is made once, on the device, so only the train step is timed. Each step ends
with the loss on the host (`train_on_batch`), a sync a run with `steps_per_execution` avoids: on
a TPU or a fast GPU the rate shown is a little low.
"""

from __future__ import annotations

import time

import numpy as np


def train_images_per_sec(model: str, folder, batch_size: int, seconds: float = 10.0) -> dict:
    """Images/second of `model`'s train step at the folder's resolution and `batch_size`, after two
    warm-up steps (compilation), over at least `seconds` and 5 steps."""
    import keras

    from model import custom
    from training.runtime import detect

    runtime = detect("auto")
    keras.mixed_precision.set_global_policy(runtime.mixed_precision)
    classes = len(folder.classes)
    with runtime.scope():
        net = custom.build_any(model, classes, folder.mean, folder.std)
        net.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                    loss=keras.losses.CategoricalCrossentropy(label_smoothing=0.1), jit_compile="auto")
    draw = np.random.default_rng(0)
    images = keras.ops.convert_to_tensor(draw.integers(0, 256, [batch_size, folder.resolution, folder.resolution, 3],
                                                       dtype=np.uint8))
    labels = keras.ops.convert_to_tensor(np.eye(classes, dtype=np.float32)[draw.integers(0, classes, batch_size)])
    for _ in range(2):
        net.train_on_batch(images, labels)  # returns the loss as a number: the step has finished
    steps, start = 0, time.perf_counter()
    while steps < 5 or time.perf_counter() - start < seconds:
        net.train_on_batch(images, labels)
        steps += 1
    rate = steps * batch_size / (time.perf_counter() - start)
    keras.mixed_precision.set_global_policy("float32")
    return {"model": custom.describe(model), "device": runtime.kind, "precision": runtime.mixed_precision,
            "resolution": folder.resolution, "batch_size": batch_size, "images_per_sec": round(rate, 1)}


def verdict(model_rate: float, input_rate: float, input_row: str) -> str:
    """One line: the two rates side by side and what they mean."""
    line = f"the model takes {model_rate:,.0f} images/s, the input gives {input_rate:,.0f} ({input_row})"
    if input_rate >= model_rate:
        return line + ": the input keeps up"
    return (line + f": the accelerator would wait for data {1 - input_rate / model_rate:.0%} of the time; "
            'try augment.on = "device", runtime.cache = "true", a lighter policy or more host cores')
