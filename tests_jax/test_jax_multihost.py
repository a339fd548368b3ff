"""train.py as two JAX processes on this machine (two CPU devices each, JAX's CPU collectives):
what a TPU slice or two GPU hosts do, one process per host.

What differs between the processes is tested: each reads its own shards, only process 0 writes
the run directory, both end with the same weights (the digest each prints, which is also the
digest of the checkpoint's weights), both resume from the same checkpoint after a kill -9, and
a bad set-up ends every process with one line and exit code 2 instead of a hang.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from pipeline import synthetic
from tests import compile_cache
from tests.conftest import SMALL_RESNET

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": "jax",
       "JAX_PLATFORMS": "cpu"}
for _name in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
    ENV.pop(_name, None)
ENV["XLA_FLAGS"] = compile_cache.xla_flags()  # and no device count of the caller's: --cpu-replicas sets it
# one 32 px stage of batch 16 (4 devices: 4 a device), 192 training images in 2 shards: 12 steps; a
# ResNet of two narrow blocks (what is tested is how the processes train together, not the network)
SETTINGS = [f"model={SMALL_RESNET}", "stages.0.batch_size=16",
            "stages.0.resolution=32", "stages.1.resolution=32", "stages.1.batch_size=16", "stages.1.epochs=1",
            "schedule.step_size_epochs=1"]


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    return synthetic.make_records(str(tmp_path_factory.mktemp("multihost")), [32], num_classes=4,
                                  train_per_class=48, val_per_class=8, test_images=0, seed=3)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


def _start(records: str, run_dir: str, index: int, count: int, port: int, epochs: int, *extra: str,
           cache: str | None = None):
    """Process `index` of `count`. `cache`: a JAX compilation cache folder (JAX_COMPILATION_CACHE_DIR)
    shared by the runs of one test: a run that compiles what an earlier one compiled loads it."""
    command = [sys.executable, os.path.join(ROOT, "train.py"), "--backend", "jax", "--strategy", "cpu",
               "--cpu-replicas", "2", "--data", records, "--run-dir", run_dir,
               "--config", os.path.join(ROOT, "configs", "demo.toml"), "--quiet",
               "--coordinator", f"localhost:{port}", "--num-processes", str(count), "--process-id", str(index),
               "--rendezvous-timeout", "60", *(f"--set={s}" for s in SETTINGS), f"--set=stages.0.epochs={epochs - 1}",
               *extra]
    env = ENV if cache is None else {**ENV, "JAX_COMPILATION_CACHE_DIR": cache,
                                     "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
    return subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _finish(processes, timeout=420):
    results = []
    for process in processes:
        out, err = process.communicate(timeout=timeout)
        results.append((process.returncode, out, err))
    return results


def _log_epochs(run_dir: str) -> list[int]:
    with open(os.path.join(run_dir, "log.csv")) as handle:
        return [int(row["epoch"]) for row in csv.DictReader(handle)]


def _log_rows(run_dir: str) -> list[dict]:
    with open(os.path.join(run_dir, "log.csv")) as handle:
        return list(csv.DictReader(handle))


def _checkpoint_arrays(run_dir: str) -> dict[str, np.ndarray]:
    """Weights (w...), optimizer variables (o...) and loss scale (s...) of a checkpoint."""
    with np.load(os.path.join(run_dir, "checkpoint.npz")) as data:
        return {key: data[key] for key in data.files if key != "state"}


def _digest_of_checkpoint(run_dir: str) -> str:
    """sha256 over the checkpoint's weights in the model's order, as the trainer digests them."""
    with open(os.path.join(run_dir, "checkpoint.npz"), "rb") as handle:
        data = np.load(io.BytesIO(handle.read()))
        digest = hashlib.sha256()
        for key in sorted(k for k in data.files if k.startswith("w")):
            digest.update(data[key].tobytes())
    return digest.hexdigest()[:16]


def _printed_digest(output: str) -> str:
    found = re.findall(r"weights sha256 ([0-9a-f]{16}), the same in all 2 processes", output)
    assert len(found) == 1, output[-2000:]
    return found[0]


def _is_gloo_notice(line: str) -> bool:
    """Gloo's "[Gloo] Rank 1 is connected to 3 peer ranks. Expected number of connected peer ranks
    is : 3", or a piece of one when two threads' notices interleave."""
    return "[Gloo]" in line or re.search(r"connected peer ranks|is connected to \d+ peer", line) is not None


