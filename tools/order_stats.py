"""How fresh is each epoch's order? Position correlation and batch-mate overlap of two epochs.

    python -m tools.order_stats --data DIR --resolution 64 --batch-size 256 [--cache] [--json PATH]

Reads two training epochs (filenames only matter; no augmentation) exactly as train.py would and
compares them with what two independent uniform random orders give. The work: pipeline/order_stats.py.
"""

from __future__ import annotations

import sys

from common.cli import command_line
from tools import arguments


@command_line
def main(argv=None) -> int:
    parser = arguments.data_parser(__doc__)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--cache", action="store_true", help="read through the RAM cache, as cache = true does")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the statistics here")
    args = parser.parse_args(argv)
    from pipeline import order_stats

    order_stats.measure(args.data, args.resolution, args.batch_size, args.cache, args.seed, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
