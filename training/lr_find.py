"""LR range test (Smith, 2017): find base_lr and max_lr for the cyclical schedule.

Trains fresh weights while the learning rate grows exponentially from `start_lr` to `end_lr` over
`steps` steps, stops early when the loss explodes, writes `lr_find.csv` and `lr_find.png` (loss
against learning rate) and suggests, as Smith does, base_lr where the loss starts to fall and
max_lr where it stops falling. Library code so that the command line (tools/lr_find.py), the
tests and a notebook run the same sweep; runs under TensorFlow and JAX.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math

from common import files
from common.errors import UserError


@dataclasses.dataclass(frozen=True)
class Sweep:
    """How to sweep: the learning rates, the steps, the data and its augmentation."""

    batch_size: int = 128
    start_lr: float = 1e-5
    end_lr: float = 10.0
    steps: int = 200
    classes: int | list | None = None  # train on a class subset (N: the first N)
    policy: str = "none"  # augmentation policy during the sweep
    seed: int = 0
    verbose: int = 1  # Keras's progress bar


def smooth(values: list[float], beta: float = 0.9) -> list[float]:
    """Bias-corrected exponential moving average: the raw per-batch loss is too noisy to read."""
    out, average = [], 0.0
    for i, value in enumerate(values, 1):
        average = beta * average + (1 - beta) * value
        out.append(average / (1 - beta ** i))
    return out


def suggest(lrs: list[float], losses: list[float]) -> tuple[float, float]:
    """(base_lr, max_lr): where the smoothed loss starts to fall and where it stops falling."""
    smoothed = smooth(losses)
    lowest = min(range(len(smoothed)), key=smoothed.__getitem__)
    start = smoothed[0]
    drop = start - smoothed[lowest]
    if lowest == 0 or drop <= 0:
        raise UserError("the loss never fell during the sweep: lower --start-lr or raise --steps")
    begin = next(i for i in range(lowest + 1) if smoothed[i] < start - 0.05 * drop)
    return lrs[begin], lrs[lowest]


def run(data: str, model_name: str, resolution: int, sweep: Sweep = Sweep(), out: str = "lr_find",
        log=print) -> dict:
    """Sweep (a corrupt shard named), write the CSV and the chart into `out`, print the suggestion."""
    from pipeline.data_folder import DataFolder

    with DataFolder.open(data, resolution).naming_corrupt_shards(("train", "val")) as folder:
        lrs, losses = _sweep(folder, model_name, sweep)
    base_lr, max_lr = suggest(lrs, losses)
    files.gfile().makedirs(out)
    table = io.StringIO()
    writer = csv.writer(table)
    writer.writerow(["step", "lr", "loss", "smoothed_loss"])
    for row in zip(range(len(lrs)), lrs, losses, smooth(losses)):
        writer.writerow(row)
    files.write_text(files.join(out, "lr_find.csv"), table.getvalue())
    plotted = _plot(lrs, losses, base_lr, max_lr, files.join(out, "lr_find.png"))
    log(f"swept {len(lrs)} steps; suggested cyclical schedule: base_lr={base_lr:.3g} max_lr={max_lr:.3g}")
    log(f"wrote {out}/lr_find.csv" + (f" and {out}/lr_find.png" if plotted else ""))
    return {"base_lr": base_lr, "max_lr": max_lr, "steps": len(lrs), "lrs": lrs, "losses": losses, "plot": plotted}


def _sweep(folder, model_name: str, sweep: Sweep) -> tuple[list[float], list[float]]:
    """The learning rate and the loss of every step, the loss inf where it was not finite."""
    import keras

    import model
    from pipeline import dataset
    from pipeline.input_spec import Training
    from training.schedules import ExponentialRamp

    batch_size, policy, seed, classes = sweep.batch_size, sweep.policy, sweep.seed, sweep.classes
    keras.utils.set_random_seed(seed)
    train, info = dataset.build(folder.split("train", classes),
                                dataset.InputSpec(batch_size, training=Training(policy=policy, seed=seed)))
    net = model.build(model_name, info.num_classes, mean=info.mean, std=info.std)
    schedule = ExponentialRamp(sweep.start_lr, sweep.end_lr, sweep.steps)
    net.compile(optimizer=keras.optimizers.SGD(schedule, momentum=0.9, nesterov=True),
                loss="categorical_crossentropy")

    class Recorder(keras.callbacks.Callback):
        """Per-batch losses, recovered from Keras's running epoch mean: mean_i * i - mean_{i-1} * (i-1)."""

        def __init__(self):
            super().__init__()
            self.lrs, self.losses, self._previous_mean = [], [], 0.0

        def on_train_batch_end(self, batch, logs=None):
            mean = float(logs["loss"])
            loss = mean * (batch + 1) - self._previous_mean * batch
            self._previous_mean = mean
            self.lrs.append(float(schedule(batch)))
            self.losses.append(loss)
            best = min(smooth(self.losses))
            if not math.isfinite(loss) or (batch > 10 and smooth(self.losses)[-1] > 4 * best):
                self.model.stop_training = True  # the loss exploded: the sweep is over

    recorder = Recorder()
    net.fit(train, steps_per_epoch=sweep.steps, epochs=1, callbacks=[recorder], verbose=sweep.verbose, shuffle=False)
    return recorder.lrs, [x if math.isfinite(x) else float("inf") for x in recorder.losses]


def _plot(lrs, losses, base_lr, max_lr, path) -> bool:
    from common import plots

    plt = plots.pyplot()
    if plt is None:
        return False
    figure, axis = plt.subplots(figsize=(7, 4))
    axis.plot(lrs, losses, alpha=0.3, label="loss")
    axis.plot(lrs, smooth(losses), label="smoothed")
    for value, label in ((base_lr, "base_lr"), (max_lr, "max_lr")):
        axis.axvline(value, linestyle="--", color="grey")
        axis.annotate(f"{label} {value:.2g}", (value, axis.get_ylim()[1]), rotation=90, va="top", fontsize=8)
    axis.set_xscale("log")
    axis.set_xlabel("learning rate")
    axis.set_ylabel("training loss")
    axis.legend()
    plots.save(figure, path)
    return True
