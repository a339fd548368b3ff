"""A run directory left damaged by a kill, a full disk or a user: what the next train.py makes of it.

train.py runs in this process (`train.main`): the property is what the run directory holds
afterwards, which no process boundary changes.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import train
from pipeline import synthetic
from tests.conftest import ROOT, SMALL_RESNET
from training import resume
from training.run_dir import RunDir, TrainingState

# a ResNet of two narrow blocks: what is tested is the run directory, not the network
SETTINGS = [f"model={SMALL_RESNET}", "stages.0.resolution=32",
            "stages.0.epochs=1", "stages.0.batch_size=32", "stages.1.resolution=32", "stages.1.epochs=1",
            "stages.1.batch_size=32", "schedule.step_size_epochs=1",
            "final_resolution=32"]


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    return synthetic.make_records(str(tmp_path_factory.mktemp("repairs")), [32], shards_per_split=2,
                                  num_classes=4, train_per_class=32, val_per_class=8, test_images=0, seed=5)


def run_train(records, run_dir, *extra) -> int:
    return train.main(["--data", records, "--run-dir", str(run_dir), "--backend", "tensorflow", "--quiet",
                       "--config", os.path.join(ROOT, "configs", "demo.toml"),
                       *(f"--set={s}" for s in SETTINGS), *extra])


def checkpoint_weights(run_dir) -> list[np.ndarray]:
    with np.load(run_dir / "checkpoint.npz") as data:
        return [data[k] for k in sorted(k for k in data.files if k.startswith("w"))]


def best_model_weights(run_dir) -> list[np.ndarray]:
    import keras

    return keras.saving.load_model(run_dir / "best.keras", compile=False).get_weights()


def assert_same_arrays(first, second):
    assert len(first) == len(second) and len(first) > 10
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


@pytest.fixture(scope="module")
def one_epoch_done(records, tmp_path_factory):
    """The first of two epochs trained (the first epoch is always the best so far); each test
    damages its own copy, then trains the second."""
    run_dir = tmp_path_factory.mktemp("one_epoch") / "run"
    assert run_train(records, run_dir, "--stop-after", "1") == 0
    assert json.loads((run_dir / "state.json").read_text())["best_epoch"] == 1
    return run_dir


def copy_of(run_dir, tmp_path):
    import shutil

    target = tmp_path / "run"
    shutil.copytree(run_dir, target)
    return target


def assert_best_model_is_the_best_epochs(run_dir, first_epoch_run):
    """best.keras holds the weights of the epoch the run names as best: the first epoch's
    checkpoint or the last one's."""
    best = json.loads((run_dir / "state.json").read_text())["best_epoch"]
    assert best in (1, 2)
    expected = checkpoint_weights(first_epoch_run if best == 1 else run_dir)
    assert_same_arrays(best_model_weights(run_dir), expected)


def test_best_model_lost_while_written_after_the_checkpoint_recorded_it_is_written_again(
        records, one_epoch_done, tmp_path, capsys):
    """Trial failure: a kill (or a full disk) while best.keras is written, after the checkpoint
    already recorded the new best, left a 0-byte best.partial.keras and no best.keras for good
    (the resumed run rewrote it only if a later epoch improved)."""
    run_dir = copy_of(one_epoch_done, tmp_path)
    (run_dir / "best.keras").unlink()
    (run_dir / "best.partial.keras").write_bytes(b"")
    assert run_train(records, run_dir) == 0
    assert "best.keras: written again from the checkpoint (epoch 1, the best so far)" in capsys.readouterr().out
    assert_best_model_is_the_best_epochs(run_dir, one_epoch_done)


def test_a_stale_best_model_older_than_the_checkpoint_of_its_best_epoch_is_written_again(
        records, one_epoch_done, tmp_path, capsys):
    """The kill came while a later best replaced an earlier one: the old best.keras is still
    there, older than the checkpoint that names the new best."""
    run_dir = copy_of(one_epoch_done, tmp_path)
    stale = os.stat(run_dir / "checkpoint.npz").st_mtime - 3600
    os.utime(run_dir / "best.keras", (stale, stale))
    assert run_train(records, run_dir) == 0
    assert "best.keras: written again from the checkpoint (epoch 1, the best so far)" in capsys.readouterr().out
    assert_best_model_is_the_best_epochs(run_dir, one_epoch_done)


def test_a_best_model_in_place_is_left_alone(records, one_epoch_done, tmp_path, capsys):
    run_dir = copy_of(one_epoch_done, tmp_path)
    assert run_train(records, run_dir) == 0
    assert "written again" not in capsys.readouterr().out
    assert_best_model_is_the_best_epochs(run_dir, one_epoch_done)


