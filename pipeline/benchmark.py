"""Images/second of the training input, at the scale it runs: the plain tf.data pipeline on the
same records, ours without augmentation and with the default policy (from the files and from the
RAM cache), each augmentation alone, and the Keras 3 preprocessing layers for comparison.

Library code so that the command line (tools/benchmark.py), the tests and a notebook time the same
rows. The training-input rows are timed as a steady rate over whole epochs after a first epoch of
warm-up (XLA compilation, the cache filled, the shuffle buffer full): a rate taken over the first
seconds hides what happens at every epoch start, and a small split hides what grows with the data.
Each such row also gives the wait for the first batch of the run and the longest wait for the first
batch of a later epoch. The augmentation-alone rows, which time an op rather than the input, run on
the cached input for `seconds` over `repeats` windows (the median counts).
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import time

from common import files

KERAS_EQUIVALENT = "flip, rotate:p=1:m=15, scale:p=1:m=0.3, translate:p=1, contrast:p=1, brightness:p=1"
PLAIN = "plain"  # the reference row: every ratio is against it


@dataclasses.dataclass(frozen=True)
class Settings:
    """What to time: the training-input rows over `epochs` epochs (after one of warm-up), `names`
    augmentations alone for `seconds` over `repeats` windows, and the Keras-layers rows when
    `baseline` is "keras" (None: left out)."""

    batch_size: int = 256
    names: tuple[str, ...] = ()
    seconds: float = 6.0
    repeats: int = 3
    baseline: str | None = "keras"
    epochs: int = 3


def _count(batch) -> int:
    images = batch["image"] if isinstance(batch, dict) else batch[0]
    return int(images.shape[0])


def _steady(dataset, steps_per_epoch: int, epochs: int) -> dict:
    """Rate over `epochs` whole epochs after a first one of warm-up, the first batch's wait, and
    the longest wait for the first batch of a later epoch."""
    iterator = iter(dataset)
    start = time.perf_counter()
    next(iterator)
    first = time.perf_counter() - start
    for _ in range(steps_per_epoch - 1):
        next(iterator)
    count, waits, start = 0, [], time.perf_counter()
    for step in range(epochs * steps_per_epoch):
        before = time.perf_counter()
        batch = next(iterator)
        if step % steps_per_epoch == 0:
            waits.append(time.perf_counter() - before)
        count += _count(batch)
    return {"images_per_sec": round(count / (time.perf_counter() - start), 1), "first_batch_s": round(first, 3),
            "epoch_start_wait_s": round(max(waits), 3)}


def _windows(dataset, seconds: float, repeats: int, warmup_batches: int = 3) -> dict:
    iterator = iter(dataset)
    for _ in range(warmup_batches):
        next(iterator)
    rates = []
    for _ in range(repeats):
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / repeats:
            count += _count(next(iterator))
        rates.append(count / (time.perf_counter() - start))
    return {"images_per_sec": round(statistics.median(rates), 1)}


def plain_pipeline(train, batch_size: int):
    """The textbook tf.data input on the same records, the bar ours must clear: shards shuffled and
    8 interleaved, a shuffle buffer of 4,096 records, batch, parse_example and decode on the batch,
    endlessly. (Its order is far from a fresh permutation per epoch: pipeline/epoch_order.py.)"""
    import tensorflow as tf

    from pipeline import read

    paths = list(train.paths)
    return (tf.data.Dataset.from_tensor_slices(paths).shuffle(len(paths))
            .interleave(tf.data.TFRecordDataset, cycle_length=min(8, len(paths)), num_parallel_calls=tf.data.AUTOTUNE)
            .shuffle(4096).repeat().batch(batch_size, drop_remainder=True)
            .map(lambda serialized: read.decode(serialized, train.encoding, train.resolution),
                 num_parallel_calls=tf.data.AUTOTUNE)
            .prefetch(tf.data.AUTOTUNE))


def keras_layers_pipeline(train, batch_size: int):
    """The obvious augmenting pipeline: Keras 3 preprocessing layers applied to batches of the plain
    pipeline inside tf.data."""
    import keras
    import tensorflow as tf

    layers = keras.Sequential([
        keras.layers.RandomFlip("horizontal"),
        keras.layers.RandomRotation(15 / 360),
        keras.layers.RandomZoom(0.3),
        keras.layers.RandomTranslation(0.125, 0.125),
        keras.layers.RandomContrast(0.3),
        keras.layers.RandomBrightness(0.25, value_range=(0, 255)),
    ])
    return plain_pipeline(train, batch_size).map(
        lambda batch: (layers(tf.cast(batch["image"], tf.float32), training=True), batch["label"]),
        num_parallel_calls=tf.data.AUTOTUNE)


def run(folder, settings: Settings, report=print) -> dict:
    """Time every row of a DataFolder's train split; a line per row to `report`."""
    from pipeline import dataset, policy
    from pipeline.input_spec import Training

    batch_size, baseline = settings.batch_size, settings.baseline
    train = folder.split("train")
    steps = dataset.training_steps(train, batch_size)

    def ours(spec, cache=False):
        return lambda: dataset.build(train, dataset.InputSpec(batch_size, cache=cache,
                                                              training=Training(policy=spec)))[0]

    steady = [(PLAIN, lambda: plain_pipeline(train, batch_size)), ("none", ours("none")),
              ("none:cached", ours("none", True)), ("policy:default", ours(policy.DEFAULT_POLICY)),
              ("policy:default:cached", ours(policy.DEFAULT_POLICY, True))]
    alone = [(name, ours(f"{name}:p=1", True)) for name in settings.names]
    if baseline == "keras":
        # Like for like: our versions of exactly the Keras layers' ops, applied to every image as they are.
        steady.append(("policy:keras-ops", ours(KERAS_EQUIVALENT)))
        steady.append(("keras", lambda: keras_layers_pipeline(train, batch_size)))
    results = []
    timed = [(name, make, False) for name, make in steady] + [(name, make, True) for name, make in alone]
    for name, make, is_alone in timed:
        if is_alone:
            row = _windows(make(), settings.seconds, settings.repeats)
        else:
            row = _steady(make(), steps, settings.epochs)
        results.append({"augmentation": name, **row})
        reference = results[0]["images_per_sec"]
        waits = (f"   first batch {row['first_batch_s']:.2f} s, epoch start {row['epoch_start_wait_s']:.2f} s"
                 if "first_batch_s" in row else "")
        report(f"{name:>22} {row['images_per_sec']:>10,.0f} images/s {row['images_per_sec'] / reference:6.2f}x "
               f"{PLAIN}{waits}")
    return {"resolution": train.resolution, "batch_size": batch_size, "cpu_count": os.cpu_count(),
            "examples": train.count, "epochs": settings.epochs, "results": results}


def plot(result: dict, path: str) -> bool:
    from common import plots

    plt = plots.pyplot()
    if plt is None:
        return False
    rows = result["results"]
    figure, axis = plt.subplots(figsize=(8, 0.3 * len(rows) + 1.5))
    axis.barh([r["augmentation"] for r in rows][::-1], [r["images_per_sec"] for r in rows][::-1], color="#3a7dc9")
    axis.set_xlabel("images / second")
    axis.set_title(f"input pipeline at {result['resolution']} px, batch {result['batch_size']}, "
                   f"{result['cpu_count']} CPUs")
    plots.save(figure, path)
    return True


def measure(data: str, resolution: int, settings: Settings, json_path: str | None = None,
            plot_path: str | None = None, report=print) -> dict:
    """What the command line does: `run` (a corrupt shard named), then the JSON and the chart."""
    from pipeline.data_folder import DataFolder

    with DataFolder.open(data, resolution).naming_corrupt_shards(("train", "val")) as folder:
        result = run(folder, settings, report)
    if json_path:
        files.write_json(json_path, result)
    if plot_path:
        plot(result, plot_path)
    return result
