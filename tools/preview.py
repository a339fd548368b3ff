"""A picture grid of real images: the originals, then one row per augmentation applied with p=1.

    python -m tools.preview --data records --resolution 64 --out grid.png

For a person to check that every augmentation looks right before spending GPU hours on it.
Each augmentation runs through the same Policy code the pipeline uses (so the warp, the colour
composition and the seeds are the real ones), at its default magnitude unless --policy says
otherwise. The work: pipeline/preview.py.
"""

from __future__ import annotations

import sys

from common.cli import command_line
from pipeline import preview
from tools import arguments


@command_line
def main(argv: list[str] | None = None) -> int:
    parser = arguments.data_parser(__doc__)
    parser.add_argument("--out", default="augmentations.png", help="PNG to write")
    parser.add_argument("--augment", help="comma-separated names (default: every registered augmentation)")
    parser.add_argument("--policy", help="take magnitudes from this policy spec, e.g. 'rotate:m=30'")
    parser.add_argument("--columns", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    names = arguments.augmentation_names(parser, args.augment)
    preview.write(args.data, args.resolution, args.out, names, args.columns, args.seed, args.policy)
    return 0


if __name__ == "__main__":
    sys.exit(main())
