"""A student's own model file trains under JAX exactly as under TensorFlow (the example file)."""

from __future__ import annotations

import csv
import json
import os

import pytest

from pipeline import synthetic

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    return synthetic.make_records(str(tmp_path_factory.mktemp("jax_custom")), [32], num_classes=4,
                                  train_per_class=48, val_per_class=8, test_images=0, seed=7)


def test_the_example_student_network_trains_under_jax(records, tmp_path):
    from training import config as configs
    from training.preparation import prepare
    from training.runtime import detect
    from training.trainer import Trainer

    student = os.path.join(ROOT, "examples", "student_net.py")
    config = configs.read(os.path.join(ROOT, "configs", "demo.toml"), [
        f"model={student}:build", "stages.0.epochs=3", "stages.0.batch_size=32", "stages.1.resolution=32",
        "stages.1.epochs=1", "stages.1.batch_size=32", "schedule.base_lr=0.002", "schedule.max_lr=0.02"])
    run_dir = str(tmp_path / "run")
    runtime = detect("cpu", "jax")
    with prepare(config, records, run_dir, runtime) as prepared:
        result = Trainer(config, prepared, runtime, verbose=0, log=lambda *_: None).fit()
    with open(os.path.join(run_dir, "log.csv")) as handle:
        losses = [float(row["loss"]) for row in csv.DictReader(handle)]
    assert len(losses) == 4 and losses[-1] < losses[0], losses  # it learns
    final = json.load(open(os.path.join(run_dir, "final.json")))
    assert final["backend"] == "jax" and final["rules_broken"] == [] and result["val_accuracy"] >= 0
    assert final["model"].endswith("student_net.py:build")
