"""One way for every command line to report a user's mistake: one line, exit code 2."""

from __future__ import annotations

import functools
import sys

from common.errors import describe


def command_line(main):
    """Wrap a command line's `main(argv) -> int`: user errors become `error: ...` on stderr and
    exit code 2; anything else is a bug and keeps its traceback."""

    @functools.wraps(main)
    def run(argv=None):
        try:
            return main(argv)
        except Exception as error:  # noqa: BLE001 - re-raised unless it is the user's to fix
            line = describe(error)
            if line is None:
                raise
            print(f"error: {line}", file=sys.stderr)
            return 2

    return run
