"""Per-epoch bookkeeping: the CSV log, checkpoints (each epoch and on a timer), the best model,
the curves PNG. Backend-neutral Keras callbacks.

Order at the end of an epoch: the CSV row first, then the checkpoint. A run killed between the
two has a CSV row for an epoch its checkpoint does not hold; `trim_log` removes such rows on
resume, so every epoch appears exactly once.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import os
import posixpath
import tempfile
import time

import keras

from common import files
from training import checkpoint

COLUMNS = ["epoch", "stage", "resolution", "lr", "loss", "accuracy", "top5", "val_loss", "val_accuracy",
           "val_top5", "images_per_sec", "seconds"]
LOG = "log.csv"


def read_log(run_dir: str) -> list[dict]:
    text = files.read_text(posixpath.join(run_dir, LOG))
    return [] if text is None else list(csv.DictReader(io.StringIO(text)))


def _write_rows(run_dir: str, rows: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    files.write_text(posixpath.join(run_dir, LOG), buffer.getvalue())


def trim_log(run_dir: str, epochs_done: int) -> None:
    """Drop rows of epochs the checkpoint does not hold (killed between the CSV and the checkpoint)."""
    rows = read_log(run_dir)
    kept = [r for r in rows if int(r["epoch"]) <= epochs_done]
    if len(kept) != len(rows):
        _write_rows(run_dir, kept)


def global_step(model) -> int:
    """Optimizer steps taken so far (the schedule's clock), under either backend."""
    return int(keras.ops.convert_to_numpy(checkpoint.inner_optimizer(model.optimizer).iterations))


class EpochEnd(keras.callbacks.Callback):
    """Logs the epoch, keeps the best model, checkpoints; also checkpoints mid-epoch on a timer."""

    def __init__(self, run_dir: str, stage: int, resolution: int, batch_size: int, schedule, state: dict,
                 checkpoint_minutes: float, first_batch: int = 0, plot: bool = True):
        super().__init__()
        self.run_dir, self.stage, self.resolution, self.batch_size = run_dir, stage, resolution, batch_size
        self.schedule, self.state, self.plot = schedule, state, plot
        self.interval = checkpoint_minutes * 60
        self.first_batch = first_batch  # batches already done in the first epoch (mid-epoch resume)
        self._last_save = time.monotonic()

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.monotonic()
        self._train_seconds = None
        self._batches = 0

    def on_train_batch_end(self, batch, logs=None):
        self._batches = batch + 1
        if self.interval > 0 and time.monotonic() - self._last_save > self.interval:
            done = self.first_batch + self._batches
            self._save({**self.state, "batch": done})

    def on_test_begin(self, logs=None):
        if self._train_seconds is None:
            self._train_seconds = time.monotonic() - self._start

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        seconds = time.monotonic() - self._start
        train_seconds = self._train_seconds or seconds
        step = global_step(self.model)
        row = {"epoch": epoch + 1, "stage": self.stage + 1, "resolution": self.resolution,
               "lr": f"{float(self.schedule(max(step - 1, 0))):.6g}",
               "images_per_sec": round(self._batches * self.batch_size / max(train_seconds, 1e-9), 1),
               "seconds": round(seconds, 1)}
        for key in ("loss", "accuracy", "top5", "val_loss", "val_accuracy", "val_top5"):
            value = logs.get(key)
            row[key] = "" if value is None else f"{float(value):.5f}"
        val = logs.get("val_accuracy")
        best = self.state.get("best_val_accuracy", -1.0)
        improved = val is not None and math.isfinite(float(val)) and float(val) > best
        self.first_batch = 0
        self.state = {**self.state, "epoch": epoch + 1, "batch": 0, "global_step": step}
        if improved:
            self.state["best_val_accuracy"] = float(val)
            self.state["best_epoch"] = epoch + 1
        _write_rows(self.run_dir, read_log(self.run_dir) + [row])
        self._save(self.state)
        if improved:  # after the checkpoint: best.keras never holds an epoch the checkpoint does not
            save_best(self.model, self.run_dir)
        if self.plot:
            plot_curves(self.run_dir)

    def _save(self, state):
        checkpoint.save(self.run_dir, self.model, state)
        self._last_save = time.monotonic()


def save_best(model, run_dir: str) -> None:
    """best.keras, replaced atomically. Keras writes .keras archives to local paths only: a local
    run directory gets the archive under a temporary name inside it; a remote one (gs://) through
    one fixed local file per run directory, which the next save overwrites even after a kill."""
    path = posixpath.join(run_dir, "best.keras")
    if not files.is_remote(run_dir):
        with files.replacing(path, temporary=posixpath.join(run_dir, "best.partial.keras")) as partial:
            model.save(partial)  # Keras insists on the .keras suffix
        return
    digest = hashlib.sha256(run_dir.encode()).hexdigest()[:12]
    local = posixpath.join(tempfile.gettempdir(), f"tin-best-{digest}.keras")
    try:
        model.save(local)
        with files.replacing(path) as partial:
            files.gfile().copy(local, partial, overwrite=True)
    finally:
        if os.path.exists(local):
            os.remove(local)


def plot_curves(run_dir: str) -> bool:
    """curves.png: loss and accuracy per epoch, train and val, with stage boundaries."""
    from common import plots

    rows = read_log(run_dir)
    plt = plots.pyplot("curves.png") if rows else None
    if plt is None:
        return False
    epochs = [int(r["epoch"]) for r in rows]

    def column(name):
        return [float(r[name]) if r.get(name) not in (None, "") else float("nan") for r in rows]

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.plot(epochs, column("loss"), label="train")
    left.plot(epochs, column("val_loss"), label="val")
    left.set_title("loss")
    right.plot(epochs, column("accuracy"), label="train top-1")
    right.plot(epochs, column("val_accuracy"), label="val top-1")
    right.plot(epochs, column("val_top5"), label="val top-5", linestyle="--")
    right.set_title("accuracy")
    for axis in (left, right):
        for previous, row in zip(rows, rows[1:]):
            if row["stage"] != previous["stage"]:
                axis.axvline(int(row["epoch"]) - 0.5, color="grey", linewidth=0.8, linestyle=":")
        axis.set_xlabel("epoch")
        axis.legend()
    plots.save(figure, posixpath.join(run_dir, "curves.png"), dpi=90)
    return True
