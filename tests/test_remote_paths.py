"""Drive and Cloud Storage paths (`gs://`) end to end, offline: TensorFlow's in-memory `ram://`
file system takes the place of a bucket. Like gs://, it is a URL-style path that only tf.io.gfile
reaches (common/files.py: is_remote), so every write goes through the same code as to a bucket:
temporary names and renames, the .keras archive through a local copy, the lock, the log.

Everything runs in this process (`tools.*.main`, `train.main`): ram:// lives in its memory.
"""

from __future__ import annotations

import json
import os

import tensorflow as tf

import train
from pipeline import synthetic
from tests.conftest import ROOT
from tools import analyze, convert, verify

SETTINGS = ["--set=stages.0.resolution=32", "--set=stages.0.epochs=1", "--set=stages.0.batch_size=8",
            "--set=stages.1.resolution=32", "--set=stages.1.epochs=1", "--set=stages.1.batch_size=8"]


def test_convert_verify_train_resume_and_analyze_on_a_bucket_style_path(tmp_path, capsys):
    source = str(tmp_path / "tiny-imagenet-200.zip")
    synthetic.make_zip(source, num_classes=4, train_per_class=16, val_per_class=4, test_images=0, seed=1)
    data, run_dir = "ram://bucket/records", "ram://bucket/runs/r"
    assert convert.main(["--source", source, "--out", data, "--resolutions", "32", "--shards-per-split", "2",
                         "--workers", "1"]) == 0
    assert verify.main([data]) == 0
    with tf.io.gfile.GFile(f"{data}/32px/manifest.json") as handle:
        assert json.load(handle)["complete"] is True

    command = ["--data", data, "--run-dir", run_dir, "--backend", "tensorflow", "--quiet",
               "--config", os.path.join(ROOT, "configs", "demo.toml"), *SETTINGS]
    assert train.main([*command, "--stop-after", "1"]) == 0
    assert train.main(command) == 0
    out = capsys.readouterr().out
    assert f"resuming {run_dir}: 1 epochs done" in out and "final evaluation at 32px" in out
    written = set(tf.io.gfile.listdir(run_dir))
    assert {"best.keras", "checkpoint.npz", "state.json", "config.json", "log.csv", "final.json"} <= written
    assert not {name for name in written if "partial" in name or name.endswith(".tmp") or name == "run.lock"}
    with tf.io.gfile.GFile(f"{run_dir}/log.csv") as handle:
        assert [line.split(",")[0] for line in handle.read().splitlines()[1:]] == ["1", "2"]
    with tf.io.gfile.GFile(f"{run_dir}/final.json") as handle:
        assert json.load(handle)["epochs"] == 2

    assert analyze.main(["--data", data, "--run-dir", run_dir, "--resolution", "32", "--batch-size", "8"]) == 0
    assert "summary.json" in tf.io.gfile.listdir(f"{run_dir}/analysis")
