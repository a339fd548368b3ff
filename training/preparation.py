"""A run prepared in one step every process takes together: the data folders opened and checked,
the plan of its stages, the run directory locked and its checkpoint read, and every process's
checkpoint position compared, in one collective (`Runtime.together`). The trainer is handed
what was found (`Prepared`) and builds, fits and evaluates.

One step, so that a process that cannot start (no records, the run directory in use, another
checkpoint) stops every process with it at once, and so that the lock a process took is released
when another one fails (`Prepared.release`, the `undo` of the collective).
"""

from __future__ import annotations

import dataclasses

from common.errors import UserError
from pipeline import dataset
from pipeline.data_folder import DataFolder, differing_classes
from training import resume
from training.config import Config
from training.run_dir import RunDir, TrainingState
from training.run_lock import RunLock
from training.strategy import Runtime

# How each compared value is set, for the line that names the one that differs between processes.
POSITION = {"epoch": "the checkpoint in --run-dir (use one folder every host sees: gs:// or a shared file system)",
            "batch": "the checkpoint in --run-dir"}


@dataclasses.dataclass(frozen=True)
class StagePlan:
    index: int
    folder: DataFolder
    batch_size: int
    first_epoch: int
    epochs: int
    steps_per_epoch: int  # global: every worker runs this many steps
    first_step: int

    @property
    def resolution(self) -> int:
        return self.folder.resolution

    @property
    def last_epoch(self) -> int:
        return self.first_epoch + self.epochs


def plan(config: Config, folders: dict[int, DataFolder]) -> list[StagePlan]:
    """Stage boundaries in epochs and steps, from the pipeline's count of training steps."""
    stages, epoch, step = [], 0, 0
    for index, stage in enumerate(config.stages):
        folder = folders[stage.resolution]
        try:
            steps = dataset.training_steps(folder, stage.batch_size, config.classes or None)
        except UserError as error:  # the pipeline's own check, told which stage of which config
            raise UserError(f"{config.source}: stages[{index}].batch_size = {stage.batch_size}: {error}") from None
        if config.runtime.steps_per_epoch:  # a quick check: a few steps of every stage
            steps = min(steps, config.runtime.steps_per_epoch)
        stages.append(StagePlan(index, folder, stage.batch_size, epoch, stage.epochs, steps, step))
        epoch += stage.epochs
        step += stage.epochs * steps
    return stages


@dataclasses.dataclass
class Prepared:
    """What the preparation found: every folder the run reads (its manifest loaded and checked),
    the stages' plan, the run directory's lock (held by the process that writes it; None in the
    others) and its checkpoint's state with the accepted config changes (`resume.check`)."""

    folders: dict[int, DataFolder]
    stages: list[StagePlan]
    num_classes: int
    lock: RunLock | None
    saved: TrainingState | None
    changes: dict

    def position(self) -> dict[str, int]:
        """Where the checkpoint says training goes on: the same in every process, or none trains."""
        return {"epoch": self.saved.epoch if self.saved else -1, "batch": self.saved.batch if self.saved else -1}

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None


def open_folders(config: Config, data_dir: str) -> dict[int, DataFolder]:
    """Every resolution the run reads, with one class list between them."""
    folders = {r: DataFolder.open(data_dir, r) for r in config.resolutions}
    different = differing_classes(list(folders.values()))
    if different:
        raise UserError(different)
    return folders


def prepare(config: Config, data_dir: str, run: RunDir, runtime: Runtime) -> Prepared:
    """The one preparation step, in every process together (see the module's docstring)."""
    writes = runtime.writes_run_dir

    def step() -> Prepared:
        folders = open_folders(config, data_dir)
        stages = plan(config, folders)
        num_classes = len(stages[-1].folder.subset(config.classes or None).keep)
        # One train.py per run directory: the process that writes it holds the lock for all.
        lock = RunLock(run.make().path).acquire() if writes else None
        try:
            saved, changes = resume.check(run, config, make=writes)
        except BaseException:
            if lock is not None:
                lock.release()
            raise
        return Prepared(folders, stages, num_classes, lock, saved, changes)

    # Compared before the checkpoint is loaded: loading is a collective too.
    return runtime.together(step, "preparing the run (--data, --run-dir)", POSITION, Prepared.position,
                            Prepared.release)