def test_a_best_model_of_an_earlier_epoch_lost_is_chosen_again_from_the_next_epoch(tmp_path):
    """Its weights are gone: the recorded best is forgotten, so the next epoch's model becomes
    best.keras (callbacks.BestModel) and the record names the model on disk."""
    run = RunDir(str(tmp_path))
    state = TrainingState(epoch=3, best_epoch=2, best_val_accuracy=0.5)
    said = []
    resume.restore_best_model(run, model=None, state=state, total_epochs=10, log=said.append)
    assert state.best_epoch is None and state.best_val_accuracy is None and state.improved_by(0.01)
    assert said == [f"{run.best_model}: missing (the weights of epoch 2, the best so far, are gone); "
                    f"the best model is chosen again from epoch 4 on"]
    # with every epoch trained (killed in the final evaluation) nothing would choose it again:
    # the record stays, and the loss is said
    finished = TrainingState(epoch=3, best_epoch=2, best_val_accuracy=0.5)
    said.clear()
    resume.restore_best_model(run, model=None, state=finished, total_epochs=3, log=said.append)
    assert (finished.best_epoch, finished.best_val_accuracy) == (2, 0.5)
    assert said == [f"{run.best_model}: missing (the weights of epoch 2, the best, are gone) and no epoch is left "
                    f"to train: it cannot be rebuilt; the final evaluation uses the last weights"]


def test_a_deleted_checkpoint_is_named_instead_of_starting_again_from_epoch_one(
        records, one_epoch_done, tmp_path, capsys):
    """Trial failure: a deleted checkpoint.npz silently restarted the run from epoch 1 although
    state.json said otherwise (and overwrote its log and best model)."""
    run_dir = copy_of(one_epoch_done, tmp_path)
    (run_dir / "checkpoint.npz").unlink()
    log = (run_dir / "log.csv").read_text()
    assert run_train(records, run_dir) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "checkpoint.npz: missing, but" in lines[0]
    assert "state.json says 1 epoch was done" in lines[0]
    assert (run_dir / "log.csv").read_text() == log


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (a device that is always full)")
def test_a_full_disk_while_the_checkpoint_is_written_names_it_and_the_next_run_resumes(
        records, one_epoch_done, tmp_path, capsys):
    """Trial failure 10: a full disk during training said `error: No space left on device`, no
    file named. The checkpoint's temporary file is made a link to /dev/full: every write to it
    fails with ENOSPC, as on a full disk, and only there."""
    run_dir = copy_of(one_epoch_done, tmp_path)
    before = (run_dir / "checkpoint.npz").read_bytes()
    (run_dir / "checkpoint.npz.tmp").symlink_to("/dev/full")
    assert run_train(records, run_dir) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {run_dir}/checkpoint.npz: cannot write it ("), lines
    assert "No space left on device" in lines[0] and lines[0].endswith("the previous version, if any, is kept")
    assert (run_dir / "checkpoint.npz").read_bytes() == before  # epoch 1's, whole
    assert run_train(records, run_dir) == 0  # the link is gone with the failed write: the run resumes
    assert "resuming" in capsys.readouterr().out
    assert json.loads((run_dir / "state.json").read_text())["epoch"] == 2
    assert [row.split(",")[0] for row in (run_dir / "log.csv").read_text().splitlines()[1:]] == ["1", "2"]


def test_resuming_on_records_of_another_class_count_names_both_counts(one_epoch_done, tmp_path, capsys):
    """Trial failure 12: "the checkpoint holds another model" instead of the class counts."""
    other = synthetic.make_records(str(tmp_path / "three"), [32], shards_per_split=2, num_classes=3,
                                   train_per_class=32, val_per_class=8, test_images=0, seed=5)
    run_dir = copy_of(one_epoch_done, tmp_path)
    assert run_train(other, run_dir) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0] == (
        f"error: {run_dir}/checkpoint.npz: the checkpoint's model scores 4 classes, the records in --data hold 3; "
        f"resume with the records it began with (or a new --run-dir)")


def test_resuming_on_records_converted_again_into_other_shards_says_the_order_changes(
        one_epoch_done, tmp_path, capsys):
    """Trial failure 12: resuming over re-sharded records changed the epoch order unreported."""
    resharded = synthetic.make_records(str(tmp_path / "resharded"), [32], shards_per_split=3, num_classes=4,
                                       train_per_class=32, val_per_class=8, test_images=0, seed=5)
    run_dir = copy_of(one_epoch_done, tmp_path)
    assert run_train(resharded, run_dir) == 0
    out = capsys.readouterr().out
    assert ("resume: the records at 32px are another conversion than the run began with (other shards, seed or "
            "source): training goes on, in another epoch order than an uninterrupted run") in out
    with open(os.path.join(resharded, "32px", "manifest.json")) as handle:
        fingerprint = json.load(handle)["fingerprint"]
    assert json.loads((run_dir / "state.json").read_text())["records"] == {"32": fingerprint}


def test_resuming_on_the_same_records_says_nothing_about_them(records, one_epoch_done, tmp_path, capsys):
    run_dir = copy_of(one_epoch_done, tmp_path)
    assert run_train(records, run_dir) == 0
    assert "another conversion" not in capsys.readouterr().out
