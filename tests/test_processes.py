"""How train.py's flags and the environment name the JAX processes of a multi-host run
(training/processes.py); the processes themselves run in tests_jax/test_jax_multihost.py."""

from __future__ import annotations

import numpy as np
import pytest

from common.errors import UserError
from training import processes
from training.processes import DEFAULT_TIMEOUT, ProcessSetup, setup


def test_one_process_alone_needs_no_rendezvous():
    assert setup(environ={}) is None
    assert setup(environ={"SLURM_NTASKS": "1", "OMPI_COMM_WORLD_SIZE": "1"}) is None
    # a plain command inside an sbatch script of 4 tasks is not a task of a job step
    assert setup(environ={"SLURM_JOB_ID": "7", "SLURM_NTASKS": "4"}) is None


def test_flags_name_the_process():
    assert setup("10.0.0.2:8476", 2, 1, environ={}) == ProcessSetup("10.0.0.2:8476", 2, 1, False, DEFAULT_TIMEOUT)


def test_jax_and_keras_environment_variables_stand_for_the_flags():
    jax_style = {"JAX_COORDINATOR_ADDRESS": "host-a:1234", "JAX_NUM_PROCESSES": "4", "JAX_PROCESS_ID": "3"}
    assert setup(environ=jax_style) == ProcessSetup("host-a:1234", 4, 3, False, DEFAULT_TIMEOUT)
    # Keras lists every job's address; the first one is the coordinator
    keras_style = {"KERAS_DISTRIBUTION_JOB_ADDRESSES": "host-a:1234,host-b:1234",
                   "KERAS_DISTRIBUTION_NUM_PROCESSES": "2", "KERAS_DISTRIBUTION_PROCESS_ID": "1"}
    assert setup(environ=keras_style) == ProcessSetup("host-a:1234", 2, 1, False, DEFAULT_TIMEOUT)
    # a flag wins over the environment
    assert setup(process_id=0, environ=jax_style).process_id == 0


def test_a_cluster_of_several_tasks_or_multihost_lets_jax_find_the_rest():
    srun = {"SLURM_JOB_ID": "7", "SLURM_STEP_NODELIST": "node[1-8]", "SLURM_PROCID": "3", "SLURM_LOCALID": "0",
            "SLURM_NTASKS": "8"}
    assert setup(environ=srun) == ProcessSetup(auto=True)
    assert setup(environ={"OMPI_COMM_WORLD_RANK": "1", "OMPI_COMM_WORLD_SIZE": "2"}).auto
    assert setup(multihost=True, timeout=30, environ={}) == ProcessSetup(auto=True, timeout=30)


@pytest.mark.parametrize(("arguments", "environ", "message"), [
    (("h:1", 2, None), {}, r"^--process-id: needed with --coordinator, --num-processes"),
    ((None, 2, 0), {}, r"^--coordinator: needed with --num-processes, --process-id"),
    (("h:1", 2, 2), {}, r"^--process-id 2: must be from 0 to 1 with --num-processes 2"),
    (("h:1", 0, 0), {}, r"^--num-processes 0: must be at least 1"),
    (("h", 2, 0), {}, r"^--coordinator 'h': expected HOST:PORT"),
    (("h:99999", 2, 0), {}, r"^--coordinator 'h:99999': expected HOST:PORT"),
    (("h:1", None, 0), {"JAX_NUM_PROCESSES": "two"}, r"^--num-processes: 'two' \(from JAX_NUM_PROCESSES\)"),
])
def test_an_incomplete_or_impossible_setup_is_named(arguments, environ, message):
    with pytest.raises(UserError, match=message):
        setup(*arguments, environ=environ)


def test_the_time_limit_must_be_positive():
    with pytest.raises(UserError, match="--rendezvous-timeout 0"):
        setup(multihost=True, timeout=0, environ={})


def test_processes_flags_under_tensorflow_point_to_jax(tmp_path, capsys):
    import os

    import train

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = train.main(["--data", str(tmp_path), "--run-dir", str(tmp_path / "run"), "--backend", "tensorflow",
                       "--config", os.path.join(root, "configs", "demo.toml"), "--coordinator", "h:1",
                       "--num-processes", "2", "--process-id", "0"])
    assert code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: --coordinator/--num-processes/--process-id/--multihost start JAX processes: add --backend jax "
        "(TensorFlow's workers use --strategy multiworker and TF_CONFIG)"]
    assert not (tmp_path / "run").exists()


def _other_process(monkeypatch, row):
    """Two processes, the other one's row given: `_gather` returns this process's row and it."""
    monkeypatch.setattr(processes, "_gather", lambda mine: np.array([list(mine), row]))


