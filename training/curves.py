"""curves.png: loss and accuracy per epoch, train and val, with the stage boundaries marked; the
title says EXPERIMENT when the run's model breaks the course rules."""

from __future__ import annotations

import posixpath

from common import plots


def plot_curves(rows: list[dict], path: str, rules_broken: list[str] | None = None) -> bool:
    """Draw the rows of log.csv; False when there is nothing to draw or no matplotlib.
    `rules_broken`: None reads them from the run directory holding `path` (state.json, final.json)."""
    plt = plots.pyplot("curves.png") if rows else None
    if plt is None:
        return False
    if rules_broken is None:
        rules_broken = _rules_broken(posixpath.dirname(path))
    epochs = [int(r["epoch"]) for r in rows]

    def column(name):
        return [float(r[name]) if r.get(name) not in (None, "") else float("nan") for r in rows]

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.plot(epochs, column("loss"), label="train")
    left.plot(epochs, column("val_loss"), label="val")
    left.set_title("loss")
    right.plot(epochs, column("accuracy"), label="train top-1")
    right.plot(epochs, column("val_accuracy"), label="val top-1")
    right.plot(epochs, column("val_top5"), label="val top-5", linestyle="--")
    right.set_title("accuracy")
    if rules_broken:
        figure.suptitle("EXPERIMENT (breaks the course rules: " + "; ".join(rules_broken) + ")",
                        color="firebrick", fontsize=9)
    for axis in (left, right):
        for previous, row in zip(rows, rows[1:]):
            if row["stage"] != previous["stage"]:
                axis.axvline(int(row["epoch"]) - 0.5, color="grey", linewidth=0.8, linestyle=":")
        axis.set_xlabel("epoch")
        axis.legend()
    plots.save(figure, path, dpi=90)
    return True


def _rules_broken(folder: str) -> list[str]:
    """What the run's records say it breaks; [] when they say nothing or cannot be read (yet)."""
    from common.errors import UserError
    from training.run_dir import RunDir

    try:
        return RunDir(folder).rules_broken()
    except UserError:
        return []
