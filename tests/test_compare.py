"""tools.compare on run directories written by hand: the numbers below are worked out on paper from
the log.csv rows, not by the code under test."""

from __future__ import annotations

import json
import os

import pytest

from common.errors import UserError
from tests.conftest import run_tool, stderr_lines
from training import compare

HEADER = "epoch,stage,resolution,lr,loss,accuracy,top5,val_loss,val_accuracy,val_top5,images_per_sec,seconds\n"
RULE = "no dropout: drop: Dropout layer"


def log_line(epoch, stage, resolution, val_accuracy, seconds):
    return f"{epoch},{stage},{resolution},0.1,2.0,0.5,0.8,2.1,{val_accuracy},0.8,300.0,{seconds}\n"


def write_run(folder, *, log=None, state=None, config=None, final=None):
    os.makedirs(folder)
    if log is not None:
        with open(os.path.join(folder, "log.csv"), "w") as handle:
            handle.write(HEADER + "".join(log))
    for name, data in (("state.json", state), ("config.json", config), ("final.json", final)):
        if data is not None:
            with open(os.path.join(folder, name), "w") as handle:
                json.dump(data, handle)
    return folder


@pytest.fixture
def runs(tmp_path):
    """finished: resnet18, 5 epochs, 0.6 first at epoch 3 after 120+180+240 = 540 s (9.0 min), 0.7
    never; best 0.66 at epoch 4. nodrop: an experiment in progress (no final.json, state.json one
    epoch behind, a cut-off last line), a table model, best 0.71 first at epoch 2. starting: a
    state.json and nothing else yet."""
    finished = write_run(str(tmp_path / "finished"), config={"model": "resnet18"},
                         state={"epoch": 5, "parameters": 11_000_000},
                         final={"parameters": 11_181_642, "rules_broken": []},
                         log=[log_line(1, 1, 32, 0.30, 120), log_line(2, 1, 32, 0.52, 180),
                              log_line(3, 1, 32, 0.61, 240), log_line(4, 2, 48, 0.66, 300),
                              log_line(5, 2, 48, 0.65, 300)])
    nodrop = write_run(str(tmp_path / "nodrop"),
                       config={"model": {"block": "basic", "blocks": [1, 1, 1, 1], "widths": [16, 32, 64, 128]}},
                       state={"epoch": 2, "parameters": 500_000, "rules_broken": [RULE]},
                       log=[log_line(1, 1, 32, 0.55, 60), log_line(2, 1, 32, 0.71, 90),
                            log_line(3, 2, 48, 0.71, 90), "4,2,48,0.1,1.9"])
    starting = write_run(str(tmp_path / "starting"), state={"epoch": 0, "config": {"model": "models.py:wide"}})
    return finished, nodrop, starting


def test_epochs_and_minutes_to_each_target(runs):
    finished, nodrop, starting = (compare.summary(compare.load(path)) for path in runs)
    assert finished["epochs_to"] == {"0.5": 2, "0.6": 3, "0.7": None}
    assert finished["minutes_to"] == {"0.5": 5.0, "0.6": 9.0, "0.7": None}
    assert (finished["best_val_accuracy"], finished["best_epoch"], finished["epochs"]) == (0.66, 4, 5)
    assert (finished["model"], finished["parameters"], finished["rules_broken"]) == ("resnet18", 11_181_642, [])

    assert nodrop["epochs_to"] == {"0.5": 1, "0.6": 2, "0.7": 2}
    assert nodrop["minutes_to"] == {"0.5": 1.0, "0.6": 2.5, "0.7": 2.5}
    assert (nodrop["best_val_accuracy"], nodrop["best_epoch"], nodrop["epochs"]) == (0.71, 2, 3)
    assert (nodrop["parameters"], nodrop["rules_broken"]) == (500_000, [RULE])

    assert starting["epochs_to"] == {"0.5": None, "0.6": None, "0.7": None}
    assert (starting["best_val_accuracy"], starting["epochs"], starting["rules_broken"]) == (None, 0, [])
    assert starting["model"] == "models.py:wide"  # from state.json's copy of the config


