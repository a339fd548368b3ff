"""The run's preparation asks each split it reads of its folder once and plans the stages from
those answers (training/preparation.py): which splits, the cache decision, the final evaluation's
split and the errors, on a converted folder without training anything."""

from __future__ import annotations

import os

import pytest

from common.errors import UserError
from pipeline import data_folder
from pipeline.data_folder import DataFolder
from training import config as configs
from training import preparation

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "configs", "demo.toml")
# two stages at 32 px (batch 16: 180 // 16 = 11 steps), the final evaluation at 64 px
SETTINGS = ["stages.0.resolution=32", "stages.1.resolution=32", "stages.0.batch_size=16", "stages.1.batch_size=16",
            "final_resolution=64"]


def prepared_plan(data, *extra):
    config = configs.read(DEMO, [*SETTINGS, *extra])
    folders = data_folder.open_all(data, config.resolutions)
    splits = preparation.splits_read(config, folders)
    return config, splits, preparation.plan(config, splits)


def test_each_split_read_is_asked_once_and_the_stages_are_planned_from_them(converted, monkeypatch):
    asked = []
    real = DataFolder.split

    def counted(self, name, classes=None):
        asked.append((self.resolution, name))
        return real(self, name, classes)

    monkeypatch.setattr(DataFolder, "split", counted)
    monkeypatch.setattr(DataFolder, "fits_in_ram", lambda self, name: False)
    config, splits, stages = prepared_plan(converted[0], "runtime.cache=auto")
    # every stage's train and val, and val where the final evaluation runs; nothing else, once each
    assert sorted(asked) == [(32, "train"), (32, "val"), (64, "val")]
    assert [s.train is splits[32, "train"] and s.val is splits[32, "val"] for s in stages] == [True, True]
    assert [s.steps_per_epoch for s in stages] == [180 // 16] * 2  # 6 classes x 30 images, whole batches
    assert [s.cache for s in stages] == [False, False]  # "auto" and a split that does not fit
    assert splits[64, "val"].resolution == 64 and splits[64, "val"].count == 30 and len(splits[64, "val"].keep) == 6
    assert [s.cache for s in prepared_plan(converted[0], "runtime.cache=true")[2]] == [True, True]


def test_a_class_subset_is_one_split_of_the_kept_classes_and_a_bad_one_names_the_config(converted):
    _, splits, stages = prepared_plan(converted[0], "classes=2")
    val = splits[64, "val"]
    assert val.keep == (0, 1) and val.label_map == (0, 1, -1, -1, -1, -1) and val.count == 10
    assert stages[0].steps_per_epoch == 60 // 16
    with pytest.raises(UserError, match=r"^\S*configs/demo\.toml: classes=7: the records hold 6 classes$"):
        prepared_plan(converted[0], "classes=7")
