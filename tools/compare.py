"""Compare runs: epochs and minutes to each target val top-1, best val top-1, experiments marked.

    python -m tools.compare runs/r18 runs/r34 --json compare.json --plot compare.png

Reads each run directory's log.csv, state.json, config.json and final.json (runs still in progress
too) and prints one row per run: model, parameters, epochs, best val top-1 @ epoch, the first epoch
reaching each of --targets (default 0.5,0.6,0.7) and the training minutes up to it, and EXPERIMENT
for a run whose model breaks the course rules. --json writes the same per run; --plot overlays the
val top-1 curves (a marker per resolution, experiments dashed). The work: training/compare.py.
"""

from __future__ import annotations

import sys

from common.cli import command_line
from tools import arguments
from training import compare


@command_line
def main(argv: list[str] | None = None) -> int:
    parser = arguments.parser(__doc__)
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories written by train.py")
    parser.add_argument("--targets", default="0.5,0.6,0.7", help="val top-1 targets (default 0.5,0.6,0.7)")
    parser.add_argument("--json", help="write the comparison here")
    parser.add_argument("--plot", help="write the overlaid val top-1 curves here (PNG)")
    args = parser.parse_args(argv)
    compare.compare(args.runs, compare.parse_targets(args.targets), args.json, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
