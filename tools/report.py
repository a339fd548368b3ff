"""A run's summary for the submission: final top-1/top-5 with and without flips, parameters, rules, augmentations.

    python -m tools.report runs/r34 --plot runs/r34/report.png

Prints the summary (paste it into the submission) and, with --plot, writes it with the loss and
accuracy curves as one PNG (default RUN_DIR/report.png; needs matplotlib). The work:
training/report.py.
"""

from __future__ import annotations

import posixpath
import sys

from common.cli import command_line
from tools import arguments
from training import report


@command_line
def main(argv: list[str] | None = None) -> int:
    parser = arguments.parser(__doc__)
    parser.add_argument("run", metavar="RUN_DIR", help="a run directory written by train.py")
    parser.add_argument("--plot", help="write the summary and curves as one PNG here (default RUN_DIR/report.png)")
    parser.add_argument("--no-plot", action="store_true", help="print the summary only")
    args = parser.parse_args(argv)
    text = report.lines(args.run)
    print("\n".join(text))
    if not args.no_plot:
        out = args.plot or posixpath.join(args.run.rstrip("/"), "report.png")
        if report.plot(args.run, out, text):
            print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
