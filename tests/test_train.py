"""The trainer end to end: stages, logs, resume after SIGKILL, replicas, workers, refusals."""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

import train as train_py
from pipeline import synthetic
from tests.conftest import SMALL_RESNET

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": "tensorflow"}


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    """8 learnable classes, 40 train and 10 val images each, at 32 and 48 px."""
    return synthetic.make_records(str(tmp_path_factory.mktemp("train_data")), [32, 48], shards_per_split=4,
                                  num_classes=8, train_per_class=40, val_per_class=10, test_images=4, seed=3)


POLICY = ("flip, translate, scale:p=0.2, rotate:p=0.2, brightness:p=0.3, contrast:p=0.3, saturation:p=0.3, "
          "hue:p=0.1, grayscale:p=0.05, cutout:p=0.2")


def config_file(tmp_path, stages, extra="", model='"resnet_tiny"'):
    text = f"""
model = {model}
label_smoothing = 0.0
seed = 1
[optimizer]
name = "sgd"
weight_decay = 1e-4
[schedule]
base_lr = 0.02
max_lr = 0.15
step_size_epochs = 2
[augment]
policy = "{POLICY}"
{extra}
"""
    for resolution, epochs, batch in stages:
        text += f"[[stages]]\nresolution = {resolution}\nepochs = {epochs}\nbatch_size = {batch}\n"
    path = tmp_path / "config.toml"
    path.write_text(text)
    return str(path)


