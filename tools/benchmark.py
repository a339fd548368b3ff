"""Images/second of the training input beside the plain tf.data pipeline, with and without augmentation.

    python -m tools.benchmark --data records --resolution 64 --json bench.json --plot bench.png

Rows, each with its ratio to `plain`: `plain` (the textbook tf.data pipeline on the same records:
8 shards interleaved, a 4,096-record shuffle buffer, parse and decode on the batch), `none` (our
training input without augmentation: a fresh permutation every epoch, uint8 images, one-hot
labels), `policy:default` (the default policy at its own probabilities), each from the files and
from the RAM cache (`:cached`), and, with `--baseline keras` (the default), `keras` (flip,
rotation, zoom, translation, contrast and brightness as Keras 3 preprocessing layers on batches)
beside `policy:keras-ops` (our versions of exactly those six ops on every image). These rows are a
steady rate over `--epochs` whole epochs after one of warm-up, with the wait for the first batch of
the run and of a later epoch. `--augment flip,rotate` adds one row per augmentation applied alone
with p=1 (its worst case), timed on the cached input for `--seconds` over `--repeats` windows.
`--model resnet34` (or `file.py:function`) also times the model's train step on batches already on
the device, at this resolution and batch size, and prints it beside the input's rate: "the model
takes X images/s, the input gives Y". The work: pipeline/benchmark.py, training/step_speed.py.
"""

from __future__ import annotations

import sys

from common import files
from common.cli import command_line
from pipeline import benchmark
from tools import arguments


@command_line
def main(argv: list[str] | None = None) -> int:
    parser = arguments.data_parser(__doc__)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--augment", help="comma-separated augmentations to time alone ('all': every one)")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per training-input row (after one)")
    parser.add_argument("--seconds", type=float, default=6.0, help="timed seconds per augmentation row")
    parser.add_argument("--repeats", type=int, default=3, help="timed windows per row; the median counts")
    parser.add_argument("--baseline", choices=["keras", "none"], default="keras",
                        help="add the Keras-preprocessing-layers row (default keras)")
    parser.add_argument("--model", help="also time this model's train step (a preset name or file.py:function) "
                                        "on batches already on the device, beside the input's rate")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--plot", help="write a bar chart PNG here (needs matplotlib)")
    args = parser.parse_args(argv)
    names = []
    if args.augment:
        names = arguments.augmentation_names(parser, None if args.augment == "all" else args.augment)
    if args.seconds <= 0 or args.repeats < 1 or args.batch_size < 1 or args.epochs < 1:
        parser.error("--seconds, --repeats, --epochs and --batch-size must be positive")
    settings = benchmark.Settings(args.batch_size, tuple(names), args.seconds, args.repeats,
                                  None if args.baseline == "none" else args.baseline, args.epochs)
    result = benchmark.measure(args.data, args.resolution, settings, plot_path=args.plot)
    if args.model:
        from pipeline.data_folder import DataFolder
        from training import step_speed

        folder = DataFolder.open(args.data, args.resolution)
        result["model"] = step_speed.train_images_per_sec(args.model, folder, args.batch_size)
        # the input a run would get: the default policy, cached when runtime.cache = "auto" caches
        row = "policy:default:cached" if folder.fits_in_ram("train") else "policy:default"
        rates = {r["augmentation"]: r["images_per_sec"] for r in result["results"]}
        print(step_speed.verdict(result["model"]["images_per_sec"], rates[row], row))
    if args.json:
        files.write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
