"""Re-read every shard of every resolution and check it against its manifest.

    python -m tools.verify /content/drive/MyDrive/tin

Checks, per `<res>px` folder: its manifest exists and is complete; per shard: the file exists,
its sha256 and record count match the manifest, and every record parses and decodes to the
stated resolution. Exits 1 and names the bad shards otherwise; useful after copying records
between Drive, a bucket and local disk. The checks: pipeline/verify.py.
"""

from __future__ import annotations

import sys

from common.cli import command_line
from pipeline import verify
from tools import arguments


@command_line
def main(argv: list[str] | None = None) -> int:
    parser = arguments.parser(__doc__)
    parser.add_argument("data", help="the converter's output folder")
    args = parser.parse_args(argv)
    bad = verify.verify(args.data)
    for line in bad:
        print(f"BAD {line}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
