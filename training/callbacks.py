"""Single-purpose Keras callbacks for a run directory, in the manner of Keras's own `CSVLogger`,
`BackupAndRestore` and `ModelCheckpoint`; backend-neutral.

The trainer lists them in this order, which Keras keeps at the end of an epoch:
`InputWait` (adds input_wait to the logs) -> `EpochLog` (the CSV row) -> `Checkpoints` (the state
moves on, the checkpoint is written) -> `BestModel` (best.keras, only for an epoch the checkpoint
holds) -> `Curves`. A run killed between the CSV row and the checkpoint has a row for an epoch its
checkpoint does not hold; `resume.trim_log` removes such rows on resume, so every epoch appears exactly
once.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import io
import os
import tempfile
import time

import keras

from common import files
from training import checkpoint
from training.run_dir import RunDir, TrainingState

COLUMNS = ["epoch", "stage", "resolution", "lr", "loss", "accuracy", "top5", "val_loss", "val_accuracy",
           "val_top5", "images_per_sec", "input_wait", "seconds"]


def read_log(run: RunDir) -> list[dict]:
    text = files.read_text(run.log)
    return [] if text is None else list(csv.DictReader(io.StringIO(text)))


def write_log(run: RunDir, rows: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    files.write_text(run.log, buffer.getvalue())


class _TrainingClock(keras.callbacks.Callback):
    """An epoch's training seconds, the validation pass left out: for the speed and the input wait."""

    def on_epoch_begin(self, epoch, logs=None):
        self._start, self._train_seconds = time.monotonic(), None

    def on_test_begin(self, logs=None):
        if self._train_seconds is None:  # the first validation batch ends training
            self._train_seconds = time.monotonic() - self._start

    def train_seconds(self) -> float:
        """Seconds of training in this epoch (all of it so far when no validation has started)."""
        return self._train_seconds or time.monotonic() - self._start


class EpochLog(_TrainingClock):
    """One row of log.csv per epoch: stage, resolution, learning rate, metrics, training speed."""

    def __init__(self, run: RunDir, stage: int, resolution: int, batch_size: int, schedule):
        super().__init__()
        self.run, self.stage, self.resolution, self.batch_size, self.schedule = (
            run, stage, resolution, batch_size, schedule)

    def on_epoch_begin(self, epoch, logs=None):
        super().on_epoch_begin(epoch, logs)
        self._batches = 0

    def on_train_batch_end(self, batch, logs=None):
        self._batches = batch + 1

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        seconds = time.monotonic() - self._start
        step = checkpoint.global_step(self.model)
        row = {"epoch": epoch + 1, "stage": self.stage + 1, "resolution": self.resolution,
               "lr": f"{float(self.schedule(max(step - 1, 0))):.6g}",
               "images_per_sec": round(self._batches * self.batch_size / max(self.train_seconds(), 1e-9), 1),
               "seconds": round(seconds, 1)}
        for key in ("loss", "accuracy", "top5", "val_loss", "val_accuracy", "val_top5", "input_wait"):
            value = logs.get(key)
            row[key] = "" if value is None else f"{float(value):.5f}"
        write_log(self.run, read_log(self.run) + [row])


class Checkpoints(keras.callbacks.Callback):
    """Moves the training state on at the end of every epoch and checkpoints it with the weights;
    also checkpoints mid-epoch when `minutes` have passed since the last save (0: never).
    `save=False` (a JAX process other than 0): the state moves on, nothing is written."""

    def __init__(self, run: RunDir, state: TrainingState, minutes: float, first_batch: int = 0, save: bool = True):
        super().__init__()
        self.run, self.state, self.save = run, state, save
        self.interval = minutes * 60
        self.first_batch = first_batch  # batches already done in the first epoch (mid-epoch resume)
        self._last_save = time.monotonic()

    def on_epoch_begin(self, epoch, logs=None):
        self._batches = 0

    def on_train_batch_end(self, batch, logs=None):
        self._batches = batch + 1
        if self.interval > 0 and time.monotonic() - self._last_save > self.interval:
            # a copy: the shared state moves on only at the end of the epoch
            self._save(dataclasses.replace(self.state, batch=self.first_batch + self._batches))

    def on_epoch_end(self, epoch, logs=None):
        val = (logs or {}).get("val_accuracy")
        if self.state.improved_by(val):
            self.state.best_val_accuracy, self.state.best_epoch = float(val), epoch + 1
        self.first_batch = 0
        self.state.epoch, self.state.batch, self.state.global_step = epoch + 1, 0, checkpoint.global_step(self.model)
        self._save(self.state)

    def _save(self, state: TrainingState):
        if self.save:
            checkpoint.save(self.run, self.model, state)
        self._last_save = time.monotonic()


