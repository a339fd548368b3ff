"""Compare run directories: how fast each run reached the target accuracies, and at what cost.

The course's selection rule: a model that reaches 60% val top-1 in fewer epochs most probably also
crosses 70%, so short runs of several candidates, compared on `epochs_to`, pick the one to train long.

Everything comes from the files of each run directory (local, Drive or gs://), read defensively:
a run still in progress has a log.csv that may be partial, a state.json that may lag and no
final.json. No TensorFlow at import (common.files imports gfile on first use) and no Keras.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math

from common import files, plots
from common.errors import UserError
from training import run_dir

DEFAULT_TARGETS = (0.5, 0.6, 0.7)
KEYS = ("run", "model", "parameters", "rules_broken", "epochs", "best_val_accuracy", "best_epoch",
        "epochs_to", "minutes_to")  # of each run's record in --json


@dataclasses.dataclass
class Row:
    """One epoch of log.csv, the columns a comparison needs."""

    epoch: int
    resolution: int | None
    val_accuracy: float | None
    seconds: float


@dataclasses.dataclass
class Run:
    """What a run directory holds, as far as it was written."""

    path: str
    rows: list[Row]
    config: dict
    state: dict
    final: dict

    @property
    def model(self):
        """config.json's "model" (a preset name, a table, "file.py:function"), else the state's copy."""
        model = self.config.get("model")
        if model is None:
            model = (self.state.get("config") or {}).get("model")
        return model

    @property
    def parameters(self) -> int | None:
        parameters = self.final.get("parameters")
        return self.state.get("parameters") if parameters is None else parameters

    @property
    def rules_broken(self) -> list[str]:
        """The course rules the model breaks (final.json, else state.json); [] when none is recorded."""
        return run_dir.rules_broken(self.state, self.final)

    @property
    def experiment(self) -> bool:
        return bool(self.rules_broken)


def parse_targets(text: str) -> tuple[float, ...]:
    """'0.5,0.6,0.7' -> (0.5, 0.6, 0.7): accuracies between 0 and 1."""
    try:
        targets = tuple(float(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise UserError(f"--targets {text!r}: expected accuracies like 0.5,0.6,0.7") from None
    if not targets or not all(0 < t <= 1 for t in targets):
        raise UserError(f"--targets {text!r}: expected accuracies between 0 and 1, like 0.5,0.6,0.7")
    return targets


def target_key(target: float) -> str:
    """The JSON key of a target: 0.6 -> "0.6"."""
    return f"{target:g}"


def _number(text) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _count(text) -> int | None:
    """A whole number >= 1 (an epoch, a stage, a resolution), or None."""
    value = _number(text)
    return int(value) if value is not None and value >= 1 and value == int(value) else None


def parse_log(text: str | None) -> list[Row]:
    """The rows of log.csv by epoch; a cut-off line is left out, an unreadable cell read as missing,
    and an epoch written twice (a resume that redid it) keeps its last row."""
    by_epoch = {}
    for record in csv.DictReader(io.StringIO(text or "")):
        epoch, stage = _count(record.get("epoch")), _count(record.get("stage"))
        if epoch is None or stage is None or None in record.values():  # a short line: csv fills in None
            continue  # and a garbage row (no whole epoch and stage numbers) is no epoch
        resolution = _count(record.get("resolution"))
        by_epoch[epoch] = Row(epoch, resolution, _number(record.get("val_accuracy")),
                              _number(record.get("seconds")) or 0.0)
    return [by_epoch[epoch] for epoch in sorted(by_epoch)]


def load(path: str) -> Run:
    """A run directory's log and records; a UserError naming it when it is not a run directory."""
    path = path.rstrip("/") or path
    run = run_dir.RunDir(path)
    log = files.read_text(run.log)
    if log is None and not (files.gfile().exists(run.state) or files.gfile().exists(run.checkpoint)):
        raise UserError(f"{path}: not a run directory (no log.csv, state.json or checkpoint.npz)")
    return Run(path, parse_log(log), run_dir.record(run.config), run_dir.record(run.state), run_dir.record(run.final))


def epochs_to(rows: list[Row], target: float) -> int | None:
    """The first epoch whose val_accuracy reaches `target`; None when none does (yet)."""
    return next((row.epoch for row in rows if row.val_accuracy is not None and row.val_accuracy >= target), None)


def minutes_to(rows: list[Row], epoch: int | None) -> float | None:
    """Training minutes up to and including `epoch` (the sum of log.csv's `seconds`), to 0.1."""
    if epoch is None:
        return None
    return round(sum(row.seconds for row in rows if row.epoch <= epoch) / 60, 1)


def best(run: Run) -> tuple[float | None, int | None]:
    """The best val top-1 and the first epoch reaching it, from the log (runs in progress too);
    from the state when the log has no validation yet."""
    scored = [row for row in run.rows if row.val_accuracy is not None]
    if not scored:
        return run.state.get("best_val_accuracy"), run.state.get("best_epoch")
    top = max(row.val_accuracy for row in scored)
    return top, next(row.epoch for row in scored if row.val_accuracy == top)


