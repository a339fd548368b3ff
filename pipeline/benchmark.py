"""Images/second of the input pipeline: reading alone, no augmentation, each augmentation alone,
the default policy and, for comparison, Keras 3 preprocessing layers.

Library code so that the command line (tools/benchmark.py), the tests and a notebook time the same
rows. `read` is the one read stage (`pipeline.read.batches`: records read, parsed after batching
and decoded to uint8), the ceiling any pipeline must stay under. Each row runs a warm-up
(excluded, it includes XLA compilation), then `repeats` timed windows; the median counts.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import time

from common import files

KERAS_EQUIVALENT = "flip, rotate:p=1:m=15, scale:p=1:m=0.3, translate:p=1, contrast:p=1, brightness:p=1"


@dataclasses.dataclass(frozen=True)
class Settings:
    """What to time: `names` augmentations alone, `seconds` per row over `repeats` windows, and the
    Keras-layers rows when `baseline` is "keras" (None: left out)."""

    batch_size: int = 256
    names: tuple[str, ...] = ()
    seconds: float = 6.0
    repeats: int = 3
    baseline: str | None = "keras"


def _images_per_sec(dataset, seconds: float, repeats: int, warmup_batches: int = 3) -> float:
    iterator = iter(dataset)
    for _ in range(warmup_batches):
        next(iterator)
    rates = []
    for _ in range(repeats):
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / repeats:
            batch = next(iterator)
            images = batch["image"] if isinstance(batch, dict) else batch[0]
            count += int(images.shape[0])
        rates.append(count / (time.perf_counter() - start))
    return statistics.median(rates)


def read_only(folder, batch_size: int):
    """Records -> batch -> parse -> decode, uint8 out, endlessly: what any pipeline must at least do."""
    from pipeline import read

    return read.batches(folder, "train", batch_size, repeat=True)


def keras_layers_pipeline(folder, batch_size: int):
    """The obvious pipeline: Keras 3 preprocessing layers applied to batches inside tf.data."""
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
    return read_only(folder, batch_size).map(
        lambda batch: (layers(tf.cast(batch["image"], tf.float32), training=True), batch["label"]),
        num_parallel_calls=tf.data.AUTOTUNE)


def run(folder, settings: Settings, report=print) -> dict:
    """Time every row of a DataFolder's train split; a line per row to `report`."""
    from pipeline import dataset, policy

    batch_size, names, baseline = settings.batch_size, list(settings.names), settings.baseline

    def pipeline(spec):
        return dataset.build(folder, dataset.InputSpec("train", batch_size, policy=spec, seed=0))[0]

    rows = [("read", lambda: read_only(folder, batch_size)), ("none", lambda: pipeline("none"))]
    rows += [(name, lambda n=name: pipeline(f"{n}:p=1")) for name in names]
    rows.append(("policy:default", lambda: pipeline(policy.DEFAULT_POLICY)))
    if baseline == "keras":
        # Like for like: our versions of exactly the Keras layers' ops, applied to every image as they are.
        rows.append(("policy:keras-ops", lambda: pipeline(KERAS_EQUIVALENT)))
        rows.append(("keras", lambda: keras_layers_pipeline(folder, batch_size)))
    results = []
    for name, make in rows:
        rate = _images_per_sec(make(), settings.seconds, settings.repeats)
        results.append({"augmentation": name, "images_per_sec": round(rate, 1)})
        report(f"{name:>16} {rate:>12,.0f} images/s")
    return {"resolution": folder.resolution, "batch_size": batch_size, "cpu_count": os.cpu_count(), "results": results}


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