def test_a_step_another_process_failed_is_undone_here_and_named(monkeypatch):
    undone = []
    _other_process(monkeypatch, [1, 0, 0])  # process 1 failed (its values unknown)
    with pytest.raises(UserError, match=r"^preparing: process 1 stopped \(its error line says why\)"):
        processes.together(lambda: "lock", "preparing", 2, {"epoch": "the checkpoint", "batch": "the batch"},
                           lambda _: {"epoch": 3, "batch": 0}, undone.append)
    assert undone == ["lock"]  # the lock this process took is released


def test_values_found_by_a_step_are_compared_in_the_same_collective(monkeypatch):
    undone = []
    _other_process(monkeypatch, [0, 3, 7])  # process 1 succeeded at another batch
    with pytest.raises(UserError, match=r"^the batch differs between the processes \(process 0: 0, process 1: 7\)"):
        processes.together(lambda: "lock", "preparing", 2, {"epoch": "the checkpoint", "batch": "the batch"},
                           lambda _: {"epoch": 3, "batch": 0}, undone.append)
    assert undone == ["lock"]
    _other_process(monkeypatch, [0, 3, 0])
    assert processes.together(lambda: "lock", "preparing", 2, {"epoch": "e", "batch": "b"},
                              lambda _: {"epoch": 3, "batch": 0}, undone.append) == "lock"
    assert undone == ["lock"]  # agreed: nothing undone


def test_a_step_that_failed_here_raises_its_own_error_and_undoes_nothing(monkeypatch):
    undone = []
    _other_process(monkeypatch, [0, 3, 0])

    def fails():
        raise UserError("no records in --data")

    with pytest.raises(UserError, match="^no records in --data$"):
        processes.together(fails, "preparing", 2, {"epoch": "e", "batch": "b"}, lambda _: {"epoch": 3, "batch": 0},
                           undone.append)
    assert undone == []


def test_what_every_process_held_before_the_step_is_compared_first(monkeypatch):
    """A config that differs is named even where the step failed (its error is a consequence), and
    a process whose step succeeded undoes it."""
    names = {"config": "the config (--config and --set)", "epoch": "the checkpoint"}
    _other_process(monkeypatch, [22, 1, 0])  # process 1: another config, and its step failed

    def fails():
        raise UserError("no records in --data")

    with pytest.raises(UserError, match=r"^the config \(--config and --set\) differs between the processes "
                                        r"\(process 0: 11, process 1: 22\)"):
        processes.together(fails, "preparing", 2, names, lambda _: {"epoch": 0}, None, {"config": 11})
    undone = []
    with pytest.raises(UserError, match=r"^the config .* differs"):
        processes.together(lambda: "lock", "preparing", 2, names, lambda _: {"epoch": 0}, undone.append,
                           {"config": 11})
    assert undone == ["lock"]


def test_any_error_of_a_step_reaches_the_collective_first(monkeypatch):
    """An OSError (a copy that failed, a folder that cannot be made) is raised after the gather,
    which tells the other process this one stopped; a step that succeeded before its values failed
    is undone."""
    gathered = []
    monkeypatch.setattr(processes, "_gather", lambda mine: gathered.append(list(mine)) or np.array([list(mine), [0]]))

    def fails():
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        processes.together(fails, "preparing", 2)
    assert gathered == [[True]]
    undone = []
    monkeypatch.setattr(processes, "_gather", lambda mine: np.array([list(mine), [0, 0]]))

    def broken_values(_):
        raise UserError("unreadable checkpoint position")

    with pytest.raises(UserError, match="unreadable checkpoint position"):
        processes.together(lambda: "lock", "preparing", 2, {"epoch": "e"}, broken_values, undone.append)
    assert undone == ["lock"]


def test_a_preparation_another_process_stopped_leaves_no_lock_behind(monkeypatch, converted, tmp_path):
    from training import config as configs
    from training.preparation import prepare
    from training.runtime import Runtime

    config_path = tmp_path / "config.toml"
    config_path.write_text('model = "resnet_tiny"\n[[stages]]\nresolution = 32\nepochs = 1\nbatch_size = 16\n')
    config = configs.read(str(config_path), [])
    runtime = Runtime("jax", "cpu", 1, ["cpu:0"], "float32", worker_index=0, processes=2)
    _other_process(monkeypatch, [1, 0, 0])  # process 1 failed in its preparation
    run_dir = tmp_path / "run"
    with pytest.raises(UserError, match=r"^preparing the run \(--data, --run-dir\): process 1 stopped"):
        prepare(config, converted[0], str(run_dir), runtime)
    assert run_dir.exists() and not (run_dir / "run.lock").exists()
