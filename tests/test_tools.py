"""Benchmark, preview, model card and data staging: outputs and values, not just 'it runs'."""

from __future__ import annotations

import json
import os

import keras
import pytest
from PIL import Image

from common.errors import UserError
from model import card
from pipeline import benchmark, preview
from training import staging


def test_benchmark_rows_and_json(converted, tmp_path):
    out = str(tmp_path / "bench.json")
    settings = benchmark.Settings(batch_size=16, names=("flip", "cutout"), seconds=0.3, repeats=2, baseline="keras",
                                  epochs=2)
    benchmark.measure(converted[0], 32, settings, json_path=out, plot_path=str(tmp_path / "bench.png"),
                      report=lambda *_: None)
    result = json.load(open(out))
    assert result["resolution"] == 32 and result["batch_size"] == 16 and result["cpu_count"] == os.cpu_count()
    names = [r["augmentation"] for r in result["results"]]
    assert names == ["plain", "none", "none:cached", "policy:default", "policy:default:cached", "policy:keras-ops",
                     "keras", "flip", "cutout"]
    rate = {r["augmentation"]: r["images_per_sec"] for r in result["results"]}
    # The Keras layers row is the plain pipeline plus six ops: it cannot be faster than the plain row.
    assert rate["keras"] < rate["plain"]
    # From the cache a later epoch starts at once; the run's first batch waited for the whole read
    # (and the tracing of the pipeline).
    cached = next(r for r in result["results"] if r["augmentation"] == "none:cached")
    assert cached["epoch_start_wait_s"] < cached["first_batch_s"], cached
    assert Image.open(tmp_path / "bench.png").size[0] > 300


def test_preview_draws_one_row_per_augmentation(converted, tmp_path):
    path = str(tmp_path / "grid.png")
    preview.write(converted[0], 32, path, ["flip", "rotate", "cutmix"], columns=4, log=lambda *_: None)
    grid = Image.open(path)
    tile = 32 * 2 + 2
    assert grid.size == (110 + 4 * tile, 4 * tile)  # originals + 3 augmentations


def test_model_card_receptive_field_and_multiply_adds_by_hand():
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False)(inputs)  # rf 3
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False)(x)  # rf 5, jump 2
    y = keras.layers.Conv2D(8, 3, padding="same", use_bias=False)(x)  # rf 9
    x = keras.layers.Add()([x, y])
    net = keras.Model(inputs, x)
    assert card.receptive_field(net) == 9
    expected = 16 * 16 * 9 * 3 * 8 + 8 * 8 * 9 * 8 * 8 + 8 * 8 * 9 * 8 * 8
    assert card.multiply_adds(net) == expected
    text = card.card("resnet18", [32, 64])
    assert "12,653,704 parameters" in text and "receptive field 109 px" in text


def test_stage_data_copies_once_and_checks_sha256(converted, tmp_path):
    target = str(tmp_path / "local")
    staging.stage(converted[0], target, [32], log=lambda *_: None)
    copied = sorted(os.listdir(os.path.join(target, "32px")))
    assert "manifest.json" in copied and len(copied) == 1 + 9
    stamp = os.path.getmtime(os.path.join(target, "32px", "train-00000-of-00003.tfrecord"))
    lines = []
    staging.stage(converted[0], target, [32], log=lines.append)
    assert "0 shard(s) copied" in lines[0]
    assert os.path.getmtime(os.path.join(target, "32px", "train-00000-of-00003.tfrecord")) == stamp
    broken = os.path.join(target, "32px", "val-00002-of-00003.tfrecord")
    with open(broken, "r+b") as handle:
        handle.write(b"xx")
    lines = []
    staging.stage(converted[0], target, [32], log=lines.append)
    assert "1 shard(s) copied" in lines[0]
    with pytest.raises(UserError, match="48px/manifest.json: missing"):
        staging.stage(converted[0], target, [48])


def test_model_train_step_rate_and_the_verdict_beside_the_input(converted):
    from pipeline.data_folder import DataFolder
    from training import step_speed

    timed = step_speed.train_images_per_sec("resnet_tiny", DataFolder.open(converted[0], 32), 16, seconds=0.5)
    assert timed["images_per_sec"] > 0 and timed["resolution"] == 32 and timed["batch_size"] == 16
    assert timed["device"] == "cpu" and timed["precision"] == "float32"
    assert step_speed.verdict(1000, 2500, "policy:default").endswith("the input keeps up")
    # 400 of the 1,000 images/s the model could take: it waits 60% of the time
    assert "wait for data 60% of the time" in step_speed.verdict(1000, 400, "policy:default")
