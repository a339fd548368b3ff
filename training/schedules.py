"""Smith's cyclical learning rate (2017) as a Keras 3 LearningRateSchedule, backend-neutral.

    cycle = floor(1 + step / (2 step_size))
    x     = |step / step_size - 2 cycle + 1|
    lr    = base_lr + (max_lr - base_lr) * max(0, 1 - x) * scale

scale is 1 ("triangular"), 1 / 2^(cycle - 1) ("triangular2") or gamma^step ("exp_range").
The position inside a cycle is computed with integers, so the value is as exact at step
50,000,000 as at step 5 (float32 `step / step_size` would drift after a few million steps).
Only keras.ops: it runs under TensorFlow and JAX, inside compiled train steps, and reloads from
a saved model through get_config/from_config.
"""

from __future__ import annotations

import math

import keras
from keras import ops

MODES = ("triangular", "triangular2", "exp_range")


@keras.saving.register_keras_serializable(package="tin")
class CyclicalLearningRate(keras.optimizers.schedules.LearningRateSchedule):
    def __init__(self, base_lr: float, max_lr: float, step_size: int, mode: str = "triangular",
                 gamma: float = 1.0, name: str = "cyclical_lr"):
        if mode not in MODES:
            raise ValueError(f"mode={mode!r}: expected one of {', '.join(MODES)}")
        if not 0 < base_lr <= max_lr:
            raise ValueError(f"need 0 < base_lr <= max_lr, got base_lr={base_lr}, max_lr={max_lr}")
        if int(step_size) < 1:
            raise ValueError(f"step_size={step_size}: must be at least one step")
        if not 0 < gamma <= 1:
            raise ValueError(f"gamma={gamma}: must be in (0, 1]")
        self.base_lr, self.max_lr = float(base_lr), float(max_lr)
        self.step_size, self.mode, self.gamma, self.name = int(step_size), mode, float(gamma), name

    def __call__(self, step):
        step = ops.cast(step, "int32")
        period = 2 * self.step_size
        cycle = step // period + 1  # == floor(1 + step / (2 step_size))
        position = step - (cycle - 1) * period  # 0 .. 2 step_size - 1, exact
        x = ops.abs(ops.cast(position, "float32") / float(self.step_size) - 1.0)
        height = ops.maximum(0.0, 1.0 - x)
        if self.mode == "triangular2":
            height = height * ops.power(0.5, ops.cast(cycle - 1, "float32"))
        elif self.mode == "exp_range":
            height = height * ops.exp(ops.cast(step, "float32") * math.log(self.gamma))
        return self.base_lr + (self.max_lr - self.base_lr) * height

    def get_config(self):
        return {"base_lr": self.base_lr, "max_lr": self.max_lr, "step_size": self.step_size,
                "mode": self.mode, "gamma": self.gamma, "name": self.name}


def reference(step: int, base_lr: float, max_lr: float, step_size: int, mode: str = "triangular",
              gamma: float = 1.0) -> float:
    """Smith's formulas in float64 Python, to test against and to print schedules."""
    cycle = math.floor(1 + step / (2 * step_size))
    x = abs(step / step_size - 2 * cycle + 1)
    scale = {"triangular": 1.0, "triangular2": 1 / 2 ** (cycle - 1), "exp_range": gamma ** step}[mode]
    return base_lr + (max_lr - base_lr) * max(0.0, 1 - x) * scale


@keras.saving.register_keras_serializable(package="tin")
class ExponentialRamp(keras.optimizers.schedules.LearningRateSchedule):
    """lr grows from `start` to `end` geometrically over `steps` steps: the LR range test's sweep."""

    def __init__(self, start: float, end: float, steps: int, name: str = "exponential_ramp"):
        self.start, self.end, self.steps, self.name = float(start), float(end), int(steps), name

    def __call__(self, step):
        fraction = ops.cast(step, "float32") / float(max(1, self.steps - 1))
        return self.start * ops.exp(fraction * math.log(self.end / self.start))

    def get_config(self):
        return {"start": self.start, "end": self.end, "steps": self.steps, "name": self.name}


@keras.saving.register_keras_serializable(package="tin")
class StagedCyclicalLearningRate(keras.optimizers.schedules.LearningRateSchedule):
    """Smith's cyclical schedule measured in epochs, across stages of different batch sizes.

    Progressive resizing changes the batch size, and so the number of steps in an epoch, from one
    stage to the next; a schedule in steps would stretch or squeeze its cycles at every stage.
    `boundaries` lists each stage's (first global step, first epoch, steps per epoch): the
    optimizer's step counter is turned into a fractional epoch and the formulas above run on it
    (step_size and gamma per epoch). One global step counter, so it survives any resume.
    """

    def __init__(self, base_lr: float, max_lr: float, step_size_epochs: float, boundaries, mode: str = "triangular",
                 gamma: float = 1.0, name: str = "staged_cyclical_lr"):
        if mode not in MODES:
            raise ValueError(f"mode={mode!r}: expected one of {', '.join(MODES)}")
        if not 0 < base_lr <= max_lr or step_size_epochs <= 0 or not boundaries:
            raise ValueError("need 0 < base_lr <= max_lr, step_size_epochs > 0 and at least one stage")
        self.base_lr, self.max_lr, self.step_size_epochs = float(base_lr), float(max_lr), float(step_size_epochs)
        self.boundaries = [tuple(int(v) for v in b) for b in boundaries]
        self.mode, self.gamma, self.name = mode, float(gamma), name

    def epoch_at(self, step):
        step = ops.cast(step, "int32")
        position = ops.cast(0.0, "float32")
        for first_step, first_epoch, steps_per_epoch in self.boundaries:
            inside = first_epoch + ops.cast(step - first_step, "float32") / float(steps_per_epoch)
            position = ops.where(step >= first_step, inside, position)
        return position

    def __call__(self, step):
        epochs = self.epoch_at(step)
        cycle = ops.floor(1.0 + epochs / (2.0 * self.step_size_epochs))
        x = ops.abs(epochs / self.step_size_epochs - 2.0 * cycle + 1.0)
        height = ops.maximum(0.0, 1.0 - x)
        if self.mode == "triangular2":
            height = height * ops.power(0.5, cycle - 1.0)
        elif self.mode == "exp_range":
            height = height * ops.exp(epochs * math.log(self.gamma))
        return self.base_lr + (self.max_lr - self.base_lr) * height

    def get_config(self):
        return {"base_lr": self.base_lr, "max_lr": self.max_lr, "step_size_epochs": self.step_size_epochs,
                "boundaries": [list(b) for b in self.boundaries], "mode": self.mode, "gamma": self.gamma,
                "name": self.name}
