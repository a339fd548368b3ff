"""curves.png: loss and accuracy per epoch, train and val, with the stage boundaries marked."""

from __future__ import annotations

from common import plots


def plot_curves(rows: list[dict], path: str) -> bool:
    """Draw the rows of log.csv; False when there is nothing to draw or no matplotlib."""
    plt = plots.pyplot("curves.png") if rows else None
    if plt is None:
        return False
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
    for axis in (left, right):
        for previous, row in zip(rows, rows[1:]):
            if row["stage"] != previous["stage"]:
                axis.axvline(int(row["epoch"]) - 0.5, color="grey", linewidth=0.8, linestyle=":")
        axis.set_xlabel("epoch")
        axis.legend()
    plots.save(figure, path, dpi=90)
    return True
