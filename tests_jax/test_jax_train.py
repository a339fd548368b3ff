"""The trainer under Keras-on-JAX, as Colab's TPU runtime runs it, on this CPU: training that
learns, SIGKILL and restart, a run moving from JAX to TensorFlow and back (mid-stage), a
2-device DataParallel run, and augmentation on the device refused.

The JAX runs are `train.main` in this process (the suite runs under the JAX backend); a separate
`train.py` process only where the boundary is the property or the backend differs: the run killed
with SIGKILL, the TensorFlow side of a move, and the run with two forced host devices (the device
count is fixed when JAX starts).
"""

from __future__ import annotations

import json
import os
import signal
import time

import numpy as np
import pytest

from tests import compile_cache
from tests.conftest import SMALL_RESNET
from tests.test_train import (
    ENV,
    assert_same_weights,
    config_file,
    device_config,
    log_rows,
    records,  # noqa: F401  (a fixture)
    train,
    train_here,
    weights,
)

pytestmark = pytest.mark.slow

JAX = ["--backend", "jax"]


def jax_here(data, run_dir, config, capsys, *extra) -> tuple[int, str]:
    """train.py's command line under JAX in this process: its exit code and what it printed."""
    return train_here(data, run_dir, config, capsys, *extra, backend="jax")[:2]


def train_with(backend, data, run_dir, config, capsys, *extra) -> tuple[int, str]:
    """A run under `backend`: here for JAX, a train.py process for TensorFlow."""
    if backend == "jax":
        return jax_here(data, run_dir, config, capsys, *extra)
    result = train(data, run_dir, config, "--backend", backend, *extra)
    return result.returncode, result.stdout + result.stderr


def test_two_stage_run_under_jax_learns(records, tmp_path, capsys):  # noqa: F811
    run_dir = str(tmp_path / "jax")
    code, out = jax_here(records, run_dir, config_file(tmp_path, [(32, 5, 32), (48, 2, 32)]), capsys)
    assert code == 0, out[-3000:]
    assert "backend jax" in out and "rules: no Dense" in out
    rows = log_rows(run_dir)
    assert [int(r["epoch"]) for r in rows] == list(range(1, 8))
    final = json.load(open(os.path.join(run_dir, "final.json")))
    assert final["backend"] == "jax" and final["best_val_accuracy"] > 0.35  # chance: 0.125


def test_sigkill_under_jax_then_restart_matches_an_uninterrupted_run(records, tmp_path, capsys):  # noqa: F811
    config = config_file(tmp_path, [(32, 2, 16)], "[runtime]\ndeterministic = true\ncheckpoint_minutes = 0.002\n")
    clean = str(tmp_path / "clean")
    assert jax_here(records, clean, config, capsys)[0] == 0
    run_dir = str(tmp_path / "killed")
    process = train(records, run_dir, config, *JAX, wait=False)
    state_path = os.path.join(run_dir, "state.json")
    deadline = time.time() + 300
    while time.time() < deadline:
        try:
            state = json.load(open(state_path))
            if state["epoch"] >= 1 and state.get("batch", 0) >= 3:  # a timer checkpoint in epoch 2
                break
        except (FileNotFoundError, json.JSONDecodeError):
            pass
        time.sleep(0.05)
    # the kill lands while the run trains: it has not finished, and its checkpoint is short of the end
    assert process.poll() is None, "the run ended before the kill"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    interrupted = json.load(open(state_path))
    assert interrupted["epoch"] == 1 and 3 <= interrupted["batch"] < 20, interrupted  # mid-epoch
    assert not os.path.exists(os.path.join(run_dir, "final.json"))
    code, out = jax_here(records, run_dir, config, capsys)
    assert code == 0, out[-3000:]
    assert f"resuming {run_dir}: 1 epochs done and {interrupted['batch']} batches of the next" in out
    assert [r["epoch"] for r in log_rows(run_dir)] == ["1", "2"]
    for killed_row, clean_row in zip(log_rows(run_dir), log_rows(clean)):  # epoch 2 was cut and resumed
        assert float(killed_row["val_loss"]) == pytest.approx(float(clean_row["val_loss"]), rel=1e-4)
    (clean_arrays, clean_state), (killed_arrays, killed_state) = weights(clean), weights(run_dir)
    assert killed_state["global_step"] == clean_state["global_step"] == 2 * 20
    assert_same_weights(clean_arrays, killed_arrays)


