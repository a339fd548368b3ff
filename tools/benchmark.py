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
The work: pipeline/benchmark.py.
"""

from __future__ import annotations

import sys

from common.cli import command_line
from pipeline import benchmark
from tools import arguments


@command_line
def main(argv: list[str] | None = None) -> int:
    parser = arguments.data_parser(__doc__)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--augment", help="comma-separated augmentations to time alone (default: all)")
    parser.add_argument("--seconds", type=float, default=6.0, help="timed seconds per row (after warm-up)")
    parser.add_argument("--repeats", type=int, default=3, help="timed windows per row; the median counts")
    parser.add_argument("--baseline", choices=["keras", "none"], default="keras",
                        help="add the Keras-preprocessing-layers row (default keras)")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--plot", help="write a bar chart PNG here (needs matplotlib)")
    args = parser.parse_args(argv)
    names = arguments.augmentation_names(parser, args.augment)
    if args.seconds <= 0 or args.repeats < 1 or args.batch_size < 1:
        parser.error("--seconds, --repeats and --batch-size must be positive")
    settings = benchmark.Settings(args.batch_size, tuple(names), args.seconds, args.repeats,
                                  None if args.baseline == "none" else args.baseline)
    benchmark.measure(args.data, args.resolution, settings, args.json, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
