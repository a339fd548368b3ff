"""Run configuration: a TOML file (stdlib tomllib) plus `--set key=value` overrides, validated.

Every mistake is answered with one line naming the file and the key: an unknown key (a typo
would otherwise be ignored silently for a 500-epoch run), a wrong type, an impossible value,
more than 500 epochs in total.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import tomllib
import typing

from common.errors import UserError

MAX_EPOCHS = 500
MIN_AUGMENTATIONS = 10


@dataclasses.dataclass
class Stage:
    resolution: int
    epochs: int
    batch_size: int


@dataclasses.dataclass
class Optimizer:
    name: str = "sgd"  # sgd | adam | adamw
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4  # decoupled (AdamW-style) for adamw and sgd
    clipnorm: float = 0.0


@dataclasses.dataclass
class Schedule:
    mode: str = "triangular"  # triangular | triangular2 | exp_range
    base_lr: float = 0.01
    max_lr: float = 0.1
    step_size_epochs: float = 4.0  # half a cycle, in epochs (Smith: 2-10 epochs)
    gamma: float = 1.0  # exp_range: decay per epoch


@dataclasses.dataclass
class Augment:
    policy: typing.Any = "default"  # "default", "none", "flip, rotate:p=0.5" or a list of tables
    on: str = "host"  # host | device (inside the compiled train step; TensorFlow backend only)
    hard_examples: str = ""  # a file written by tools.analyze
    hard_fraction: float = 0.0
    # `policy` parsed once by `validate` (pipeline.policy.Augmentation entries): what the pipeline and the
    # train step run. Derived, so not a key of the file and not in config.json (`to_dict`).
    steps: tuple = dataclasses.field(default=(), init=False, repr=False, compare=False)


@dataclasses.dataclass
class RuntimeSettings:
    mixed_precision: str = "auto"  # auto | float32 | mixed_float16 | mixed_bfloat16
    steps_per_execution: int = 0  # 0: auto (32 on TPU, 1 elsewhere)
    jit_compile: str = "auto"  # auto | true | false
    checkpoint_minutes: float = 20.0  # also save mid-epoch when an epoch runs longer than this
    cache: str = "auto"  # auto (decoded train split in RAM when it takes <= 1/4 of it) | true | false
    deterministic: bool = False  # op determinism: reproducible to the last bit, slower
    steps_per_epoch: int = 0  # 0: whole epochs; N: at most N steps an epoch (a quick check, not a result)
    val_steps: int = 0  # 0: the whole val split; N: the batches of its first N steps, in every evaluation (a quick
    # check, not a result; under several JAX processes N batches of each process's share)


@dataclasses.dataclass
class Config:
    # a preset name, a table describing a ResNet, or "path/to/file.py:function" (model/custom.py)
    model: typing.Any = "resnet18"
    # "enforce": a model or run that breaks a course rule is refused before training; "experiment":
    # it trains anyway, marked as an experiment, with every broken rule listed (rules_broken)
    rules: str = "enforce"
    stages: list[Stage] = dataclasses.field(default_factory=list)
    optimizer: Optimizer = dataclasses.field(default_factory=Optimizer)
    schedule: Schedule = dataclasses.field(default_factory=Schedule)
    augment: Augment = dataclasses.field(default_factory=Augment)
    runtime: RuntimeSettings = dataclasses.field(default_factory=RuntimeSettings)
    label_smoothing: float = 0.1
    classes: int = 0  # 0: every class in the records; N: the first N
    seed: int = 0
    final_resolution: int = 0  # 0: the largest stage resolution
    source: str = ""  # where it was read from, for messages

    @property
    def total_epochs(self) -> int:
        return sum(s.epochs for s in self.stages)

    @property
    def evaluation_resolution(self) -> int:
        """Where the final evaluation runs: final_resolution, or the largest stage's."""
        return self.final_resolution or max(s.resolution for s in self.stages)

    @property
    def resolutions(self) -> list[int]:
        """Every resolution a run reads: each stage's and the final evaluation's."""
        return sorted({s.resolution for s in self.stages} | {self.evaluation_resolution})

    def fingerprint(self) -> str:
        """What must not change when a run resumes (stages, model, schedule, seed)."""
        keep = {"model": self.model, "stages": [dataclasses.asdict(s) for s in self.stages],
                "schedule": dataclasses.asdict(self.schedule), "seed": self.seed, "classes": self.classes}
        return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:12]

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data.pop("source")
        data["augment"].pop("steps")  # derived from augment.policy, which is kept as written
        return data


