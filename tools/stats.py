"""Look at the data before choosing augmentations: colour, grayscale share, object sizes, counts.

    python -m tools.stats --data records --resolution 64 --out stats --json stats.json

Prints a summary; writes `colour_histograms.png` and `box_areas.png` to --out and, with --json,
`mean`/`std` (per channel, 0..255, train split), `grayscale_fraction` (share of train images
whose source JPEG was single-channel, recorded at conversion), `box_area_fraction` (quantiles
of box area / image area) and per-class counts and median box areas. The work: pipeline/statistics.py.
"""

from __future__ import annotations

import sys

from common.cli import command_line
from pipeline import statistics
from tools import arguments


@command_line
def main(argv: list[str] | None = None) -> int:
    parser = arguments.data_parser(__doc__)
    parser.add_argument("--out", default="stats", help="folder for the PNG charts")
    parser.add_argument("--json", help="write the statistics here")
    args = parser.parse_args(argv)
    statistics.report(args.data, args.resolution, args.out, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
