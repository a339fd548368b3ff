"""Progress bars through rich (it comes with Keras 3), quiet when output is not a terminal."""

from __future__ import annotations

import contextlib

from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)


@contextlib.contextmanager
def bars():
    """A rich Progress for counted work (examples, shards); use `.add_task(name, total=n)`."""
    with Progress(TextColumn("{task.description:>12}"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), transient=False) as progress:
        yield progress


class DownloadBar:
    """Adapter the downloader calls: start(total, already_have) then advance(bytes)."""

    def __init__(self, label: str):
        self._progress = Progress(TextColumn(label), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                                  TimeRemainingColumn())
        self._task = None

    def start(self, total: int, have: int) -> None:
        self._progress.start()
        self._task = self._progress.add_task("download", total=total or None, completed=have)

    def advance(self, amount: int) -> None:
        self._progress.advance(self._task, amount)
        if self._progress.tasks[0].finished:
            self._progress.stop()
