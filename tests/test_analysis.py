"""The statistics (tools.stats) against numpy, and the analysis (tools.analyze) against a direct
evaluation of a trained run."""

from __future__ import annotations

import csv
import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

import train as train_py
from pipeline import manifest as manifests
from pipeline import records, statistics
from pipeline.data_folder import DataFolder
from tests.conftest import build_split, run_main, run_tool, top_k_by_sorting
from training import analysis


def train_split(folder, resolution):
    manifest = manifests.read(folder, resolution)
    batch = next(iter(tf.data.TFRecordDataset(manifests.shard_paths(folder, resolution, manifest, "train"))
                      .batch(100_000)))
    parsed = records.parse_batch(batch)
    images = records.decode_images(parsed["image"], "raw", resolution).numpy()
    return images, parsed["label"].numpy(), parsed["bbox"].numpy(), [n.decode() for n in parsed["filename"].numpy()]


def test_stats_equal_numpy_on_the_records(converted, tmp_path):
    out, _, info = converted
    result = statistics.compute(DataFolder.open(out, 32))
    images, labels, boxes, names = train_split(out, 32)
    pixels = images.reshape(-1, 3).astype(np.float64)
    np.testing.assert_allclose(result["mean"], pixels.mean(0), atol=1e-3)
    np.testing.assert_allclose(result["std"], pixels.std(0), atol=1e-3)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    for key, q in (("q05", 0.05), ("q50", 0.5), ("q95", 0.95)):
        assert result["box_area_fraction"][key] == pytest.approx(np.quantile(areas, q), abs=1e-4)
    gray_in_train = len([n for n in names if n in info["grayscale"]])
    assert gray_in_train > 0
    assert result["grayscale_fraction"] == pytest.approx(gray_in_train / len(names), abs=1e-6)
    for index, wnid in enumerate(info["wnids"]):
        assert result["per_class"][wnid]["count"] == int((labels == index).sum())
        assert result["per_class"][wnid]["median_box_area"] == pytest.approx(np.median(areas[labels == index]),
                                                                            abs=1e-4)
    statistics.report(out, 32, str(tmp_path), str(tmp_path / "s.json"), log=lambda *_: None)
    written = json.load(open(tmp_path / "s.json"))
    assert written["mean"] == result["mean"] and set(written["box_area_fraction"]) == {"q05", "q25", "q50", "q75",
                                                                                        "q95"}
    for name in ("colour_histograms.png", "box_areas.png"):
        assert os.path.getsize(tmp_path / name) > 5000


@pytest.fixture(scope="module")
def trained_run(converted, tmp_path_factory):
    folder = tmp_path_factory.mktemp("analysis_run")
    config = folder / "config.toml"
    config.write_text('model = "resnet_tiny"\nseed = 2\n[schedule]\nbase_lr = 0.02\nmax_lr = 0.15\n'
                      'step_size_epochs = 2\n[augment]\npolicy = "flip, translate, scale, rotate, shear, brightness, '
                      'contrast, saturation, hue, grayscale"\n'
                      '[[stages]]\nresolution = 32\nepochs = 3\nbatch_size = 30\n')
    run_dir = str(folder / "run")
    result = run_main(train_py.main, ["--data", converted[0], "--run-dir", run_dir, "--config", str(config),
                                      "--quiet", "--backend", "tensorflow"], ["train.py"])  # in this process
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return run_dir


