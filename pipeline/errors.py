"""One exception type for bad input, and one way for every command line to report it.

A user's mistake or a broken environment (a missing file, a read-only or full Drive, a corrupt
shard, an interrupted download) is answered with one line, `error: ...` naming the file or
option, and exit code 2. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import functools
import sys


class DataError(Exception):
    """Bad input from the user (a file, a folder, a config or an option): say what and where."""


def describe(error: BaseException) -> str | None:
    """The one line to show for an error the user can act on; None for a programming error."""
    if isinstance(error, DataError):
        return str(error)
    tf = sys.modules.get("tensorflow")
    errors = getattr(tf, "errors", None)
    if errors is not None and isinstance(error, errors.OpError):
        # PermissionDenied, ResourceExhausted (disk or Drive full), NotFound, DataLoss, ...: their
        # message names the path; its first line is the useful part.
        message = (error.message or "").strip().splitlines()
        return f"{type(error).__name__}: {message[0] if message else ''}"[:500]
    if isinstance(error, OSError):  # PermissionError, disk full, a vanished network path
        where = f"{error.filename}: " if getattr(error, "filename", None) else ""
        return f"{where}{error.strerror or error}"
    return None


def command_line(main):
    """Wrap a command line's `main(argv) -> int`: user errors become one line and exit code 2."""

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