@pytest.mark.slow
def test_two_processes_train_as_one_and_resume_after_kill(records, tmp_path):
    # The uninterrupted pair first: it fills a JAX compilation cache that the pairs after it load
    # from (what runs is the same, only the compiling is saved). JAX writes an entry in place, not
    # under a temporary name: the killed pair gets a copy of its own, so that nothing a kill cuts
    # short can reach the resumed pair. (A cut entry would not run either: it fails to decompress,
    # and JAX warns and compiles again.)
    cache = str(tmp_path / "jax-cache")
    clean = str(tmp_path / "clean")
    port = _free_port()
    uninterrupted = [_start(records, clean, i, 2, port, 3, cache=cache) for i in (0, 1)]
    assert [code for code, _, _ in _finish(uninterrupted)] == [0, 0]

    run_dir = str(tmp_path / "run")
    port = _free_port()
    # 3 epochs; both processes killed (kill -9) once the first epoch is checkpointed
    killed_cache = shutil.copytree(cache, tmp_path / "killed-jax-cache")
    first = [_start(records, run_dir, i, 2, port, 3, cache=str(killed_cache)) for i in (0, 1)]
    state = os.path.join(run_dir, "state.json")
    deadline = time.monotonic() + 420
    while time.monotonic() < deadline and all(p.poll() is None for p in first):
        if os.path.exists(state) and json.load(open(state))["epoch"] >= 1:
            break
        time.sleep(0.1)
    assert all(p.poll() is None for p in first), _finish(first)
    for process in first:
        os.killpg(process.pid, signal.SIGKILL)
    _finish(first)
    stopped_at = json.load(open(state))["epoch"]
    assert 1 <= stopped_at < 3

    port = _free_port()
    resumed = [_start(records, run_dir, i, 2, port, 3, cache=cache) for i in (0, 1)]
    (code0, out0, err0), (code1, out1, err1) = _finish(resumed)
    assert (code0, code1) == (0, 0), (err0[-3000:], err1[-3000:])
    assert f"resuming {run_dir}: {stopped_at} epochs done" in out0
    assert "over 2 processes" in out0 and "4 replica(s)" in out0
    assert _log_epochs(run_dir) == [1, 2, 3]  # contiguous: every epoch exactly once
    # both processes hold the same weights, the ones process 0 checkpointed
    assert _printed_digest(out0) == _printed_digest(out1) == _digest_of_checkpoint(run_dir)
    # process 1 printed nothing but its digest (and Gloo's notices of its connections, which its
    # device threads write at once, so that one notice may be cut over two lines), and wrote nothing
    assert [line for line in out1.splitlines() if line.strip() and not _is_gloo_notice(line)] == [
        line for line in out1.splitlines() if "weights sha256" in line]
    assert sorted(os.listdir(run_dir)) == sorted(
        set(os.listdir(run_dir)) - {n for n in os.listdir(run_dir) if n.startswith("worker")})
    final = json.load(open(os.path.join(run_dir, "final.json")))
    assert final["epochs"] == 3 and final["backend"] == "jax"
    # the plan of one host: 4 classes x 48 images / a global batch of 16 = 12 steps an epoch, and
    # the run's fingerprint is the config's
    assert re.search(r"stage \d/2: 32px, batch 16, epochs \d-\d of \d-\d, 12 steps each", out0), out0
    from training import config as configs

    config = configs.read(os.path.join(ROOT, "configs", "demo.toml"), [*SETTINGS, "stages.0.epochs=2"])
    assert json.load(open(state))["fingerprint"] == config.fingerprint()

    # and the killed-and-resumed pair trained what an uninterrupted pair trains: the same losses,
    # epoch by epoch, and every array of the checkpoint (weights and optimizer state) equal
    resumed_rows, clean_rows = _log_rows(run_dir), _log_rows(clean)
    assert [r["epoch"] for r in resumed_rows] == [r["epoch"] for r in clean_rows] == ["1", "2", "3"]
    for resumed_row, clean_row in zip(resumed_rows, clean_rows):
        assert float(resumed_row["loss"]) == pytest.approx(float(clean_row["loss"]), rel=1e-4)
    resumed_arrays, clean_arrays = _checkpoint_arrays(run_dir), _checkpoint_arrays(clean)
    assert sorted(resumed_arrays) == sorted(clean_arrays) and len(clean_arrays) > 10
    for key in clean_arrays:
        np.testing.assert_allclose(resumed_arrays[key], clean_arrays[key], rtol=1e-4, atol=1e-5, err_msg=key)


