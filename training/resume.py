"""Resume, in one place: what a resume may change, the state taken back from the checkpoint, the
repairs a kill can make necessary (best.keras, the log), and the record of what changed.

The trainer asks twice: `check` before the model is built (may this run directory be resumed with
this config?), `continue_from` after (the state to train on, everything else made to agree with
it). The checkpoint's own format is training/checkpoint.py; the log's, training/callbacks.py.

A run directory's checkpoint carries the config it was trained with. A resume with settings the
checkpoint depends on changed (model, stages, schedule, seed, classes, optimizer) is refused;
any other change (augmentation, label smoothing, weight decay, runtime) is shown, appended to
config_changes.jsonl and config.json then holds the config in force.
"""

from __future__ import annotations

import json
import time

from common import files
from common.errors import UserError
from training import checkpoint
from training import config as configs
from training.config import Config
from training.run_dir import RunDir, TrainingState


def check(run: RunDir, config: Config, make: bool = True) -> tuple[TrainingState | None, dict]:
    """The checkpoint's state (None for a new run) and the accepted changes {key: (old, new)},
    after refusing a resume whose config changes what the checkpoint depends on. `make`: create
    the run directory (not by a process that only reads it)."""
    if make:
        run.make()
    state = checkpoint.read_state(run)
    if state is None:
        _refuse_a_lost_checkpoint(run)
        return None, {}
    # The checkpoint carries the config it was trained with; config.json is the fallback for
    # checkpoints written before it did.
    saved = state.config or files.read_json(run.config)
    current = config.to_dict()
    changes = configs.differences(configs.with_defaults(saved, current), current) if saved is not None else {}
    fixed = configs.fixed_on_resume(changes)
    if fixed or state.fingerprint != config.fingerprint():
        detail = f" ({fixed[0]}: {changes[fixed[0]][0]!r} -> {changes[fixed[0]][1]!r})" if fixed else ""
        raise UserError(f"{run.path}: holds a run with another model, stages, schedule, seed, classes or "
                        f"optimizer{detail}; use a new --run-dir (or the original config to resume)")
    return state, changes


def _refuse_a_lost_checkpoint(run: RunDir) -> None:
    """No checkpoint, yet state.json says epochs were done: the checkpoint was deleted or lost.
    Starting again from epoch 1 would silently overwrite the run's log and best model."""
    written = files.read_json(run.state)
    done = written.get("epoch") if isinstance(written, dict) else None
    if isinstance(done, int) and done > 0:
        raise UserError(f"{run.checkpoint}: missing, but {run.state} says {done} epoch{'s' if done > 1 else ''} "
                        f"{'were' if done > 1 else 'was'} done; put the "
                        f"checkpoint back to resume, or use a new --run-dir (delete state.json to start this one "
                        f"again from epoch 1)")


def restore_best_model(run: RunDir, model, state: TrainingState, total_epochs: int, log=print) -> None:
    """best.keras as the checkpoint says it is, after a kill or a full disk while it was written.

    The checkpoint records a new best before best.keras is written (callbacks.BestModel), so a
    run stopped in between holds the best epoch's weights in its checkpoint only: when the best
    epoch is the checkpoint's own (and no batch of the next was taken) and best.keras is missing,
    older than the checkpoint or of unknown age (a file system without modification times),
    best.keras is written again from the restored weights. A best.keras lost for an earlier epoch
    cannot be rebuilt: the best is then counted again from the next epoch on, so that best.keras
    and the recorded best agree; with no epoch left to train, the record stays and the loss is said."""
    from training import callbacks

    if state.best_epoch is None:
        return
    exists = files.gfile().exists(run.best_model)
    if state.best_epoch == state.epoch and state.batch == 0:
        written = _modified(run.best_model) if exists else 0
        if not written or written < _modified(run.checkpoint):
            log(f"{run.best_model}: written again from the checkpoint (epoch {state.epoch}, the best so far)")
            callbacks.save_model(model, run.best_model)
        return
    if exists:
        return
    if state.epoch >= total_epochs:
        log(f"{run.best_model}: missing (the weights of epoch {state.best_epoch}, the best, are gone) and no epoch "
            f"is left to train: it cannot be rebuilt; the final evaluation uses the last weights")
        return
    log(f"{run.best_model}: missing (the weights of epoch {state.best_epoch}, the best so far, are gone); "
        f"the best model is chosen again from epoch {state.epoch + 1} on")
    state.best_val_accuracy = state.best_epoch = None


def _modified(path: str) -> int:
    return files.gfile().stat(path).mtime_nsec


def keep_model_file(run: RunDir, model) -> None:
    """A student's model file is copied into the run directory, so that a resume started from
    another folder (a new Colab runtime) still finds the network it trained."""
    import os

    from model import custom

    if custom.kind_of(model) == "file":
        path = custom.FileModel.parse(model).path
        if os.path.exists(path):
            with open(path) as handle:
                files.write_text(run.model_file, handle.read())


def record(run: RunDir, config: Config, changes: dict, at_epoch: int, log=print) -> None:
    """Print and keep every accepted change; write config.json (only once the resume works)."""
    if changes:
        for key, (old, new) in changes.items():
            log(f"resume: {key} changed from {old!r} to {new!r}")
        entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "at_epoch": at_epoch,
                 "changes": {k: list(v) for k, v in changes.items()}}
        files.write_text(run.config_changes, (files.read_text(run.config_changes) or "") + json.dumps(entry) + "\n")
    files.write_json(run.config, config.to_dict())


def trim_log(run: RunDir, epochs_done: int) -> None:
    """Drop rows of epochs the checkpoint does not hold (a run killed between the CSV row and the
    checkpoint, even before its first checkpoint): every epoch appears exactly once."""
    from training import callbacks

    rows = callbacks.read_log(run)
    kept = [r for r in rows if int(r["epoch"]) <= epochs_done]
    if len(kept) != len(rows):
        callbacks.write_log(run, kept)


def continue_from(run: RunDir, model, config: Config, saved: TrainingState | None, changes: dict, writes: bool,
                  log=print) -> TrainingState:
    """The state to train on (`saved`, from `check`; None: a new run), with the checkpoint's
    weights and optimizer in `model`, best.keras and the log made to agree with the checkpoint,
    and the accepted changes recorded. `writes`: False for a process that only reads the run
    directory (JAX processes other than 0)."""
    if saved is not None:
        state = checkpoint.restore(run, model)
        state.config = config.to_dict()
    else:
        state = TrainingState(config.fingerprint(), config.to_dict())
    if writes:
        if saved is not None:
            restore_best_model(run, model, state, config.total_epochs, log)
        done = saved.epoch if saved is not None else 0
        record(run, config, changes, done, log)
        keep_model_file(run, config.model)
        trim_log(run, done)
    if saved is not None:
        log(f"resuming {run.path}: {state.epoch} epochs done"
            + (f" and {state.batch} batches of the next" if state.batch else "")
            + f", global step {checkpoint.global_step(model)}")
    return state