# Settings a resumed run must keep: the checkpoint's weights, optimizer slots, place in the
# schedule and data order belong to them. Anything else (augmentation, label smoothing, weight
# decay, runtime) may change between sessions; the change is shown and kept in the run directory.
# runtime.steps_per_epoch sets where the epochs and stages begin in steps, so it stays too, and
# runtime.val_steps what the best epoch's val accuracy (best.keras) was measured on.
FIXED_ON_RESUME = ("model", "stages", "schedule", "seed", "classes", "optimizer.name", "runtime.steps_per_epoch",
                   "runtime.val_steps")


def differences(old: dict, new: dict, prefix: str = "") -> dict[str, tuple]:
    """{dotted key: (old value, new value)} for every setting that differs (lists compared whole)."""
    changed = {}
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        name = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            changed.update(differences(a, b, name + "."))
        elif a != b:
            changed[name] = (a, b)
    return changed


def with_defaults(saved: dict, current: dict) -> dict:
    """`saved` (a run's config) with the keys it lacks taken from `current`'s defaults: a setting
    added since the run began (runtime.steps_per_epoch) compares as its default, the behaviour the
    run had, instead of as a change a resume may not make."""
    defaults = Config(stages=[]).to_dict()
    filled = dict(saved)
    for key, value in current.items():
        if key not in filled and key in defaults:
            filled[key] = defaults[key]
        elif isinstance(value, dict) and isinstance(filled.get(key), dict) and isinstance(defaults.get(key), dict):
            section = dict(filled[key])
            for inner in value:
                if inner not in section and inner in defaults[key]:
                    section[inner] = defaults[key][inner]
            filled[key] = section
    return filled


def fixed_on_resume(changed: dict) -> list[str]:
    """The keys of `changed` that a resume may not change."""
    return [k for k in changed if any(k == f or k.startswith(f + ".") for f in FIXED_ON_RESUME)]


def _fill(cls, data: dict, where: str):
    """Build dataclass `cls` from `data`, refusing unknown keys and wrong types."""
    if not isinstance(data, dict):
        raise UserError(f"{where}: expected a table, got {data!r}".lstrip(": "))
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # derived fields are no keys
    unknown = sorted(set(data) - set(fields) - {"source"})
    if unknown:
        known = ", ".join(k for k in fields if k != "source")
        raise UserError(f"{where}: unknown key {unknown[0]!r} (known: {known})".lstrip(": "))
    hints = typing.get_type_hints(cls)
    values = {}
    for name, value in data.items():
        hint = hints[name]
        key = f"{where}.{name}" if where else name
        if dataclasses.is_dataclass(hint):
            values[name] = _fill(hint, value, key)
        elif name == "stages":
            if not isinstance(value, list):
                raise UserError(f"{key}: expected a list of [[stages]] tables")
            values[name] = [_fill(Stage, s, f"{key}[{i}]") for i, s in enumerate(value)]
        elif hint is float and isinstance(value, int) and not isinstance(value, bool):
            values[name] = float(value)
        elif hint is str and isinstance(value, bool):  # cache = true reads as naturally as "true"
            values[name] = str(value).lower()
        elif hint in (int, float, str, bool) and type(value) is not hint:
            raise UserError(f"{key}: expected {hint.__name__}, got {value!r}")
        else:
            values[name] = value
    return cls(**values)


def _parse_value(text: str):
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text  # a bare word: a string


