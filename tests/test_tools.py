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


def test_every_tools_command_line_succeeds_on_good_input(converted, tmp_path, capsys):
    """Each command line as a user types it, run in this process (`main(argv)`): exit code 0 and
    what it promises to write. Before, some ran only on their error paths."""
    import zipfile

    from tools import benchmark as benchmark_tool
    from tools import lr_find, make_synthetic, model_card, order_stats, stats
    from tools import preview as preview_tool

    data, out = converted[0], tmp_path
    made = str(out / "new" / "tiny.zip")
    assert make_synthetic.main(["--out", made, "--classes", "3", "--train-per-class", "4", "--val-per-class", "2",
                                "--test-images", "1"]) == 0
    with zipfile.ZipFile(made) as archive:
        assert len([n for n in archive.namelist() if n.endswith(".JPEG") and "/train/" in n]) == 12

    assert preview_tool.main(["--data", data, "--resolution", "32", "--out", str(out / "p.png"),
                              "--augment", "flip,cutout", "--columns", "3"]) == 0
    assert Image.open(out / "p.png").size == (110 + 3 * 66, 3 * 66)

    student = out / "student.py"
    student.write_text("import keras\n\ndef build(num_classes):\n    inputs = keras.Input((None, None, 3))\n"
                       "    x = keras.layers.Conv2D(num_classes, 3, padding='same')(inputs)\n"
                       "    return keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))\n")
    config = out / "c.toml"
    config.write_text(f'model = "{student}:build"\n[[stages]]\nresolution = 32\nepochs = 1\nbatch_size = 8\n')
    capsys.readouterr()
    assert model_card.main(["--model", "resnet18", "--resolution", "32,64"]) == 0
    assert "12,653,704 parameters" in capsys.readouterr().out
    assert model_card.main(["--config", str(config), "--resolution", "32", "--classes", "4"]) == 0
    # 3x3 conv, 3 -> 4 channels: 3 * 3 * 3 * 4 weights + 4 biases = 112, worked by hand
    assert "112 parameters" in capsys.readouterr().out

    assert lr_find.main(["--data", data, "--model", "resnet_tiny", "--resolution", "32", "--batch-size", "16",
                         "--steps", "20", "--out", str(out / "lr")]) == 0
    assert len((out / "lr" / "lr_find.csv").read_text().splitlines()) >= 20
    assert benchmark_tool.main(["--data", data, "--resolution", "32", "--batch-size", "16", "--augment", "flip",
                                "--epochs", "1", "--seconds", "0.2", "--repeats", "1", "--baseline", "none",
                                "--json", str(out / "b.json")]) == 0
    assert [r["augmentation"] for r in json.load(open(out / "b.json"))["results"]][-1] == "flip"
    assert order_stats.main(["--data", data, "--resolution", "32", "--batch-size", "16",
                             "--json", str(out / "o.json")]) == 0
    assert json.load(open(out / "o.json"))
    assert stats.main(["--data", data, "--resolution", "32", "--out", str(out / "s"), "--json",
                       str(out / "s.json")]) == 0
    assert json.load(open(out / "s.json")) and any(name.endswith(".png") for name in os.listdir(out / "s"))
