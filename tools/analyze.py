"""After training: what the model gets wrong, and which training images are hardest.

    python -m tools.analyze --data records --run-dir runs/r34 --resolution 64
    python -m tools.analyze --data records --run-dir runs/r34 --eval-resolution 56

Loads the run's best model (`best.keras`), evaluates val and writes to `<run-dir>/analysis/`:
`summary.json` (top-1, top-5, and both with flip test-time augmentation: each image averaged with
its mirror image; `resolution`, `records_resolution`), `per_class.csv` (accuracy per class, worst first, with words),
`confusions.csv` (the most confused class pairs), `most_wrong.png` (the most confidently wrong
images with true and predicted labels) and `hard_examples.txt` (training images with the highest
loss, ready for `augment.hard_examples` in a config). `--eval-resolution N` evaluates at N px,
resizing on the fly the records of the nearest converted resolution (ties: the larger; it replaces
--resolution and says which it used); the hard examples are then computed at N px too, otherwise
at the records' own resolution. `--train-images N` looks for the hard examples among the first N
training images only (a fair sample: the converter shuffles the classes; the notebook's quick check
uses it). Run again with the same best.keras, records and options it says the analysis is up to
date instead of repeating it (`--force` analyses again). Runs under TensorFlow and JAX.
The work: training/analysis.py.
"""

from __future__ import annotations

import os
import sys

from common.cli import command_line
from tools import arguments


@command_line
def main(argv: list[str] | None = None) -> int:
    parser = arguments.parser(__doc__)
    arguments.data_folder(parser)
    parser.add_argument("--run-dir", required=True, help="a train.py run directory (holds best.keras)")
    arguments.resolution(parser)
    parser.add_argument("--eval-resolution", type=int,
                        help="evaluate at this size, resizing the nearest converted resolution's records")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--hard-count", type=int, default=0,
                        help="how many training images to list in hard_examples.txt (default: 10%%)")
    parser.add_argument("--train-images", type=int, default=0,
                        help="look for hard examples among the first N training images only (default: all)")
    parser.add_argument("--force", action="store_true", help="analyse again even if the analysis is up to date")
    parser.add_argument("--backend", choices=["tensorflow", "jax"], help="Keras backend (default: KERAS_BACKEND)")
    args = parser.parse_args(argv)
    if args.eval_resolution is not None and args.eval_resolution < 1:
        parser.error(f"--eval-resolution {args.eval_resolution}: expected a positive number of pixels")
    for option, value in (("--train-images", args.train_images), ("--hard-count", args.hard_count)):
        if value < 0:
            parser.error(f"{option} {value}: expected 0 (the default) or a positive count")
    if args.backend:
        os.environ["KERAS_BACKEND"] = args.backend
    from training import analysis  # after the backend is chosen

    options = analysis.Options(resolution=args.resolution, eval_resolution=args.eval_resolution,
                               batch_size=args.batch_size, hard_count=args.hard_count, train_images=args.train_images)
    analysis.analyze(args.data, args.run_dir, options, force=args.force)
    return 0


if __name__ == "__main__":
    sys.exit(main())
