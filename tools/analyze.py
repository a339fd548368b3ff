"""After training: what the model gets wrong, and which training images are hardest.

    python -m tools.analyze --data records --run-dir runs/r34 --resolution 64

Loads the run's best model (`best.keras`), evaluates val and writes to `<run-dir>/analysis/`:
`summary.json` (top-1, top-5), `per_class.csv` (accuracy per class, worst first, with words),
`confusions.csv` (the most confused class pairs), `most_wrong.png` (the most confidently wrong
images with true and predicted labels) and `hard_examples.txt` (training images with the highest
loss, ready for `augment.hard_examples` in a config). Runs under TensorFlow and JAX.
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
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--hard-count", type=int, default=0,
                        help="how many training images to list in hard_examples.txt (default: 10%%)")
    parser.add_argument("--backend", choices=["tensorflow", "jax"], help="Keras backend (default: KERAS_BACKEND)")
    args = parser.parse_args(argv)
    if args.backend:
        os.environ["KERAS_BACKEND"] = args.backend
    from training import analysis  # after the backend is chosen

    analysis.analyze(args.data, args.run_dir, args.resolution, args.batch_size, args.hard_count)
    return 0


if __name__ == "__main__":
    sys.exit(main())
