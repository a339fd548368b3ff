"""LR range test (Smith, 2017): find base_lr and max_lr for the cyclical schedule.

    python -m tools.lr_find --data records --model resnet18 --resolution 32

Trains fresh weights while the learning rate grows exponentially from --start-lr to --end-lr
over --steps steps, stops early when the loss explodes, writes `lr_find.csv` and `lr_find.png`
(loss against learning rate) to --out, and prints Smith's suggestion: base_lr where the loss
starts to fall, max_lr where it stops falling. Runs under TensorFlow and JAX.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import sys

from common.cli import command_line
from common.errors import UserError


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


def run(data: str, model_name: str, resolution: int, batch_size: int = 128, start_lr: float = 1e-5,
        end_lr: float = 10.0, steps: int = 200, out: str = "lr_find", classes=None, policy: str = "none",
        seed: int = 0, verbose: int = 1) -> dict:
    import keras

    import model
    from pipeline import dataset
    from training.schedules import ExponentialRamp

    keras.utils.set_random_seed(seed)
    train, info = dataset.build(data, "train", resolution, batch_size, policy=policy, seed=seed, classes=classes)
    net = model.build(model_name, info.num_classes, mean=info.mean, std=info.std)
    schedule = ExponentialRamp(start_lr, end_lr, steps)
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
    net.fit(train, steps_per_epoch=steps, epochs=1, callbacks=[recorder], verbose=verbose, shuffle=False)
    lrs, losses = recorder.lrs, [x if math.isfinite(x) else float("inf") for x in recorder.losses]
    base_lr, max_lr = suggest(lrs, losses)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "lr_find.csv"), "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["step", "lr", "loss", "smoothed_loss"])
        for row in zip(range(len(lrs)), lrs, losses, smooth(losses)):
            writer.writerow(row)
    plotted = _plot(lrs, losses, base_lr, max_lr, os.path.join(out, "lr_find.png"))
    return {"base_lr": base_lr, "max_lr": max_lr, "steps": len(lrs), "lrs": lrs, "losses": losses, "plot": plotted}


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


@command_line
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="the converter's output folder")
    parser.add_argument("--model", required=True, help="a model preset")
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--start-lr", type=float, default=1e-5)
    parser.add_argument("--end-lr", type=float, default=10.0)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--classes", type=int, help="train on the first N classes only")
    parser.add_argument("--augment", default="none", help="augmentation policy during the sweep (default none)")
    parser.add_argument("--out", default="lr_find", help="folder for lr_find.csv and lr_find.png")
    args = parser.parse_args(argv)
    import model

    if args.model not in model.PRESETS:
        parser.error(f"--model {args.model}: unknown preset (choose from {', '.join(model.PRESETS)})")
    if not 0 < args.start_lr < args.end_lr:
        parser.error("--start-lr must be positive and below --end-lr")
    if args.steps < 20:
        parser.error("--steps: at least 20 steps are needed to see a trend")
    from pipeline import dataset

    with dataset.naming_corrupt_shards(args.data, args.resolution, ("train", "val")):
        result = run(args.data, args.model, args.resolution, args.batch_size, args.start_lr, args.end_lr,
                     args.steps, args.out, args.classes, args.augment)
    print(f"swept {result['steps']} steps; suggested cyclical schedule: base_lr={result['base_lr']:.3g} "
          f"max_lr={result['max_lr']:.3g}")
    print(f"wrote {args.out}/lr_find.csv" + (f" and {args.out}/lr_find.png" if result["plot"] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