def train(data, run_dir, config, *extra, env=None, wait=True, timeout=400):
    command = [sys.executable, os.path.join(ROOT, "train.py"), "--data", data, "--run-dir", run_dir,
               "--config", config, "--quiet", *extra]
    if not wait:
        return subprocess.Popen(command, env=env or ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return subprocess.run(command, env=env or ENV, capture_output=True, text=True, timeout=timeout)


def train_here(data, run_dir, config, capsys, *extra, backend="tensorflow") -> tuple[int, str, str]:
    """train.py's command line in this process (the backend this process imported Keras with):
    exit code, stdout and stderr. For what a process boundary does not change: what a run writes,
    its messages and its refusals."""
    capsys.readouterr()
    code = train_py.main(["--data", data, "--run-dir", run_dir, "--config", config, "--quiet",
                          "--backend", backend, *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_same_weights(expected, got, rtol=1e-4, atol=1e-5):
    """Every array equal, and as many: a `zip` alone would compare fewer when one list is short."""
    assert len(got) == len(expected) > 0
    for index, (a, b) in enumerate(zip(expected, got)):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=f"array {index}")


def log_rows(run_dir):
    with open(os.path.join(run_dir, "log.csv")) as handle:
        return list(csv.DictReader(handle))


def checkpoint_arrays(run_dir):
    """Every array of the checkpoint by its name (weights w, optimizer variables o, loss scale s), and its state."""
    with np.load(os.path.join(run_dir, "checkpoint.npz")) as data:
        return {k: data[k] for k in data.files if k != "state"}, json.loads(data["state"].tobytes().decode())


def weights(run_dir):
    """The checkpoint's model weights then optimizer variables (the order of their names), and its state."""
    arrays, state = checkpoint_arrays(run_dir)
    return [arrays[k] for prefix in "wo" for k in sorted(k for k in arrays if k.startswith(prefix))], state


def scored_by_best_model(data, run_dir):
    """numpy's cross-entropy and hit (top-1) of each val image at 32 px, in file order, under the
    run's best.keras: what an evaluation of the first N images must report."""
    from tests.conftest import build_split
    from training import analysis

    batches = [(i.numpy(), b.numpy().argmax(1)) for i, b in build_split(data, "val", 32, 16, training=False)[0]]
    images, labels = np.concatenate([i for i, _ in batches]), np.concatenate([b for _, b in batches])
    probabilities = np.asarray(analysis.load_model(run_dir).predict(images, verbose=0), np.float64)
    return -np.log(probabilities[np.arange(labels.size), labels]), probabilities.argmax(1) == labels


@pytest.mark.slow
def test_two_stage_run_learns_and_logs_every_epoch_once(records, tmp_path, capsys):
    run_dir = str(tmp_path / "run")
    # as a user starts it: no TF_CPP_MIN_LOG_LEVEL of ours (which would switch the quiet start off),
    # so a whole successful run also proves that nothing at all reaches stderr
    users = {k: v for k, v in ENV.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "TIN_VERBOSE")}
    result = train(records, run_dir, config_file(tmp_path, [(32, 5, 32), (48, 2, 32)]), env=users)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stderr == "", result.stderr[-3000:]
    assert "rules: no Dense, no Dropout" in result.stdout and "RULE BROKEN" not in result.stdout
    rows = log_rows(run_dir)
    assert [int(r["epoch"]) for r in rows] == list(range(1, 8))
    assert [int(r["resolution"]) for r in rows] == [32] * 5 + [48] * 2
    assert [int(r["stage"]) for r in rows] == [1] * 5 + [2] * 2
    for row in rows:
        assert float(row["images_per_sec"]) > 0 and 0 <= float(row["val_top5"]) <= 1
        assert 0 <= float(row["input_wait"]) <= 1
    final = json.load(open(os.path.join(run_dir, "final.json")))
    assert final["resolution"] == 48 and final["epochs"] == 7
    assert final["best_val_accuracy"] > 0.35, rows  # chance is 0.125
    _, state = weights(run_dir)
    assert state["epoch"] == 7 and state["global_step"] == 7 * (320 // 32)
    for name in ("best.keras", "curves.png", "config.json", "state.json"):
        assert os.path.exists(os.path.join(run_dir, name)), name
    assert os.listdir(os.path.join(run_dir, "tensorboard"))
    # a finished run started again does nothing twice
    again = train_here(records, run_dir, config_file(tmp_path, [(32, 5, 32), (48, 2, 32)]), capsys)
    assert again[0] == 0 and len(log_rows(run_dir)) == 7


@pytest.mark.slow
def test_sigkill_mid_epoch_in_float16_then_restart_matches_an_uninterrupted_run(records, tmp_path):
    # Deterministic ops and a checkpoint timer of ~0.1 s, so the kill lands after a mid-epoch save;
    # mixed float16, so that the checkpoint also carries the loss-scale wrapper's state through the
    # kill. float16 convolutions on a CPU are emulated (3 s a step for resnet_tiny): a ResNet of two
    # narrow blocks and 12 steps an epoch (runtime.steps_per_epoch). The killed run is resumed for
    # one epoch (--stop-after 1: it finishes the cut epoch and stops cleanly), then a third session
    # trains the second stage from its first epoch: three sessions that must add up, to the last
    # bits, to the uninterrupted run, which crossed the stage boundary without stopping.
    steps = 12
    config = config_file(tmp_path, [(32, 2, 16), (48, 1, 16)],
                         '[runtime]\ndeterministic = true\ncheckpoint_minutes = 0.002\n'
                         f'mixed_precision = "mixed_float16"\nsteps_per_epoch = {steps}\n', model=SMALL_RESNET)
    clean = str(tmp_path / "clean")
    # the uninterrupted run beside the one killed (two processes at once: the test's wall time)
    reference = train(records, clean, config, wait=False)
    killed = str(tmp_path / "killed")
    process = train(records, killed, config, wait=False)
    deadline = time.time() + 300
    state_path = os.path.join(killed, "state.json")
    while time.time() < deadline and process.poll() is None:
        try:
            state = json.load(open(state_path))
            if state["epoch"] >= 1 and state.get("batch", 0) >= 3:  # a timer checkpoint in epoch 2
                break
        except (FileNotFoundError, json.JSONDecodeError):
            pass
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before the kill"
    assert time.time() < deadline, "no checkpoint in epoch 2 within 300 s"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    output = reference.communicate(timeout=300)[0]  # (read to its end: a full pipe would stall it)
    assert reference.returncode == 0, output[-3000:]
    interrupted_at = json.load(open(state_path))
    assert interrupted_at["epoch"] == 1 and 3 <= interrupted_at["batch"] < steps, interrupted_at  # mid-epoch
    resumed = train(records, killed, config, "--stop-after", "1")
    assert resumed.returncode == 0, resumed.stdout[-3000:]
    assert f"resuming {killed}: 1 epochs done and {interrupted_at['batch']} batches of the next" in resumed.stdout
    assert "stopped after epoch 2 of 3 as asked" in resumed.stdout
    assert [r["epoch"] for r in log_rows(killed)] == ["1", "2"]
    last = train(records, killed, config)
    assert last.returncode == 0, last.stdout[-3000:]
    rows_clean, rows_killed = log_rows(clean), log_rows(killed)
    assert [r["epoch"] for r in rows_killed] == ["1", "2", "3"]
    assert [r["lr"] for r in rows_killed] == [r["lr"] for r in rows_clean]
    for killed_row, clean_row in zip(rows_killed, rows_clean, strict=True):  # (float16 forward passes: to 1e-3)
        assert float(killed_row["val_loss"]) == pytest.approx(float(clean_row["val_loss"]), rel=1e-3), killed_row
    (clean_arrays, clean_state), (killed_arrays, killed_state) = checkpoint_arrays(clean), checkpoint_arrays(killed)
    assert killed_state["global_step"] == clean_state["global_step"] == 3 * steps
    # every array equal, and as many: weights (w), optimizer variables (o), the loss scale's (s)
    assert clean_state["loss_scale_variables"], "the loss-scale wrapper's state is saved"
    assert sorted(clean_arrays) == sorted(killed_arrays)
    names = sorted(clean_arrays)
    assert_same_weights([clean_arrays[k] for k in names], [killed_arrays[k] for k in names])
    # the wrapper's step counter ran through the three sessions (less any reset by an overflow, the
    # same in both runs): past what the first two had done
    counter = clean_state["loss_scale_variables"].index("step_counter")
    assert int(killed_arrays[f"s{counter:05d}"]) == int(clean_arrays[f"s{counter:05d}"]) > 2 * steps


@pytest.mark.slow
def test_two_replicas_on_logical_cpus(records, tmp_path):
    """Two replicas train every step; with runtime.val_steps = 1 each evaluation scores the first
    step of val and nothing else, though the replicas take their halves of it from one input
    pipeline. Worked by hand: 80 val images at 16 a replica are 5 batches, which two replicas
    cannot share, so val's batches are 15 (6 batches; dataset._even_eval_batch) and one step is the
    first 30 images. numpy scores them with best.keras: its epoch's row must agree with those 30
    and with none of the counts a wrong take would score (15: one batch; 32: the plain batch; 60:
    two steps; 80: all). To one prediction and 1% of the loss: under MirroredStrategy each replica
    keeps BatchNorm moving statistics of its own, and best.keras holds replica 0's, so images 15-29
    are scored with replica 1's in the row. The final evaluation, with the weights of the last
    epoch, must score exactly what the last row scored."""
    run_dir = str(tmp_path / "mirrored")
    config = config_file(tmp_path, [(32, 2, 32)], "[runtime]\ndeterministic = true\nval_steps = 1\n",
                         model=SMALL_RESNET)
    result = train(records, run_dir, config, "--cpu-replicas", "2")
    assert result.returncode == 0, result.stdout[-3000:]
    assert "2 replica(s)" in result.stdout
    rows, state = log_rows(run_dir), weights(run_dir)[1]
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert state["global_step"] == 2 * 10
    losses, hits = scored_by_best_model(records, run_dir)  # all 80, in order
    best = rows[state["best_epoch"] - 1]

    def agrees(count):
        return (abs(float(best["val_accuracy"]) - hits[:count].mean()) <= 1 / 30 + 1e-6
                and float(best["val_loss"]) == pytest.approx(losses[:count].mean(), rel=1e-2))

    assert agrees(30), (best, losses[:30].mean(), hits[:30].mean())
    assert not any(agrees(count) for count in (15, 32, 60, 80)), best
    final = json.load(open(os.path.join(run_dir, "final.json")))
    assert final["val_accuracy"] == pytest.approx(float(rows[-1]["val_accuracy"]), abs=1e-5)
    assert final["val_loss"] == pytest.approx(float(rows[-1]["val_loss"]), rel=1e-4)


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
def test_two_worker_multiworker_mirrored_on_localhost(records, tmp_path):
    ports = free_ports(2)
    cluster = {"worker": [f"localhost:{p}" for p in ports]}
    config = config_file(tmp_path, [(32, 1, 32)], model=SMALL_RESNET)
    run_dir = str(tmp_path / "multi")
    processes = []
    for index in range(2):
        env = {**ENV, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        processes.append(train(records, run_dir, config, "--strategy", "multiworker", env=env, wait=False))
    outputs = []
    for process in processes:
        try:
            outputs.append(process.communicate(timeout=240)[0])
        except subprocess.TimeoutExpired:
            for p in processes:
                p.kill()
            pytest.fail("multi-worker training did not finish in 240 s")
    assert all(p.returncode == 0 for p in processes), "\n".join(o[-2000:] for o in outputs)
    chief, _ = weights(run_dir)
    worker, state = weights(os.path.join(run_dir, "worker-1"))
    assert state["global_step"] == 320 // 32
    # Trainable weights and optimizer slots agree; BatchNorm's moving statistics are each worker's
    # own (MultiWorkerMirroredStrategy does not synchronise them).
    names = state["weights"] + state["optimizer_variables"]
    assert len(names) == len(chief) == len(worker)
    compared = 0
    for name, a, b in zip(names, chief, worker):
        if "moving_" not in name:
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=name)
            compared += 1
    assert compared > 30


def test_configs_breaking_the_epoch_limit_are_refused(records, tmp_path, capsys):
    code, _, err = train_here(records, str(tmp_path / "r"), config_file(tmp_path, [(32, 400, 32), (48, 101, 32)]),
                              capsys)
    assert code == 2
    assert "501 epochs in total breaks the course rule of at most 500 epochs" in err
    assert not os.path.exists(tmp_path / "r" / "checkpoint.npz")


def test_stage_data_copies_the_records_then_trains_from_the_copy(records, tmp_path, capsys):
    """--stage-data is part of the run's preparation: the records the run needs copied (and
    checked) first, the run then reads the copy."""
    local, run_dir = tmp_path / "local", str(tmp_path / "run")
    code, out, err = train_here(records, run_dir, config_file(tmp_path, [(32, 1, 32)], model=SMALL_RESNET), capsys,
                                "--stage-data", str(local))
    assert code == 0 and err == "", err
    assert sorted(os.listdir(local)) == ["32px"] and os.path.exists(local / "32px" / "manifest.json")
    assert json.load(open(os.path.join(run_dir, "final.json")))["epochs"] == 1


def test_val_steps_scores_the_same_first_val_batches_in_every_evaluation(records, tmp_path, capsys):
    """runtime.val_steps = 1 (the notebook's quick check uses 2): every epoch's validation and the
    final evaluation score the first val batch of an evaluation pass and nothing else. numpy scores
    that batch here with best.keras (the log row of its epoch must agree); the final evaluation,
    with the weights of the last epoch, must equal the last row (Keras's own validation_steps would
    have gone on to the second batch in epoch 2)."""
    from training import report

    run_dir = str(tmp_path / "run")
    config = config_file(tmp_path, [(32, 2, 16)], "[runtime]\nsteps_per_epoch = 3\nval_steps = 1\n",
                         model=SMALL_RESNET)
    code, out, err = train_here(records, run_dir, config, capsys)
    assert code == 0, err[-3000:]
    losses, hits = scored_by_best_model(records, run_dir)  # val's batches of 16: the first is images 0-15
    first_loss, first_accuracy = losses[:16].mean(), hits[:16].mean()
    whole_loss, second_loss = losses.mean(), losses[16:32].mean()
    assert min(abs(first_loss - whole_loss), abs(first_loss - second_loss)) > 1e-3  # the first batch tells apart
    rows, state = log_rows(run_dir), weights(run_dir)[1]
    best = rows[state["best_epoch"] - 1]
    assert float(best["val_loss"]) == pytest.approx(first_loss, rel=1e-4)
    assert float(best["val_accuracy"]) == pytest.approx(first_accuracy)
    final = json.load(open(os.path.join(run_dir, "final.json")))
    assert len(rows) == 2 and final["val_loss"] == pytest.approx(float(rows[1]["val_loss"]), rel=1e-4)
    assert final["val_accuracy"] == pytest.approx(float(rows[1]["val_accuracy"]))
    assert "QUICK CHECK (runtime.steps_per_epoch = 3, runtime.val_steps = 1): not a result" in report.lines(run_dir)


RULE_BREAKER = """
import keras


def build(num_classes):
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(8, 3)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.2, name="drop")(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes, name="classifier")(x))
"""


def test_a_model_breaking_the_rules_is_refused(records, tmp_path):
    from common.errors import UserError
    from training import config as configs
    from training.preparation import prepare
    from training.runtime import detect
    from training.trainer import Trainer

    student = tmp_path / "breaker.py"
    student.write_text(RULE_BREAKER)
    config = configs.read(config_file(tmp_path, [(32, 1, 32)]), [f"model={student}:build"])
    runtime = detect("cpu")
    with prepare(config, records, str(tmp_path / "bad"), runtime) as prepared:
        with pytest.raises(UserError, match=r"breaks the course rules: ") as refused:
            Trainer(config, prepared, runtime, log=lambda *_: None).fit()
    # both breaks are named, each with its layer
    assert "no fully connected layers: classifier" in str(refused.value), refused.value
    assert "no dropout: drop" in str(refused.value), refused.value
    assert not os.path.exists(tmp_path / "bad" / "checkpoint.npz")
    assert not os.path.exists(tmp_path / "bad" / "run.lock")  # released by whoever prepared the run


def test_an_experiment_trains_a_rule_breaker_and_is_marked_everywhere(records, tmp_path, capsys):
    student = tmp_path / "breaker.py"
    student.write_text(RULE_BREAKER)
    run_dir = str(tmp_path / "experiment")
    config = config_file(tmp_path, [(32, 1, 32)], model=SMALL_RESNET)
    code, out, err = train_here(records, run_dir, config, capsys, "--set", f"model={student}:build",
                                "--set", "rules=experiment")
    assert code == 0, err[-3000:]
    assert "EXPERIMENT" in out and "its output read as logits" in out, out
    final = json.load(open(os.path.join(run_dir, "final.json")))
    state = json.load(open(os.path.join(run_dir, "state.json")))
    for record in (final, state):
        broken = record["rules_broken"]
        assert any(b.startswith("no dropout: drop") for b in broken), broken
        assert any(b.startswith("no fully connected layers: classifier") for b in broken), broken
    # Conv2D 3x3 3->8 with bias, then Dense 8->8 with bias: the student's own parameters, by formula
    # (the wrapper's normalisation holds the manifest's statistics as constants, not weights)
    assert final["parameters"] == (3 * 3 * 3 * 8 + 8) + (8 * 8 + 8)
    assert 0 <= final["val_accuracy_tta"] <= final["val_top5_tta"] <= 1  # with flip test-time augmentation
    # the file is kept in the run directory: a resume from elsewhere still finds the network
    assert open(os.path.join(run_dir, "model.py")).read() == RULE_BREAKER
    code, _, err = train_here(records, str(tmp_path / "plain"), config, capsys, "--stop-after", "1")
    assert code == 0, err[-3000:]
    assert json.load(open(tmp_path / "plain" / "state.json"))["rules_broken"] == []


def test_resuming_with_another_config_is_refused(records, tmp_path, capsys):
    run_dir = str(tmp_path / "r")
    config = config_file(tmp_path, [(32, 1, 32)], model=SMALL_RESNET)
    assert train_here(records, run_dir, config, capsys)[0] == 0
    code, _, err = train_here(records, run_dir, config, capsys, "--set", "seed=5")
    assert code == 2 and "holds a run with another model" in err


def test_cli_errors_are_one_line(tmp_path, capsys):
    demo = os.path.join(ROOT, "configs", "demo.toml")
    code, _, err = train_here(str(tmp_path / "nowhere"), str(tmp_path / "r"), demo, capsys)
    assert code == 2
    assert err.strip().splitlines()[-1].startswith("error: ")
    assert "manifest.json: missing" in err


def device_config(tmp_path):
    """One stage, augmentation in the XLA-compiled train step (object_crop too: the boxes travel
    with the batch); a ResNet of two narrow blocks, as what is tested is the step, not the network."""
    config = config_file(tmp_path, [(32, 1, 32)], '[runtime]\njit_compile = "true"\n', model=SMALL_RESNET)
    with open(config) as handle:
        text = handle.read().replace("[augment]\n", '[augment]\non = "device"\n').replace(
            'policy = "', 'policy = "object_crop:p=0.5, ')
    with open(config, "w") as handle:
        handle.write(text)
    return config


@pytest.mark.slow
def test_augmentation_on_the_device_trains_under_tensorflow(records, tmp_path, capsys):
    """(Refused under JAX: tests_jax/test_jax_train.py.)"""
    run_dir = str(tmp_path / "device")
    code, out, err = train_here(records, run_dir, device_config(tmp_path), capsys)
    assert code == 0, out[-3000:] + err[-3000:]
    assert [r["epoch"] for r in log_rows(run_dir)] == ["1"]


def test_asking_for_an_accelerator_that_is_not_there_is_one_clear_line(records, tmp_path, capsys):
    config = config_file(tmp_path, [(32, 1, 32)])
    code, _, err = train_here(records, str(tmp_path / "tpu"), config, capsys, "--strategy", "tpu")
    assert code == 2
    line = err.strip().splitlines()[-1]
    assert line.startswith("error: --strategy tpu: TensorFlow sees no TPU") and "Installed: tensorflow 2." in line
    assert "tensorflow-tpu" in line and "--backend jax" in line
    code, _, err = train_here(records, str(tmp_path / "gpu"), config, capsys, "--strategy", "gpu")
    assert code == 2 and "--strategy gpu: TensorFlow sees no GPU" in err


@pytest.mark.slow
def test_resume_shows_and_keeps_accepted_changes_and_refuses_others_without_touching_config(records, tmp_path,
                                                                                             capsys):
    run_dir = str(tmp_path / "r")
    config = config_file(tmp_path, [(32, 2, 32)], model=SMALL_RESNET)
    assert train_here(records, run_dir, config, capsys, "--stop-after", "1")[0] == 0
    saved = open(os.path.join(run_dir, "config.json")).read()
    code, _, err = train_here(records, run_dir, config, capsys, "--set", "optimizer.name=adam")
    assert code == 2 and "optimizer.name: 'sgd' -> 'adam'" in err
    assert open(os.path.join(run_dir, "config.json")).read() == saved  # a refused resume changes nothing
    code, out, err = train_here(records, run_dir, config, capsys, "--set", "label_smoothing=0.2",
                                "--set", "runtime.cache=false")
    assert code == 0, out[-3000:] + err[-3000:]
    assert "resume: label_smoothing changed from 0.0 to 0.2" in out
    assert "resume: runtime.cache changed from 'auto' to 'false'" in out
    history = [json.loads(line) for line in open(os.path.join(run_dir, "config_changes.jsonl"))]
    assert len(history) == 1 and history[0]["at_epoch"] == 1
    assert history[0]["changes"]["label_smoothing"] == [0.0, 0.2]
    assert json.load(open(os.path.join(run_dir, "config.json")))["label_smoothing"] == 0.2
    assert [r["epoch"] for r in log_rows(run_dir)] == ["1", "2"]


@pytest.mark.slow
def test_one_process_per_run_directory_and_the_log_always_agrees_with_the_checkpoint(records, tmp_path, capsys):
    run_dir = str(tmp_path / "r")
    config = config_file(tmp_path, [(32, 3, 16)])
    # As left by a run killed after writing epoch 1's row (and best.keras) but before its checkpoint:
    # the fresh start must drop that row, or epoch 1 would be logged twice for good.
    os.makedirs(run_dir)
    with open(os.path.join(run_dir, "log.csv"), "w") as handle:
        handle.write("epoch,stage,resolution,lr,loss\n1,1,32,0.02,2.0\n")
    first = train(records, run_dir, config, wait=False)
    lock = os.path.join(run_dir, "run.lock")
    deadline = time.time() + 120
    while not os.path.exists(lock) and time.time() < deadline:
        time.sleep(0.1)
    # The second and third runs in this process: the lock is another process's (the first's).
    code, _, err = train_here(records, run_dir, config, capsys)
    assert code == 2
    assert f"in use by process {first.pid} on {socket.gethostname()}" in err
    assert [line for line in err.splitlines() if line.startswith("error: ")] == [err.strip().splitlines()[-1]]
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=60)
    code, out, err = train_here(records, run_dir, config, capsys)
    assert code == 0, out[-3000:] + err[-3000:]
    assert [r["epoch"] for r in log_rows(run_dir)] == ["1", "2", "3"]
    assert not os.path.exists(lock)  # released at the end


def test_a_corrupt_checkpoint_is_named_in_one_line(records, tmp_path, capsys):
    run_dir = tmp_path / "r"
    run_dir.mkdir()
    (run_dir / "checkpoint.npz").write_bytes(b"PK\x03\x04 not really a zip")
    code, _, err = train_here(records, str(run_dir), config_file(tmp_path, [(32, 1, 32)]), capsys)
    assert code == 2
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: ") and "checkpoint.npz: unreadable checkpoint (BadZipFile" in last, err


def here(result: tuple[int, str, str]) -> subprocess.CompletedProcess:
    """train_here's (code, out, err) as a finished process, for the checks both share."""
    return subprocess.CompletedProcess(["train.py"], *result)


def one_error_line(result):
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert result.returncode == 2 and errors == lines[-1:] and "Traceback" not in result.stderr, result.stderr[-2000:]
    return errors[0]


def test_runs_that_cannot_work_stop_with_one_line_before_epoch_one(records, tmp_path, capsys):
    config = config_file(tmp_path, [(32, 1, 33)])
    # two replicas need a process of their own (the CPU is split before TensorFlow starts)
    uneven = one_error_line(train(records, str(tmp_path / "a"), config, "--cpu-replicas", "2"))
    assert "stages[0].batch_size = 33 does not divide evenly over 2 replicas" in uneven
    never = one_error_line(here(train_here(records, str(tmp_path / "b"), config_file(tmp_path, [(32, 1, 32)]),
                                           capsys, "--set", "final_resolution=64")))
    assert "64px/manifest.json: missing" in never and not os.path.exists(tmp_path / "b" / "log.csv")
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    unwritable = one_error_line(here(train_here(records, str(blocker / "run"), config_file(tmp_path, [(32, 1, 32)]),
                                                capsys)))
    assert "a_file" in unwritable


def test_the_train_step_trains_on_the_policy_applied_with_its_replica_seed():
    """augment.on = "device": what the model trains on is the policy applied to the batch with the
    seed of (seed, optimizer step, replica); recorded inside the real train step, compiled with XLA
    as on an accelerator (a variable assigned in the step, read after each batch)."""
    import keras
    import tensorflow as tf

    from pipeline import policy as policies
    from pipeline.augment import Policy
    from training.device_augment import augment_in_train_step, replica_seed

    net = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(4, 3), keras.layers.GlobalAveragePooling2D(),
                            keras.layers.Activation("softmax")])
    net.compile(optimizer=keras.optimizers.SGD(0.01), loss="categorical_crossentropy", jit_compile=True)
    recorded = tf.Variable(tf.zeros((8, 16, 16, 3)), trainable=False)
    seen, traced = [], []
    plain = net.train_step

    def recording_step(data):
        traced.append(tf.executing_eagerly())
        recorded.assign(data[0])
        return plain(data)

    class Read(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(recorded.numpy())

    net.train_step = recording_step
    # the whole default policy, object_crop added: the boxes travel with the batch as its third element
    policy = policies.DEFAULT_POLICY + ", object_crop:p=1, brightness:p=1, cutout:p=1"
    augment_in_train_step(net, policies.parse(policy), seed=11, backend="tensorflow", resolution=16, num_classes=4)
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (2, 8, 16, 16, 3)).astype(np.float32)
    labels = np.eye(4, dtype=np.float32)[rng.integers(0, 4, (2, 8))]
    corner = rng.uniform(0.05, 0.4, (2, 8, 2))
    boxes = np.concatenate([corner, corner + 0.5], axis=-1).astype(np.float32)  # xmin, ymin, xmax, ymax
    net.fit(tf.data.Dataset.from_tensor_slices((images, labels, boxes)), epochs=1, verbose=0, callbacks=[Read()])
    assert len(seen) == 2 and traced and not any(traced)  # traced into a graph, never run eagerly
    for step in range(2):
        with tf.distribute.get_strategy().scope():
            seed = tf.distribute.get_strategy().run(lambda s=step: replica_seed(11, tf.constant(s, tf.int64)))
        expected, _ = Policy(policies.parse(policy))(tf.constant(images[step]), tf.constant(labels[step]), seed,
                                                     tf.constant(boxes[step]))
        np.testing.assert_allclose(seen[step], expected.numpy(), atol=0.05)  # XLA's rounding vs eager
        without_boxes, _ = Policy(policies.parse(policy))(tf.constant(images[step]), tf.constant(labels[step]), seed)
        assert np.abs(seen[step] - without_boxes.numpy()).mean() > 1  # the boxes did reach object_crop
        assert np.abs(seen[step] - images[step]).mean() > 5  # really augmented


def test_a_run_taken_over_while_it_stalled_stops(tmp_path, monkeypatch):
    from common.errors import UserError
    from training import run_lock

    monkeypatch.setattr(run_lock, "HEARTBEAT_SECONDS", 0.05)
    lock = run_lock.RunLock(str(tmp_path)).acquire()
    try:
        lock.check()  # still ours
        other = {"token": "someone-else", "host": "elsewhere", "pid": 7, "started": 0, "heartbeat": time.time()}
        (tmp_path / "run.lock").write_text(json.dumps(other))
        time.sleep(0.5)
        with pytest.raises(UserError, match=r"process 7 on elsewhere took this run over"):
            lock.check()
        assert json.loads((tmp_path / "run.lock").read_text())["token"] == "someone-else"  # not overwritten
    finally:
        lock.release()
    assert (tmp_path / "run.lock").exists()  # the new holder's lock is left alone