def summary(run: Run, targets=DEFAULT_TARGETS) -> dict:
    """The run's record in --json (the keys of KEYS)."""
    reached = {target_key(t): epochs_to(run.rows, t) for t in targets}
    best_val_accuracy, best_epoch = best(run)
    epochs = max(run.rows[-1].epoch if run.rows else 0, int(run.state.get("epoch") or 0))
    return {"run": run.path, "model": run.model, "parameters": run.parameters, "rules_broken": run.rules_broken,
            "epochs": epochs, "best_val_accuracy": best_val_accuracy, "best_epoch": best_epoch,
            "epochs_to": reached, "minutes_to": {key: minutes_to(run.rows, e) for key, e in reached.items()}}


def describe_model(model) -> str:
    """A model setting in a few words: a preset's name, a table as 'table: basic [2,2,2,2] x [64,...]'."""
    if model is None:
        return "?"
    blocks = model.get("blocks", model.get("repetitions")) if isinstance(model, dict) else None
    if isinstance(blocks, list):
        def compact(values):
            return "[" + ",".join(str(v) for v in values) + "]"

        widths = model.get("widths")
        return (f"table: {model.get('block', 'basic')} {compact(blocks)}"
                + (f" x {compact(widths)}" if isinstance(widths, list) else ""))
    if isinstance(model, str):
        return model
    text = json.dumps(model, separators=(",", ":"))
    return text if len(text) <= 40 else text[:37] + "..."


def _parameters(count) -> str:
    return "-" if not isinstance(count, (int, float)) else f"{count / 1e6:.2f}M"


def _cell(value) -> str:
    return "-" if value is None else str(value)


def table(records: list[dict], targets=DEFAULT_TARGETS) -> str:
    """The terminal table: one row per run (a record of `summary`)."""
    keys = [target_key(t) for t in targets]
    header = (["run", "model", "params", "epochs", "best val top-1 @ epoch"]
              + [f"ep to {k}" for k in keys] + [f"min to {k}" for k in keys] + [""])
    lines = [header]
    for record in records:
        top = record["best_val_accuracy"]
        lines.append([record["run"], describe_model(record["model"]), _parameters(record["parameters"]),
                      str(record["epochs"]), "-" if top is None else f"{top:.4f} @ {record['best_epoch']}"]
                     + [_cell(record["epochs_to"][k]) for k in keys] + [_cell(record["minutes_to"][k]) for k in keys]
                     + ["EXPERIMENT" if record["rules_broken"] else ""])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in
                               enumerate(zip(line, widths))).rstrip() for line in lines)


def plot(runs: list[Run], path: str, targets=DEFAULT_TARGETS) -> bool:
    """val top-1 per epoch, one line per run, a marker per resolution and its size written where a
    stage starts, experiments dashed; False without matplotlib or anything to draw."""
    plt = plots.pyplot("comparison plot") if any(run.rows for run in runs) else None
    if plt is None:
        return False
    resolutions = sorted({row.resolution for run in runs for row in run.rows if row.resolution is not None})
    markers = dict(zip(resolutions, "osD^vP*Xph" * 3))
    figure, axis = plt.subplots(figsize=(10, 5.5))
    for run in runs:
        rows = [row for row in run.rows if row.val_accuracy is not None]
        if not rows:
            continue
        label = run.path + (" (experiment)" if run.experiment else "")
        (line,) = axis.plot([r.epoch for r in rows], [r.val_accuracy for r in rows], label=label,
                            linestyle="--" if run.experiment else "-")
        for resolution, marker in markers.items():
            points = [r for r in rows if r.resolution == resolution]
            axis.plot([r.epoch for r in points], [r.val_accuracy for r in points], linestyle="none",
                      marker=marker, markersize=4, color=line.get_color())
        for previous, row in zip([None, *rows], rows):
            if row.resolution is not None and (previous is None or previous.resolution != row.resolution):
                axis.annotate(f"{row.resolution}px", (row.epoch, row.val_accuracy), textcoords="offset points",
                              xytext=(3, 6), fontsize=7, color=line.get_color())
    for target in targets:
        axis.axhline(target, color="grey", linewidth=0.7, linestyle=":")
    for resolution, marker in markers.items():  # the legend's key to the markers
        axis.plot([], [], linestyle="none", marker=marker, color="grey", label=f"{resolution} px")
    from matplotlib.ticker import MaxNLocator

    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.set_xlabel("epoch")
    axis.set_ylabel("val top-1")
    axis.set_title("val top-1 per epoch (dotted: targets)")
    axis.legend(fontsize=8)
    plots.save(figure, path)
    return True


def compare(paths: list[str], targets=DEFAULT_TARGETS, json_path: str | None = None, plot_path: str | None = None,
            out=print) -> list[dict]:
    """Read every run, print the table, write the JSON and the plot where asked; the records."""
    runs = [load(path) for path in paths]
    records = [summary(run, targets) for run in runs]
    out(table(records, targets))
    if json_path:
        files.write_json(json_path, records)
    if plot_path and plot(runs, plot_path, targets):
        out(f"plot: {plot_path}")
    return records