@pytest.mark.parametrize("garbage", [
    "x,y,z,0.1,2.0,0.5,0.8,2.1,0.9,0.8,300.0,60\n",  # no numbers where the epoch and stage go
    "99999.5,1,32,0.1,2.0,0.5,0.8,2.1,0.9,0.8,300.0,60\n",  # not a whole epoch
    "0,1,32,0.1,2.0,0.5,0.8,2.1,0.9,0.8,300.0,60\n",  # epochs count from 1
    "40,garbage,32,0.1,2.0,0.5,0.8,2.1,0.9,0.8,300.0,60\n",  # an epoch number and nonsense
])
def test_a_garbage_row_of_the_log_is_no_epoch(tmp_path, garbage):
    """Trial failure 14: a garbage row of log.csv was counted as an epoch (and its val accuracy
    as one reached). Two good rows around it: 2 epochs, best 0.52 at epoch 2, worked out by hand."""
    run = write_run(str(tmp_path / "run"), state={"epoch": 2},
                    log=[log_line(1, 1, 32, 0.30, 120), garbage, log_line(2, 1, 32, 0.52, 180)])
    record = compare.summary(compare.load(run))
    assert (record["epochs"], record["best_val_accuracy"], record["best_epoch"]) == (2, 0.52, 2)
    assert record["epochs_to"]["0.6"] is None


def test_other_targets(runs):
    record = compare.summary(compare.load(runs[0]), compare.parse_targets("0.65, 0.3"))
    assert record["epochs_to"] == {"0.65": 4, "0.3": 1}
    assert record["minutes_to"] == {"0.65": 14.0, "0.3": 2.0}
    for bad in ("0.5,x", "70", ""):
        with pytest.raises(UserError, match="--targets"):
            compare.parse_targets(bad)


def test_table_json_and_plot(runs, tmp_path):
    printed = []
    json_path, plot_path = str(tmp_path / "compare.json"), str(tmp_path / "compare.png")
    records = compare.compare(list(runs), json_path=json_path, plot_path=plot_path, out=printed.append)
    table = printed[0].splitlines()
    assert len(table) == 4 and "ep to 0.6" in table[0] and "min to 0.6" in table[0]
    finished, nodrop, starting = table[1:]
    assert "resnet18" in finished and "11.18M" in finished and "0.6600 @ 4" in finished and " 9.0" in finished
    assert "EXPERIMENT" not in finished and "EXPERIMENT" not in starting
    assert nodrop.endswith("EXPERIMENT") and "table: basic [1,1,1,1] x [16,32,64,128]" in nodrop

    with open(json_path) as handle:
        written = json.load(handle)
    assert written == records and len(written) == 3
    for record in written:
        assert set(record) == {"run", "model", "parameters", "rules_broken", "epochs", "best_val_accuracy",
                               "best_epoch", "epochs_to", "minutes_to"}
    assert written[0]["epochs_to"] == {"0.5": 2, "0.6": 3, "0.7": None}
    assert written[1]["run"] == runs[1]

    pytest.importorskip("matplotlib")
    with open(plot_path, "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"


def test_curves_title_marks_an_experiment(runs, monkeypatch):
    pytest.importorskip("matplotlib")
    from common import plots
    from training import curves

    titles = []

    def save(figure, path, dpi=100):
        titles.append(figure._suptitle.get_text() if figure._suptitle else "")
        import matplotlib.pyplot as plt

        plt.close(figure)

    monkeypatch.setattr(plots, "save", save)
    rows = [{"epoch": "1", "stage": "1", "loss": "2", "val_loss": "2", "accuracy": "0.5", "val_accuracy": "0.5",
             "val_top5": "0.8"}]
    assert curves.plot_curves(rows, os.path.join(runs[1], "curves.png"))
    assert curves.plot_curves(rows, os.path.join(runs[0], "curves.png"))
    assert titles[0].startswith("EXPERIMENT") and RULE in titles[0]
    assert titles[1] == ""


def test_a_folder_that_is_not_a_run(tmp_path):
    empty = str(tmp_path / "empty")
    os.makedirs(empty)
    with pytest.raises(UserError, match="empty: not a run directory"):
        compare.load(empty)


def test_command_line(runs, tmp_path):
    result = run_tool("compare", runs[0], runs[1], "--targets", "0.5,0.6,0.7")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 3 and "ep to 0.7" in lines[0]
    assert runs[0] in lines[1] and " 9.0" in lines[1] and lines[2].endswith("EXPERIMENT")

    missing = str(tmp_path / "not-a-run")
    os.makedirs(missing)
    result = run_tool("compare", runs[0], missing)
    assert result.returncode == 2
    errors = stderr_lines(result)
    assert len(errors) == 1 and errors[0].startswith("error: ") and missing in errors[0], result.stderr
