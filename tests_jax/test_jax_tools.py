"""The LR range test and the analysis (tools.lr_find, tools.analyze) under the JAX backend."""

from __future__ import annotations

import os

import numpy as np
import pytest

import model
from pipeline import synthetic
from training import analysis, lr_find


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    return synthetic.make_records(str(tmp_path_factory.mktemp("jax_data")), [32], num_classes=5,
                                  train_per_class=40, val_per_class=6, test_images=0, seed=4)


def test_lr_find_under_jax(records, tmp_path):
    sweep = lr_find.Sweep(batch_size=25, start_lr=1e-4, end_lr=10.0, steps=60, verbose=0)
    result = lr_find.run(records, "resnet_tiny", 32, sweep, out=str(tmp_path), log=lambda *_: None)
    smoothed = lr_find.smooth(result["losses"])
    assert result["base_lr"] < result["max_lr"]
    assert min(smoothed) < smoothed[0] - 0.1
    assert os.path.exists(tmp_path / "lr_find.csv")


def test_analyze_under_jax(records, tmp_path):
    net = model.build("resnet_tiny", 5)
    net.save(str(tmp_path / "best.keras"))
    result = analysis.analyze(records, str(tmp_path), analysis.Options(resolution=32, batch_size=8, hard_count=7),
                              log=lambda *_: None)
    assert result["num_examples"] == 30 and 0 <= result["top1"] <= result["top5"] <= 1
    assert len(result["hard_examples"]) == 7
    assert set(result["per_class"]) == {f"n0999{i:04d}" for i in range(5)}
    assert np.isclose(np.mean(list(result["per_class"].values())), result["top1"])  # 6 images in every class
    assert 0 <= result["top1_tta"] <= result["top5_tta"] <= 1 and result["records_resolution"] == 32