def test_augmentation_on_the_device_is_refused_under_jax(records, tmp_path, capsys):  # noqa: F811
    """(Trained under TensorFlow: tests/test_train.py.)"""
    code, _, err = train_here(records, str(tmp_path / "jax"), device_config(tmp_path), capsys, backend="jax")
    assert code == 2
    assert err.strip().splitlines()[-1].startswith('error: augment.on = "device" needs the TensorFlow backend'), err
    assert not os.path.exists(tmp_path / "jax" / "checkpoint.npz")


def test_a_run_moves_from_jax_to_tensorflow_and_back(records, tmp_path, capsys):  # noqa: F811
    """A checkpoint written under one backend resumes under the other, both ways, in one run:
    epoch 1 under JAX, epoch 2 under TensorFlow (a train.py process), epochs 3-4 under JAX again.
    Both moves land inside the first stage, and the last session crosses into the second; each
    epoch after a move continues from the trained weights and the schedule, as a run that never
    moved does."""
    config = config_file(tmp_path, [(32, 3, 32), (48, 1, 32)])
    reference = str(tmp_path / "reference")
    assert jax_here(records, reference, config, capsys)[0] == 0
    moved = str(tmp_path / "moved")
    code, out = jax_here(records, moved, config, capsys, "--stop-after", "1")
    assert code == 0 and "stopped after epoch 1 of 4" in out, out[-3000:]
    code, out = train_with("tensorflow", records, moved, config, capsys, "--stop-after", "1")  # one more epoch
    assert code == 0 and "stopped after epoch 2 of 4" in out, out[-3000:]
    assert "backend tensorflow" in out and "resuming" in out and "1 epochs done, global step 10" in out
    code, out = jax_here(records, moved, config, capsys)
    assert code == 0, out[-3000:]
    assert "backend jax" in out and "2 epochs done, global step 20" in out
    rows, expected = log_rows(moved), log_rows(reference)
    assert [r["epoch"] for r in rows] == ["1", "2", "3", "4"]
    assert [r["lr"] for r in rows] == [r["lr"] for r in expected]  # the schedule continues on time
    # each first epoch after a move continues from the trained weights: no reset to chance
    for after_move in (1, 2):
        assert float(rows[after_move]["accuracy"]) == pytest.approx(float(expected[after_move]["accuracy"]), abs=0.08)
        assert float(rows[after_move]["loss"]) == pytest.approx(float(expected[after_move]["loss"]), rel=0.05)
    assert weights(moved)[1]["global_step"] == 3 * 10 + 10


def test_two_device_data_parallel_on_cpu_equals_one_device(records, tmp_path, capsys):  # noqa: F811
    """DataParallel splits every batch over the devices and reduces the gradients (and the batch
    norms' statistics) over all of them: the same arithmetic as one device with the whole batch."""
    config = config_file(tmp_path, [(32, 2, 32)], "[runtime]\ndeterministic = true\n", model=SMALL_RESNET)
    env = {**ENV, "XLA_FLAGS": compile_cache.xla_flags("--xla_force_host_platform_device_count=2")}
    run_dir, single = str(tmp_path / "dp"), str(tmp_path / "single")
    # A gentle learning rate: at the recipe's peak the float-level differences of a split reduction
    # grow chaotically (measured: equal losses to 4e-4 after one epoch, 2% apart after two).
    gentle = ["--set", "schedule.base_lr=0.002", "--set", "schedule.max_lr=0.01"]
    result = train(records, run_dir, config, *JAX, *gentle, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "2 replica(s)" in result.stdout
    assert jax_here(records, single, config, capsys, *gentle)[0] == 0
    assert [r["epoch"] for r in log_rows(run_dir)] == ["1", "2"]
    # measured: losses equal to 5e-6 (epoch 1) and 8e-5 (epoch 2), single weights a few 1e-3 apart
    for split, whole in zip(log_rows(run_dir), log_rows(single)):
        assert float(split["loss"]) == pytest.approx(float(whole["loss"]), rel=1e-3)
    (arrays, state), (single_arrays, _) = weights(run_dir), weights(single)
    assert state["global_step"] == 20
    assert len(arrays) == len(single_arrays) > 0
    drift = sum(float(np.abs(a - b).sum()) for a, b in zip(arrays, single_arrays))
    assert drift < 0.01 * sum(float(np.abs(b).sum()) for b in single_arrays)  # under 1% in all
