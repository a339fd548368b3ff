"""What a resume may change, and the record of what it did change.

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
