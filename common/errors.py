"""The one exception type for what the user can fix, and the one line that describes it.

A user's mistake or a broken environment (a missing file, a read-only or full Drive, a corrupt
shard, an interrupted download) is answered with one line, `error: ...` naming the file or
option, and exit code 2. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import re
import sys


class UserError(Exception):
    """Something the user can fix (a file, a folder, a config, an option, a device, a rule the model
    breaks): the message says what and where. Raised by every room; shown as one line."""


def first_line(error: BaseException, limit: int = 160) -> str:
    """A library's exception in a few words for a one-line message: its first line, or its type
    when it has no message. Keras's wrapper around a layer's error ("Exception encountered when
    calling ...", the reason in terminal bold, then the arguments) gives its reason."""
    lines = [line.strip() for line in re.sub(r"\x1b\[[0-9;]*m", "", str(error)).splitlines() if line.strip()]
    if lines and lines[0].startswith("Exception encountered when calling") and len(lines) > 1:
        lines = lines[1:]
    return lines[0][:limit] if lines else type(error).__name__


def describe(error: BaseException) -> str | None:
    """The one line to show for an error the user can act on; None for a programming error."""
    if isinstance(error, UserError):
        return str(error)
    tf = sys.modules.get("tensorflow")
    errors = getattr(tf, "errors", None)
    environment = () if errors is None else (
        errors.NotFoundError, errors.PermissionDeniedError, errors.ResourceExhaustedError, errors.DataLossError,
        errors.UnavailableError, errors.DeadlineExceededError, errors.FailedPreconditionError,
        errors.AlreadyExistsError)
    if environment and isinstance(error, environment):
        # A missing or unwritable path, a full disk or Drive, a damaged file: the message names the
        # path. Inside a graph it starts with "Graph execution error:" and node names: skip those.
        return f"{type(error).__name__}: {_meaningful_line(error.message or '')}"[:500]
    if isinstance(error, OSError):  # PermissionError, disk full, a vanished network path
        where = f"{error.filename}: " if getattr(error, "filename", None) else ""
        return f"{where}{error.strerror or error}"
    return None


def _meaningful_line(message: str) -> str:
    noise = ("Graph execution error", "Detected at node", "Stack trace", "File ", "[[", "{{", "Traceback")
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(noise)]
    with_path = [line for line in useful if "/" in line]
    return (with_path or useful or lines or [""])[0]

