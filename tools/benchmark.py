"""Images/second of the input pipeline: no augmentation, each augmentation alone, the default policy.

    python -m tools.benchmark --data records --resolution 64 --json bench.json --plot bench.png

Rows: `read` (records read, parsed after batching and decoded to uint8: the ceiling), `none`
(the training pipeline without augmentation: shuffled, uint8 images and one-hot labels), one row per registered
augmentation applied alone with p=1 (its worst case), `policy:default` (the default policy at its
own probabilities) and, with `--baseline keras` (the default), `keras`: flip, rotation, zoom,
translation, contrast and brightness done with Keras 3 preprocessing layers on batches, and
`policy:keras-ops`: our versions of exactly those six ops on every image, so the gap is visible
on your own machine, like for like. Each row runs a
warm-up (excluded, it includes XLA compilation), then `--repeats` timed windows; the median counts.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

from common.cli import command_line
from pipeline import dataset


def _images_per_sec(dataset, seconds: float, repeats: int, warmup_batches: int = 3) -> float:
    iterator = iter(dataset)
    for _ in range(warmup_batches):
        next(iterator)
    rates = []
    for _ in range(repeats):
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / repeats:
            images = next(iterator)[0]
            count += int(images.shape[0])
        rates.append(count / (time.perf_counter() - start))
    return statistics.median(rates)


def read_only(data: str, resolution: int, batch_size: int):
    """Records -> batch -> parse -> decode, uint8 out: what any pipeline must at least do."""
    import tensorflow as tf

    from pipeline import manifest as manifests
    from pipeline import records

    manifest = manifests.read(data, resolution)
    files = dataset.checked_shard_paths(data, resolution, manifest, "train")
    stream = tf.data.Dataset.from_tensor_slices(files).interleave(
        tf.data.TFRecordDataset, cycle_length=min(16, len(files)), num_parallel_calls=tf.data.AUTOTUNE)

    def parse(serialized):
        parsed = records.parse_batch(serialized)
        return records.decode_images(parsed["image"], manifest["encoding"], resolution), parsed["label"]

    return (stream.repeat().batch(batch_size, drop_remainder=True)
            .map(parse, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE))


KERAS_EQUIVALENT = "flip, rotate:p=1:m=15, scale:p=1:m=0.3, translate:p=1, contrast:p=1, brightness:p=1"


def keras_layers_pipeline(data: str, resolution: int, batch_size: int):
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
    return read_only(data, resolution, batch_size).map(
        lambda x, y: (layers(tf.cast(x, tf.float32), training=True), y), num_parallel_calls=tf.data.AUTOTUNE)


def run(data: str, resolution: int, batch_size: int, names: list[str], seconds: float, repeats: int,
        baseline: str | None, report=print) -> dict:
    from pipeline import augment, dataset

    def pipeline(spec):
        return dataset.build(data, "train", resolution, batch_size, policy=spec, seed=0)[0]

    rows = [("read", lambda: read_only(data, resolution, batch_size)), ("none", lambda: pipeline("none"))]
    rows += [(name, lambda n=name: pipeline(f"{n}:p=1")) for name in names]
    rows.append(("policy:default", lambda: pipeline(augment.DEFAULT_POLICY)))
    if baseline == "keras":
        # Like for like: our versions of exactly the Keras layers' ops, applied to every image as they are.
        rows.append(("policy:keras-ops", lambda: pipeline(KERAS_EQUIVALENT)))
        rows.append(("keras", lambda: keras_layers_pipeline(data, resolution, batch_size)))
    results = []
    for name, make in rows:
        rate = _images_per_sec(make(), seconds, repeats)
        results.append({"augmentation": name, "images_per_sec": round(rate, 1)})
        report(f"{name:>16} {rate:>12,.0f} images/s")
    return {"resolution": resolution, "batch_size": batch_size, "cpu_count": os.cpu_count(), "results": results}


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


@command_line
def main(argv: list[str] | None = None) -> int:
    from pipeline import augment

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="the converter's output folder")
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--augment", help="comma-separated augmentations to time alone (default: all)")
    parser.add_argument("--seconds", type=float, default=6.0, help="timed seconds per row (after warm-up)")
    parser.add_argument("--repeats", type=int, default=3, help="timed windows per row; the median counts")
    parser.add_argument("--baseline", choices=["keras", "none"], default="keras",
                        help="add the Keras-preprocessing-layers row (default keras)")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--plot", help="write a bar chart PNG here (needs matplotlib)")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.augment.split(",")] if args.augment else list(augment.REGISTRY)
    unknown = [n for n in names if n not in augment.REGISTRY]
    if unknown:
        parser.error(f"--augment: unknown {', '.join(unknown)} (known: {', '.join(augment.REGISTRY)})")
    if args.seconds <= 0 or args.repeats < 1 or args.batch_size < 1:
        parser.error("--seconds, --repeats and --batch-size must be positive")
    with dataset.naming_corrupt_shards(args.data, args.resolution, ("train", "val")):
        result = run(args.data, args.resolution, args.batch_size, names, args.seconds, args.repeats,
                     None if args.baseline == "none" else args.baseline)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=1)
    if args.plot:
        plot(result, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