def apply_override(data: dict, assignment: str) -> None:
    """`optimizer.weight_decay=1e-4`, `stages.0.epochs=3`, `model=resnet34`: change `data` in place."""
    if "=" not in assignment:
        raise UserError(f"--set {assignment!r}: expected key=value")
    path, _, text = assignment.partition("=")
    keys = path.strip().split(".")
    target = data
    for depth, key in enumerate(keys[:-1]):
        if isinstance(target, list):
            if not key.isdigit() or int(key) >= len(target):
                raise UserError(f"--set {assignment!r}: no item {key} in {path}")
            target = target[int(key)]
        elif isinstance(target, dict):
            target = target.setdefault(key, {})
        if not isinstance(target, (dict, list)):
            where = ".".join(keys[:depth + 1])
            raise UserError(f"--set {assignment!r}: {where} is a single value ({target!r}), not a table")
    last = keys[-1]
    if isinstance(target, list):
        if not last.isdigit() or int(last) >= len(target):
            raise UserError(f"--set {assignment!r}: no item {last}")
        target[int(last)] = _parse_value(text.strip())
    else:
        target[last] = _parse_value(text.strip())


def _numbers(data, prefix: str = ""):
    """(dotted key, value) of every float in a config dict (nan and inf are refused)."""
    items = data.items() if isinstance(data, dict) else enumerate(data)
    for key, value in items:
        name = f"{prefix}{key}"
        if isinstance(value, (dict, list)):
            yield from _numbers(value, name + ".")
        elif isinstance(value, float):
            yield name, value


def read(path: str | None, overrides: list[str] = ()) -> Config:
    data: dict = {}
    where = path or "--set"
    if path:
        try:
            with open(path, "rb") as handle:
                data = tomllib.load(handle)
        except FileNotFoundError:
            raise UserError(f"{path}: config file not found") from None
        except tomllib.TOMLDecodeError as error:
            raise UserError(f"{path}: not valid TOML ({error})") from None
    for assignment in overrides:
        apply_override(data, assignment)
    try:
        config = _fill(Config, data, "")
    except UserError as error:
        raise UserError(f"{where}: {error}") from None
    config.source = where
    validate(config)
    return config