def test_a_process_without_its_coordinator_ends_with_one_line(records, tmp_path):
    """Process 1 of 2 and nobody at the coordinator's port: one line naming --coordinator, exit 2."""
    port = _free_port()
    started = time.monotonic()
    process = _start(records, str(tmp_path / "run"), 1, 2, port, 2, "--rendezvous-timeout", "4")
    (code, out, err), = _finish([process], timeout=120)
    assert code == 2, err[-2000:]
    assert [line for line in err.splitlines() if line.startswith("error:")] == [
        line for line in err.splitlines() if line.strip() and not line.startswith(("W0000", "I0000", "WARNING"))]
    assert re.search(rf"^error: --coordinator localhost:{port}: nothing answered", err, re.M), err
    assert time.monotonic() - started < 90
    assert not os.path.exists(str(tmp_path / "run"))


def test_a_coordinator_left_alone_ends_with_one_line(records, tmp_path):
    port = _free_port()
    process = _start(records, str(tmp_path / "run"), 0, 2, port, 2, "--rendezvous-timeout", "4")
    (code, out, err), = _finish([process], timeout=120)
    assert code == 2, err[-2000:]
    assert re.search(r"^error: --num-processes 2: process 0 waited \d+s at localhost:\d+ and not all processes came",
                     err, re.M), err


def test_process_counts_that_disagree_are_named_by_every_process(records, tmp_path):
    """Process 0 told 2 processes, process 1 told 3: JAX joins them as 2 (the coordinator's
    count); both compare what they were told and end with the same line."""
    port = _free_port()
    run_dir = str(tmp_path / "run")
    zero = _start(records, run_dir, 0, 2, port, 2)
    one = _start(records, run_dir, 1, 3, port, 2)
    for code, _, err in _finish([zero, one], timeout=300):
        assert code == 2, err[-2000:]
        assert "error: --num-processes differs between the processes (process 0: 2, process 1: 3)" in err, err[-2000:]



def test_an_error_in_one_process_stops_every_process(records, tmp_path):
    """The run directory is in use (by this test): process 0 cannot take the lock; process 1,
    which never touches it, stops with it instead of waiting in its next collective."""
    from training.run_lock import RunLock

    run_dir = str(tmp_path / "run")
    os.makedirs(run_dir)
    port = _free_port()
    with RunLock(run_dir):
        results = _finish([_start(records, run_dir, i, 2, port, 2) for i in (0, 1)], timeout=300)
    (code0, _, err0), (code1, _, err1) = results
    assert (code0, code1) == (2, 2), (err0[-2000:], err1[-2000:])
    assert re.search(r"^error: .*run\.lock: the run is in use by process", err0, re.M), err0[-2000:]
    assert ("error: preparing the run (--data, --run-dir): process 0 stopped (its error line says why), and every "
            "process with it") in err1


def test_configs_that_differ_between_processes_are_named_by_every_process(records, tmp_path):
    """Process 1 started with one more --set: both end with the same line naming the config."""
    port = _free_port()
    run_dir = str(tmp_path / "run")
    zero = _start(records, run_dir, 0, 2, port, 2)
    one = _start(records, run_dir, 1, 2, port, 2, "--set=label_smoothing=0.2")
    for code, _, err in _finish([zero, one], timeout=300):
        assert code == 2, err[-2000:]
        assert re.search(r"^error: the config \(--config and --set\) differs between the processes \(process 0: \d+, "
                         r"process 1: \d+\); start every host with the same command$", err, re.M), err[-2000:]
    assert not os.path.exists(os.path.join(run_dir, "log.csv"))


def test_checkpoints_that_differ_between_processes_are_named_by_every_process(records, tmp_path):
    """Each process sees its own --run-dir (as hosts would with a local folder instead of a
    shared one): process 0 a checkpoint at epoch 1, process 1 none. Both stop before loading it."""
    from training import config as configs
    from training.run_dir import TrainingState

    config = configs.read(os.path.join(ROOT, "configs", "demo.toml"), [*SETTINGS, "stages.0.epochs=1"])
    state = TrainingState(config.fingerprint(), config.to_dict(), epoch=1).to_dict()
    kept = tmp_path / "host0"
    kept.mkdir()
    np.savez(kept / "checkpoint.npz", state=np.frombuffer(json.dumps(state).encode(), np.uint8))
    port = _free_port()
    zero = _start(records, str(kept), 0, 2, port, 2)
    one = _start(records, str(tmp_path / "host1"), 1, 2, port, 2)
    for code, _, err in _finish([zero, one], timeout=300):
        assert code == 2, err[-2000:]
        assert ("error: the checkpoint in --run-dir (use one folder every host sees: gs:// or a shared file system) "
                "differs between the processes (process 0: 1, process 1: -1)") in err, err[-2000:]
    assert sorted(os.listdir(kept)) == ["checkpoint.npz", "run.lock"] or sorted(os.listdir(kept)) == [
        "checkpoint.npz"]