class BestModel(keras.callbacks.Callback):
    """best.keras after an epoch that set a new best (listed after `Checkpoints`, which records it):
    best.keras never holds an epoch the checkpoint does not."""

    def __init__(self, run: RunDir, state: TrainingState):
        super().__init__()
        self.run, self.state = run, state

    def on_epoch_end(self, epoch, logs=None):
        if self.state.best_epoch == epoch + 1:
            save_model(self.model, self.run.best_model)


class Curves(keras.callbacks.Callback):
    """curves.png redrawn after every epoch (skipped without matplotlib)."""

    def __init__(self, run: RunDir):
        super().__init__()
        self.run = run

    def on_epoch_end(self, epoch, logs=None):
        from training.curves import plot_curves

        plot_curves(read_log(self.run), self.run.curves)


@contextlib.contextmanager
def _without_distribution():
    """Keras's saving builds a throwaway optimizer to learn its attributes; under JAX over several
    processes a variable created with the distribution's layout is a collective (every process must
    create it), which one process saving alone would wait for forever. Outside the distribution it
    is an ordinary local array; the saved values are the replicated weights either way."""
    current = keras.distribution.distribution()
    if current is None:
        yield
        return
    keras.distribution.set_distribution(None)
    try:
        yield
    finally:
        keras.distribution.set_distribution(current)


class TensorBoard(keras.callbacks.TensorBoard):
    """Keras's TensorBoard logging per epoch, the learning rate taken from the schedule on the host.
    Keras evaluates the schedule on the optimizer's step counter, a computation on a global array:
    under JAX over several processes only process 0 (the one that writes) would run it."""

    def __init__(self, log_dir: str, schedule):
        super().__init__(log_dir, write_graph=False, update_freq="epoch")
        self.schedule = schedule

    def _collect_learning_rate(self, logs):  # Keras 3's hook for the learning-rate scalar
        logs = dict(logs or {})
        logs["learning_rate"] = float(self.schedule(max(checkpoint.global_step(self.model) - 1, 0)))
        return logs


def save_model(model, path: str) -> None:
    """A .keras archive, replaced atomically. Keras writes .keras archives to local paths only: a
    local path gets it under a temporary name beside it; a remote one (gs://) through one fixed
    local file per destination, which the next save overwrites even after a kill."""
    if not files.is_remote(path):
        with files.replacing(path, temporary=path[:-len(".keras")] + ".partial.keras") as partial:
            with _without_distribution():
                model.save(partial)  # Keras insists on the .keras suffix
        return
    digest = hashlib.sha256(path.encode()).hexdigest()[:12]
    local = os.path.join(tempfile.gettempdir(), f"tin-model-{digest}.keras")
    try:
        with _without_distribution():
            model.save(local)
        with files.replacing(path) as partial:
            files.gfile().copy(local, partial, overwrite=True)
    finally:
        if os.path.exists(local):
            os.remove(local)


class InputWait(_TrainingClock):
    """`input_wait` in the epoch's logs (log.csv, TensorBoard, the epoch line): the share of the
    epoch's training time spent waiting for the next batch (pipeline/wait_meter.py), 0..1. Above
    `advice_above`, says once what to do about it. Listed before the callbacks that read the logs."""

    ADVICE = ("the accelerator waited for input {share:.0%} of epoch {epoch}'s training time: try "
              "augment.on = \"device\" (augment on the accelerator), runtime.cache = \"true\", a lighter "
              "augment.policy, or a runtime with more host CPU cores (`python -m tools.benchmark --model ...` "
              "compares the two rates)")

    def __init__(self, meter, log=print, advice_above: float = 0.1):
        super().__init__()
        self.meter, self.log, self.advice_above, self._advised = meter, log, advice_above, False

    def on_epoch_begin(self, epoch, logs=None):
        super().on_epoch_begin(epoch, logs)
        self.meter.reset()

    def on_epoch_end(self, epoch, logs=None):
        share = min(1.0, self.meter.seconds / max(self.train_seconds(), 1e-9))
        if logs is not None:
            logs["input_wait"] = share
        if share > self.advice_above and not self._advised:
            self._advised = True
            self.log(self.ADVICE.format(share=share, epoch=epoch + 1))
