"""The LR range test finds a range where the loss falls, and writes its CSV and chart."""

from __future__ import annotations

import csv
import os

import numpy as np
import pytest

from common.errors import UserError
from training import lr_find


def test_suggest_reads_start_and_end_of_the_fall():
    lrs = list(np.geomspace(1e-4, 1.0, 60))
    losses = [2.3] * 20 + list(np.linspace(2.3, 1.0, 25)) + list(np.linspace(1.0, 5.0, 15))
    base, top = lr_find.suggest(lrs, losses)
    assert lrs[19] <= base <= lrs[26]
    assert lrs[42] <= top <= lrs[50]
    with pytest.raises(UserError, match="never fell"):
        lr_find.suggest(lrs[:10], list(np.linspace(1, 2, 10)))


def test_lr_find_on_synthetic_data_finds_where_the_loss_falls(converted, tmp_path):
    out = str(tmp_path / "lrf")
    sweep = lr_find.Sweep(batch_size=32, start_lr=1e-4, end_lr=10.0, steps=80, verbose=0)
    result = lr_find.run(converted[0], "resnet_tiny", 32, sweep, out=out, log=lambda *_: None)
    lrs, losses = result["lrs"], result["losses"]
    assert 20 <= result["steps"] <= 80
    assert np.all(np.diff(lrs) > 0) and lrs[0] == pytest.approx(1e-4)
    assert lrs[0] <= result["base_lr"] < result["max_lr"] <= lrs[-1]
    smoothed = lr_find.smooth(losses)
    at = {lr: s for lr, s in zip(lrs, smoothed)}
    assert at[result["max_lr"]] < at[result["base_lr"]] - 0.1  # the loss really fell in the range
    assert min(smoothed) < np.log(6) - 0.2  # below chance-level loss for 6 classes
    with open(os.path.join(out, "lr_find.csv")) as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == result["steps"] and float(rows[3]["lr"]) == pytest.approx(lrs[3])
    assert os.path.getsize(os.path.join(out, "lr_find.png")) > 5000
