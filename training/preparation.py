"""A run prepared in one step every process takes together: the records staged to local disk
(`--stage-data`), the data folders opened and checked, every split the run reads asked of them
once (`DataFolder.split`: class subset, counts, shards), the plan of its stages, the run directory
locked and its checkpoint read; and, in the same collective (`Runtime.together`), what every
process must share compared: the command line's (`expected`: the config, the process count) and
the checkpoint position. The trainer is handed what was found (`Prepared`) and builds, fits and
evaluates; whoever prepared releases (`with prepare(...) as prepared:`).

One step, so that a process that cannot start (no records, the run directory in use, another
checkpoint) stops every process with it at once, and so that the lock a process took is released
when another one fails (`Prepared.release`, the `undo` of the collective). The price: processes
started with different command lines are told so after the step, --stage-data's copy included,
rather than before it (a second collective before the step would cost every run a round-trip).
"""

from __future__ import annotations

import dataclasses

from common.errors import UserError
from pipeline import data_folder, dataset
from pipeline.data_folder import DataFolder, Split
from training import resume
from training.config import Config
from training.run_dir import RunDir, TrainingState
from training.run_lock import RunLock
from training.runtime import Runtime

# How each compared value is set, for the line that names the one that differs between processes.
POSITION = {"epoch": "the checkpoint in --run-dir (use one folder every host sees: gs:// or a shared file system)",
            "batch": "the checkpoint in --run-dir"}


@dataclasses.dataclass(frozen=True)
class StagePlan:
    """One stage of a run: the splits it reads, its batch, its epochs and steps, and whether its
    training records are kept in RAM (`runtime.cache`; "auto": when the split fits)."""

    index: int
    train: Split
    val: Split
    cache: bool
    batch_size: int
    first_epoch: int
    epochs: int
    steps_per_epoch: int  # global: every worker runs this many steps
    first_step: int

    @property
    def resolution(self) -> int:
        return self.train.resolution

    @property
    def last_epoch(self) -> int:
        return self.first_epoch + self.epochs


def splits_read(config: Config, folders: dict[int, DataFolder]) -> dict[tuple[int, str], Split]:
    """Every split the run reads, asked of its folder once: each stage's train and val, and val at
    the final evaluation's resolution; a missing split, class or shard is named before epoch 1."""
    wanted = {(s.resolution, name) for s in config.stages for name in ("train", "val")}
    wanted.add((config.evaluation_resolution, "val"))
    try:
        return {(resolution, name): folders[resolution].split(name, config.classes or None)
                for resolution, name in sorted(wanted)}
    except UserError as error:  # the folder's own check, told which config asked
        raise UserError(f"{config.source}: {error}") from None


def plan(config: Config, splits: dict[tuple[int, str], Split]) -> list[StagePlan]:
    """Stage boundaries in epochs and steps, from the pipeline's count of training steps."""
    stages, epoch, step = [], 0, 0
    for index, stage in enumerate(config.stages):
        train = splits[stage.resolution, "train"]
        try:
            steps = dataset.training_steps(train, stage.batch_size)
        except UserError as error:  # the pipeline's own check, told which stage of which config
            raise UserError(f"{config.source}: stages[{index}].batch_size = {stage.batch_size}: {error}") from None
        if config.runtime.steps_per_epoch:  # a quick check: a few steps of every stage
            steps = min(steps, config.runtime.steps_per_epoch)
        cache = {"auto": train.fits_in_ram, "true": True, "false": False}[config.runtime.cache]
        stages.append(StagePlan(index, train, splits[stage.resolution, "val"], cache, stage.batch_size, epoch,
                                stage.epochs, steps, step))
        epoch += stage.epochs
        step += stage.epochs * steps
    return stages


@dataclasses.dataclass
class Prepared:
    """What the preparation found: the fingerprint of every folder the run reads,
    the stages' plan (with the splits each reads), the split of the final evaluation, the run
    directory's lock (held by the process that writes it; None in the
    others) and its checkpoint's state with the accepted config changes (`resume.check`)."""

    run: RunDir  # where this process reads and writes (a TensorFlow worker other than the chief: its own folder)
    records: dict[str, str]  # resolution -> the records' fingerprint (a conversion's identity)
    stages: list[StagePlan]
    final: Split  # val at the final evaluation's resolution
    lock: RunLock | None
    saved: TrainingState | None
    changes: dict

    @property
    def num_classes(self) -> int:
        """Labels the model outputs: the classes every split of the run keeps (one class list)."""
        return len(self.final.keep)

    def position(self) -> dict[str, int]:
        """Where the checkpoint says training goes on: the same in every process, or none trains."""
        return {"epoch": self.saved.epoch if self.saved else -1, "batch": self.saved.batch if self.saved else -1}

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def __enter__(self) -> Prepared:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def run_dir_of(run_dir: str, runtime: Runtime) -> RunDir:
    """The run directory this process uses: every TensorFlow worker saves (collectives need them
    all), the others into a folder of their own."""
    run = RunDir(run_dir)
    return run.worker(runtime.worker_index) if runtime.kind == "multiworker" and not runtime.is_chief else run


def prepare(config: Config, data_dir: str, run_dir: str, runtime: Runtime, stage_to: str | None = None,
            expected: tuple[dict, dict] | None = None, log=print) -> Prepared:
    """The one preparation step, in every process together (see the module's docstring).
    `expected`: ({key: value}, {key: how it is set}) every process must hold the same of."""
    from training.staging import stage

    run, writes = run_dir_of(run_dir, runtime), runtime.writes_run_dir
    known, names = expected or ({}, {})

    def step() -> Prepared:
        for index, stage_config in enumerate(config.stages):
            if stage_config.batch_size % runtime.replicas:
                raise UserError(f"{config.source}: stages[{index}].batch_size = {stage_config.batch_size} does not "
                                f"divide evenly over {runtime.replicas} replicas; use a multiple of {runtime.replicas}")
        data = stage(data_dir, stage_to, config.resolutions, log=log) if stage_to else data_dir
        folders = data_folder.open_all(data, config.resolutions)
        splits = splits_read(config, folders)
        stages = plan(config, splits)
        final = splits[config.evaluation_resolution, "val"]
        # One train.py per run directory: the process that writes it holds the lock for all.
        lock = RunLock(run.make().path).acquire() if writes else None
        try:
            saved, changes = resume.check(run, config, make=writes)
        except BaseException:
            if lock is not None:
                lock.release()
            raise
        records = {str(r): str(folder.manifest.get("fingerprint", "")) for r, folder in folders.items()}
        return Prepared(run, records, stages, final, lock, saved, changes)

    # The checkpoint position is compared before the checkpoint is loaded: loading is a collective too.
    what = "preparing the run (" + ("--stage-data, " if stage_to else "") + "--data, --run-dir)"
    return runtime.together(step, what, {**names, **POSITION}, Prepared.position, Prepared.release, known)