@pytest.mark.slow
def test_analyze_writes_every_file_and_agrees_with_a_direct_evaluation(converted, trained_run):
    out, _, info = converted
    result = analysis.analyze(out, trained_run, analysis.Options(resolution=32, batch_size=16, hard_count=20),
                              log=lambda *_: None)
    folder = result["out"]
    for name in ("summary.json", "per_class.csv", "confusions.csv", "most_wrong.png", "hard_examples.txt"):
        assert os.path.getsize(os.path.join(folder, name)) > 0, name
    # direct evaluation: the same model on the val records, computed here with numpy
    net = analysis.load_model(trained_run)
    manifest = manifests.read(out, 32)
    batch = next(iter(tf.data.TFRecordDataset(manifests.shard_paths(out, 32, manifest, "val")).batch(1000)))
    parsed = records.parse_batch(batch)
    images = records.decode_images(parsed["image"], "raw", 32).numpy()
    labels = parsed["label"].numpy()
    probabilities = np.asarray(net.predict(images, verbose=0))
    predictions = probabilities.argmax(1)
    assert result["top1"] == pytest.approx((predictions == labels).mean())
    averaged = (probabilities + np.asarray(net.predict(images[:, :, ::-1], verbose=0))) / 2  # flip TTA
    assert result["top1_tta"] == pytest.approx((averaged.argmax(1) == labels).mean())
    assert result["top5_tta"] == pytest.approx(top_k_by_sorting(averaged, labels))
    assert result["resolution"] == result["records_resolution"] == 32
    with open(os.path.join(folder, "per_class.csv")) as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(info["wnids"])
    for row in rows:
        index = info["wnids"].index(row["wnid"])
        mine = labels == index
        assert float(row["accuracy"]) == pytest.approx((predictions[mine] == index).mean(), abs=1e-4)
        assert int(row["count"]) == int(mine.sum())
    assert [float(r["accuracy"]) for r in rows] == sorted(float(r["accuracy"]) for r in rows)
    hard = [line.split("\t") for line in open(os.path.join(folder, "hard_examples.txt")) if not line.startswith("#")]
    assert len(hard) == 20 and all(n.endswith(".JPEG") for n, _ in hard)
    losses = [float(loss) for _, loss in hard]
    assert losses == sorted(losses, reverse=True)
    train_names = set(train_split(out, 32)[3])
    assert {n for n, _ in hard} <= train_names  # hard examples come from train, never val or test


def test_an_eval_resolution_past_any_use_is_refused_before_anything_is_loaded(converted, tmp_path):
    """Trial failure 14: --eval-resolution 5000 built a 30 GB tensor before failing. The records
    are at 32 and 64 px: up to 4 x 64 = 256 px is accepted."""
    from common.errors import UserError
    from training import analysis

    with pytest.raises(UserError, match=r"^--eval-resolution 257: at most 256 px \(4x the largest converted "
                                        r"resolution, 64 px\)$"):
        analysis.analyze(converted[0], str(tmp_path / "no_run"), analysis.Options(eval_resolution=257))
    with pytest.raises(UserError, match=r"no_run/best.keras: no best model"):  # 256 passes the check
        analysis.analyze(converted[0], str(tmp_path / "no_run"), analysis.Options(eval_resolution=256))


@pytest.mark.slow
def test_analyze_at_an_eval_resolution_resizes_the_nearest_records(converted, trained_run):
    out = converted[0]
    result = run_tool("analyze", "--data", out, "--run-dir", trained_run, "--eval-resolution", "56",
                      "--batch-size", "16", "--hard-count", "5")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "val at 56px (from the 64px records)" in result.stdout and "flip TTA" in result.stdout
    summary = json.load(open(os.path.join(trained_run, "analysis", "summary.json")))
    assert summary["resolution"] == 56 and summary["records_resolution"] == 64 and summary["num_examples"] == 30
    assert 0 <= summary["top1_tta"] <= summary["top5_tta"] <= 1 and 0 <= summary["top1"] <= 1
    resized = np.concatenate([i.numpy() for i, _ in build_split(out, "val", 64, 16, resize_to=56)[0]])
    labels = np.concatenate([b.numpy().argmax(1) for _, b in build_split(out, "val", 64, 16)[0]])
    net = analysis.load_model(trained_run)
    assert summary["top1"] == pytest.approx((np.asarray(net.predict(resized, verbose=0)).argmax(1) == labels).mean())


def test_analyze_without_a_run_says_so(converted, tmp_path):
    assert run_tool("analyze", "--data", converted[0], "--run-dir", str(tmp_path), "--resolution", "32").returncode == 2


def test_top_k_accuracy_on_rows_worked_by_hand():
    """Row 0: label 2 has the highest score (top-1 and top-2 hit); row 1: label 0 is second
    (top-2 only); row 2: label 1 is last of three (neither). Top-1 1/3, top-2 2/3, top-3 1."""
    scores = np.array([[0.1, 0.2, 0.7], [0.3, 0.6, 0.1], [0.5, 0.1, 0.4]])
    labels = np.array([2, 0, 1])
    assert [analysis.top_k_accuracy(scores, labels, k) for k in (1, 2, 3)] == pytest.approx([1 / 3, 2 / 3, 1.0])