def validate(config: Config) -> None:
    """Values that cannot work, and the course's run rules (500 epochs at most)."""
    where = config.source
    if not config.stages:
        raise UserError(f"{where}: no [[stages]]; add at least one (resolution, epochs, batch_size)")
    for i, stage in enumerate(config.stages):
        if stage.resolution < 8 or stage.epochs < 1 or stage.batch_size < 1:
            raise UserError(f"{where}: stages[{i}] needs resolution >= 8, epochs >= 1, batch_size >= 1")
    if config.rules not in ("enforce", "experiment"):
        raise UserError(f"{where}: rules={config.rules!r}: expected enforce or experiment")
    enforce = config.rules == "enforce"
    if enforce and config.total_epochs > MAX_EPOCHS:
        raise UserError(f"{where}: {config.total_epochs} epochs in total breaks the course rule of at most "
                        f"{MAX_EPOCHS} epochs")
    _check_model(config.model, where)
    if config.optimizer.name not in ("sgd", "adam", "adamw"):
        raise UserError(f"{where}: optimizer.name={config.optimizer.name!r}: expected sgd, adam or adamw")
    if config.schedule.mode not in ("triangular", "triangular2", "exp_range"):
        raise UserError(f"{where}: schedule.mode={config.schedule.mode!r}: expected triangular, triangular2 "
                        "or exp_range")
    for key, value in _numbers(config.to_dict()):
        if not math.isfinite(value):
            raise UserError(f"{where}: {key} = {value}: must be a finite number")
    if not 0 < config.schedule.base_lr <= config.schedule.max_lr:
        raise UserError(f"{where}: need 0 < schedule.base_lr <= schedule.max_lr")
    if config.schedule.step_size_epochs <= 0:
        raise UserError(f"{where}: schedule.step_size_epochs must be positive")
    if not 0 < config.schedule.gamma <= 1:
        raise UserError(f"{where}: schedule.gamma = {config.schedule.gamma}: must be in (0, 1] (exp_range multiplies "
                        "the amplitude by gamma every epoch: above 1 the learning rate grows without bound)")
    if not 0 <= config.optimizer.momentum < 1:
        raise UserError(f"{where}: optimizer.momentum = {config.optimizer.momentum}: must be in [0, 1)")
    if config.optimizer.weight_decay < 0 or config.optimizer.clipnorm < 0:
        raise UserError(f"{where}: optimizer.weight_decay and optimizer.clipnorm must not be negative")
    if config.runtime.steps_per_execution < 0:
        raise UserError(f"{where}: runtime.steps_per_execution = {config.runtime.steps_per_execution}: must be 0 "
                        "(auto) or a positive number of steps")
    if config.runtime.steps_per_epoch < 0:
        raise UserError(f"{where}: runtime.steps_per_epoch = {config.runtime.steps_per_epoch}: must be 0 (whole "
                        "epochs) or a positive number of steps")
    if config.runtime.val_steps < 0:
        raise UserError(f"{where}: runtime.val_steps = {config.runtime.val_steps}: must be 0 (the whole val "
                        "split) or a positive number of batches")
    if config.runtime.checkpoint_minutes < 0:
        raise UserError(f"{where}: runtime.checkpoint_minutes must not be negative (0: every epoch only)")
    if not 0 <= config.augment.hard_fraction < 1:
        raise UserError(f"{where}: augment.hard_fraction = {config.augment.hard_fraction}: must be in [0, 1)")
    if not 0 <= config.seed < 2**32:
        raise UserError(f"{where}: seed = {config.seed}: must be in [0, 2**32) (numpy and TensorFlow's seeds)")
    if config.classes < 0 or config.final_resolution < 0:
        raise UserError(f"{where}: classes and final_resolution must not be negative (0: all, the largest stage)")
    if config.augment.on not in ("host", "device"):
        raise UserError(f"{where}: augment.on={config.augment.on!r}: expected host or device")
    if config.runtime.mixed_precision not in ("auto", "float32", "mixed_float16", "mixed_bfloat16"):
        raise UserError(f"{where}: runtime.mixed_precision={config.runtime.mixed_precision!r}")
    if config.runtime.cache not in ("auto", "true", "false") or config.runtime.jit_compile not in (
            "auto", "true", "false"):
        raise UserError(f"{where}: runtime.cache and runtime.jit_compile take auto, true or false (as strings)")
    if not 0 <= config.label_smoothing < 1:
        raise UserError(f"{where}: label_smoothing must be in [0, 1)")
    from pipeline import policy  # pure Python: no TensorFlow

    try:
        steps = policy.parse(config.augment.policy)
    except UserError as error:
        raise UserError(f"{where}: augment.policy: {str(error).split(': ', 1)[-1]}") from None
    if enforce and len({s.name for s in steps}) < MIN_AUGMENTATIONS:
        raise UserError(f"{where}: augment.policy has {len({s.name for s in steps})} distinct augmentations; the "
                        f"course rule asks for at least {MIN_AUGMENTATIONS}")
    config.augment.steps = steps


def _check_model(model, where: str) -> None:
    """A preset that exists, a table that describes a ResNet, or a "file.py:function" reference (the
    file itself is looked for when training starts: a resume may use the run directory's copy)."""
    from model import custom

    try:
        kind = custom.kind_of(model)
        if kind == "table":
            custom.spec_from_table(model)
        elif kind == "file":
            custom.FileModel.parse(model)
        else:
            from model.resnet import PRESETS  # keras is imported by now; the backend was fixed by train.py

            if model not in PRESETS:
                raise UserError(f"model={model!r}: unknown preset (choose from {', '.join(PRESETS)})")
    except UserError as error:
        raise UserError(f"{where}: {error}") from None
