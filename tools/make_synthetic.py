"""Write a small dataset in the official Tiny-ImageNet zip layout, with learnable classes.

Why: tests and `make demo` need data that behaves like the real set (same folder layout,
boxes files, val annotations, an unlabeled test folder, a few single-channel JPEGs, a
`wnids.txt` without a final newline) but is small, made offline in seconds, and learnable, so
that "the model learned" is a meaningful assertion. Each class is a shape drawn in a colour
over a textured background, at a random place and scale; the box is the shape's extent.
The work: pipeline/synthetic.py.

    python -m tools.make_synthetic --out synthetic.zip --classes 10 --train-per-class 100
"""

from __future__ import annotations

import sys

from common.cli import command_line
from pipeline import synthetic
from tools import arguments


@command_line
def main(argv: list[str] | None = None) -> int:
    parser = arguments.parser(__doc__)
    parser.add_argument("--out", required=True, help="zip file to write")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--train-per-class", type=int, default=100)
    parser.add_argument("--val-per-class", type=int, default=20)
    parser.add_argument("--test-images", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.classes < 1:
        parser.error("--classes must be at least 1")
    info = synthetic.make_zip(args.out, args.classes, args.train_per_class, args.val_per_class,
                              args.test_images, seed=args.seed)
    print(synthetic.summary(args.out, info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
