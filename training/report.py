"""A run's summary for the submission: what the course grades, in text and in one PNG.

The final top-1 and top-5 with and without flips (final.json), the parameter count and the rules
the model obeys or breaks, the epochs trained and the best epoch, and the augmentation policy with
each variant's one-line description (the course asks for the variants to be defined clearly).
The notebook shows it under its training cells; `python -m tools.report RUN` gives it to any run
directory. Read from the run's files (config.json, final.json, log.csv, state.json) like
training/compare.py; a run still in progress reports what it has so far.
"""

from __future__ import annotations

import csv
import io
import textwrap

from common import files, plots
from pipeline import policy
from training import compare
from training.run_dir import RunDir


def _percent(value) -> str:
    return "-" if value is None else f"{100 * float(value):.1f}%"


def _first_sentence(text: str) -> str:
    """The first sentence of a docstring, on one line."""
    flat = " ".join(text.split())
    return flat.split(". ")[0].rstrip(".") + "." if flat else ""


def augmentations(config: dict) -> list[str]:
    """'name (p=.., m=..): what it does.' for each step of the run's policy, in policy order."""
    from pipeline import augment  # TensorFlow: only once a report is asked for

    # as trained: a run from before magnitudes had ranges is reported, not refused
    steps = policy.parse((config.get("augment") or {}).get("policy", "default"), check_ranges=False)
    return [f"{step.name} (p={step.p:g}, m={step.m:g}): {_first_sentence(augment.REGISTRY[step.name].doc)}"
            for step in steps]


def lines(path: str) -> list[str]:
    """The summary of run directory `path`, as printed lines."""
    run = compare.load(path)
    final, record = run.final, compare.summary(run)  # epochs and the best epoch as tools.compare counts them
    best_accuracy, best_epoch, epochs = record["best_val_accuracy"], record["best_epoch"], record["epochs"]
    broken = run.rules_broken
    text = [f"run: {run.path}",
            f"model: {compare.describe_model(run.model)}, {run.parameters or '?'} parameters"
            + (f", backend {final['backend']}" if final.get("backend") else ""),
            "course rules: " + ("obeyed" if not broken else "EXPERIMENT, breaks: " + "; ".join(broken)),
            f"epochs: {epochs} trained" + ("" if final else " (still training: no final.json yet)")]
    if final:
        text.append(f"final val at {final.get('resolution')}px: top-1 {_percent(final.get('val_accuracy'))}, "
                    f"top-5 {_percent(final.get('val_top5'))}; with flips: top-1 "
                    f"{_percent(final.get('val_accuracy_tta'))}, top-5 {_percent(final.get('val_top5_tta'))}")
    text.append(f"best val top-1: {_percent(best_accuracy)} at epoch {best_epoch if best_epoch else '-'}")
    runtime = run.config.get("runtime") or {}
    quick = [f"runtime.{key} = {runtime[key]}" for key in ("steps_per_epoch", "val_steps") if runtime.get(key)]
    if quick:
        text.append(f"QUICK CHECK ({', '.join(quick)}): not a result")
    named = augmentations(run.config)
    text.append(f"augmentations ({len(named)} variants):")
    text += [f"  {line}" for line in named]
    return text


def plot(path: str, out: str, text: list[str]) -> bool:
    """One PNG: the loss and accuracy curves from log.csv above the summary's lines; False without
    matplotlib or a log."""
    rows = list(csv.DictReader(io.StringIO(files.read_text(RunDir(path).log) or "")))
    text = [piece for line in text for piece in textwrap.wrap(line, 130, subsequent_indent="      ")]
    plt = plots.pyplot("the report's PNG") if rows else None
    if plt is None:
        return False
    figure = plt.figure(figsize=(11, 4 + 0.18 * len(text)))
    grid = figure.add_gridspec(2, 2, height_ratios=[4, 0.18 * len(text)])
    loss, accuracy = figure.add_subplot(grid[0, 0]), figure.add_subplot(grid[0, 1])
    words = figure.add_subplot(grid[1, :])
    epochs = [int(r["epoch"]) for r in rows]

    def column(name):
        return [float(r[name]) if r.get(name) not in (None, "") else float("nan") for r in rows]

    loss.plot(epochs, column("loss"), label="train")
    loss.plot(epochs, column("val_loss"), label="val")
    accuracy.plot(epochs, column("accuracy"), label="train top-1")
    accuracy.plot(epochs, column("val_accuracy"), label="val top-1")
    accuracy.plot(epochs, column("val_top5"), label="val top-5", linestyle="--")
    for axis, title in ((loss, "loss"), (accuracy, "accuracy")):
        axis.set_title(title)
        axis.set_xlabel("epoch")
        axis.legend()
    words.axis("off")
    words.text(0, 1, "\n".join(text), va="top", family="monospace", fontsize=8)
    plots.save(figure, out, dpi=90)
    return True