@pytest.mark.slow
def test_hard_examples_among_the_first_training_images_are_the_highest_losses_there(converted, trained_run, tmp_path):
    """--train-images N (the notebook's quick check): the hard examples are the tenth of the first N
    training images of an evaluation pass with the highest cross-entropy, computed here with numpy."""
    out = converted[0]
    run = str(tmp_path / "run")
    shutil.copytree(trained_run, run)
    result = run_tool("analyze", "--data", out, "--run-dir", run, "--resolution", "32", "--batch-size", "16",
                      "--train-images", "50")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "hard_examples.txt (5 of 50 training images)" in result.stdout
    batch = next(iter(build_split(out, "train", 32, 50, with_filenames=True, training=False)[0]))  # an eval pass
    images, labels, names = batch[0].numpy(), batch[1].numpy().argmax(1), [n.decode() for n in batch[2].numpy()]
    probabilities = np.asarray(analysis.load_model(run).predict(images, verbose=0), dtype=np.float64)
    losses = -np.log(probabilities[np.arange(50), labels])
    expected = [names[i] for i in np.argsort(-losses, kind="stable")[:5]]
    hard = [line.split("\t") for line in open(os.path.join(run, "analysis", "hard_examples.txt"))
            if not line.startswith("#")]
    assert [name for name, _ in hard] == expected
    np.testing.assert_allclose([float(loss) for _, loss in hard], np.sort(losses)[::-1][:5], rtol=1e-3)
    for option in ("--train-images", "--hard-count"):
        refused = run_tool("analyze", "--data", out, "--run-dir", run, option, "-1")
        assert refused.returncode == 2 and refused.stderr.strip().splitlines()[-1].endswith(
            f"error: {option} -1: expected 0 (the default) or a positive count"), refused.stderr


@pytest.mark.slow
def test_an_analysis_made_of_the_same_inputs_is_reported_not_repeated(converted, trained_run, tmp_path,
                                                                     monkeypatch):
    """A notebook run twice analysed the same best.keras again (minutes of forward passes): the same
    model, records and options now find the analysis up to date and leave its files alone; another
    option, --force, another best.keras, a damaged summary or an analysis cut short analyse again."""
    out = converted[0]
    run = str(tmp_path / "run")
    shutil.copytree(trained_run, run)
    folder = os.path.join(run, "analysis")
    shutil.rmtree(folder, ignore_errors=True)

    def analyse(*options):
        result = run_tool("analyze", "--data", out, "--run-dir", run, "--resolution", "32", "--batch-size", "16",
                          "--train-images", "20", *options)
        assert result.returncode == 0, result.stderr[-2000:]
        return result.stdout

    def written():
        return {name: os.stat(os.path.join(folder, name)).st_mtime_ns for name in analysis.OUTPUTS}

    assert "wrote " in analyse()
    first = written()
    again = analyse()
    assert again.startswith(f"already analysed: {folder}/ is up to date") and "wrote " not in again
    assert written() == first
    assert "wrote " in analyse("--hard-count", "3")  # another option
    assert "already analysed" in analyse("--hard-count", "3")
    assert "wrote " in analyse("--hard-count", "3", "--force")
    net = analysis.load_model(run)  # another best.keras: the same network, one layer's weights changed
    weighted = next(layer for layer in reversed(net.layers) if layer.get_weights())
    weights = weighted.get_weights()
    weighted.set_weights([weights[0] + 0.01, *weights[1:]])
    net.save(os.path.join(run, "best.keras"))
    assert "wrote " in analyse("--hard-count", "3")
    with open(os.path.join(folder, "summary.json"), "w") as handle:
        handle.write("{not json")
    assert "wrote " in analyse("--hard-count", "3")
    # an analysis cut short (here in the pass over the training images, after the val files) leaves no
    # summary.json: none vouches for a mix of old and new files, and the next run analyses again
    monkeypatch.setattr(analysis, "hard_examples", lambda *args, **kwargs: (_ for _ in ()).throw(OSError("cut")))
    with pytest.raises(OSError, match="cut"):
        analysis.analyze(out, run, analysis.Options(resolution=32, batch_size=16, hard_count=4, train_images=20),
                         log=lambda *_: None)
    assert not os.path.exists(os.path.join(folder, "summary.json"))
    monkeypatch.undo()
    assert "wrote " in analyse("--hard-count", "3")
