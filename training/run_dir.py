"""A run directory's layout and the training state it carries: the one place that spells them.

    best.keras            the best model so far (by val top-1), for tools.analyze
    checkpoint.npz        weights, optimizer variables and the state below, in one file
    state.json            a readable copy of the state
    config.json           the config in force
    config_changes.jsonl  settings changed at resumes, one JSON line per resume
    log.csv               one row per epoch
    curves.png            loss and accuracy per epoch
    final.json            the final evaluation
    run.lock              which process trains the run now
    model.py              a copy of the student's model file, when the model is one
    tensorboard/          TensorBoard logs, when tensorboard is installed
    analysis/             what tools.analyze writes
"""

from __future__ import annotations

import dataclasses
import math

from common import files


@dataclasses.dataclass(frozen=True)
class RunDir:
    path: str  # local, Drive or gs://

    def _file(self, name: str) -> str:
        return files.join(self.path, name)

    @property
    def best_model(self) -> str:
        return self._file("best.keras")

    @property
    def checkpoint(self) -> str:
        return self._file("checkpoint.npz")

    @property
    def state(self) -> str:
        return self._file("state.json")

    @property
    def config(self) -> str:
        return self._file("config.json")

    @property
    def config_changes(self) -> str:
        return self._file("config_changes.jsonl")

    @property
    def log(self) -> str:
        return self._file("log.csv")

    @property
    def curves(self) -> str:
        return self._file("curves.png")

    @property
    def final(self) -> str:
        return self._file("final.json")

    @property
    def lock(self) -> str:
        return self._file("run.lock")

    @property
    def tensorboard(self) -> str:
        return self._file("tensorboard")

    @property
    def model_file(self) -> str:
        """A copy of the student's model file (model = "file.py:function"), for resumes elsewhere."""
        return self._file("model.py")

    @property
    def analysis(self) -> str:
        return self._file("analysis")

    def rules_broken(self) -> list[str]:
        """The course rules its records say the model breaks (curves.png's title)."""
        return rules_broken(record(self.state), record(self.final))

    def worker(self, index: int) -> RunDir:
        """The folder of a non-chief worker (every worker saves: collectives need them all)."""
        return RunDir(self._file(f"worker-{index}"))

    def make(self) -> RunDir:
        files.gfile().makedirs(self.path)
        return self


def record(path: str) -> dict:
    """A JSON record of a run (state.json, final.json, config.json) as a dict; {} when it is missing
    or not an object (a run just started); a UserError naming it when it is not JSON."""
    data = files.read_json(path)
    return data if isinstance(data, dict) else {}


def rules_broken(state: dict, final: dict) -> list[str]:
    """The course rules a run's model breaks, as recorded: final.json's, else state.json's; []
    when none is recorded."""
    broken = final.get("rules_broken", state.get("rules_broken"))
    return [str(rule) for rule in broken or []]


@dataclasses.dataclass
class TrainingState:
    """Where a run stands; saved in every checkpoint, so it can never disagree with the weights."""

    fingerprint: str = ""  # of the settings a resume may not change (Config.fingerprint)
    config: dict | None = None  # the config it was trained with, for the resume's list of changes
    epoch: int = 0  # epochs done
    batch: int = 0  # batches done of the next epoch (a timer checkpoint mid-epoch)
    global_step: int = 0  # optimizer steps taken
    best_val_accuracy: float | None = None
    best_epoch: int | None = None
    parameters: int | None = None  # of the model trained
    rules_broken: list[str] = dataclasses.field(default_factory=list)  # empty unless an experiment
    records: dict[str, str] = dataclasses.field(default_factory=dict)  # resolution -> its conversion's fingerprint

    def to_dict(self) -> dict:
        """The record in the checkpoint and state.json; the best fields only once there is a best
        (as they always were: code reading them expects a number when they are present)."""
        return {key: value for key, value in dataclasses.asdict(self).items()
                if value is not None or key not in ("best_val_accuracy", "best_epoch")}

    @classmethod
    def from_dict(cls, data: dict) -> TrainingState:
        """From a checkpoint's record, which also holds the optimizer's bookkeeping (left out)."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})

    def improved_by(self, val_accuracy) -> bool:
        """Whether a validation accuracy beats the best so far (a NaN or a missing one never does)."""
        if val_accuracy is None or not math.isfinite(float(val_accuracy)):
            return False
        return self.best_val_accuracy is None or float(val_accuracy) > self.best_val_accuracy
