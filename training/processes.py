"""Several processes under JAX, one per host (Cloud TPU slices, GPU clusters): who they are and
how they meet.

JAX runs one process per host; `jax.distributed.initialize` joins them before the first JAX
computation, after which `jax.devices()` lists every device of every process and Keras's
`DataParallel` trains over all of them. The processes are named by

- flags: `--coordinator HOST:PORT --num-processes N --process-id I` (process 0 serves on PORT),
- the matching environment variables, JAX's (`JAX_COORDINATOR_ADDRESS`, `JAX_NUM_PROCESSES`,
  `JAX_PROCESS_ID`) or Keras's (`KERAS_DISTRIBUTION_JOB_ADDRESSES`, `..._NUM_PROCESSES`,
  `..._PROCESS_ID`),
- or `--multihost`: JAX finds the cluster itself (Cloud TPU VMs, SLURM, Open MPI, Kubernetes),
  also assumed when SLURM or Open MPI says there are several tasks.

A bad set-up must end with one line, not a hang: JAX's rendezvous, when a peer never comes,
aborts the whole process from C++ after its deadline with a stack dump. So a process that is
not the coordinator first waits (up to the time limit) for the coordinator's port to answer, and
a watchdog ends a rendezvous that outlives the time limit with one line naming the setting and
exit code 2. After the rendezvous every process compares its view (process count, run
fingerprint) with all the others (`agree`), so that a mistyped --num-processes on one host is
named instead of trained with.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import sys
import threading
import time

from common.errors import UserError, first_line

DEFAULT_TIMEOUT = 180  # seconds for every process to arrive: hosts of a slice start within seconds


@dataclasses.dataclass(frozen=True)
class ProcessSetup:
    """How this process joins the others; `auto`: JAX detects the cluster."""

    coordinator: str | None = None
    num_processes: int | None = None
    process_id: int | None = None
    auto: bool = False
    timeout: int = DEFAULT_TIMEOUT

    def describe(self) -> str:
        if self.auto:
            return "the cluster JAX detects (--multihost)"
        return f"process {self.process_id} of {self.num_processes}, coordinator {self.coordinator}"


_ENVIRONMENT = (  # (flag, JAX's variable, Keras's variable)
    ("--coordinator", "JAX_COORDINATOR_ADDRESS", "KERAS_DISTRIBUTION_JOB_ADDRESSES"),
    ("--num-processes", "JAX_NUM_PROCESSES", "KERAS_DISTRIBUTION_NUM_PROCESSES"),
    ("--process-id", "JAX_PROCESS_ID", "KERAS_DISTRIBUTION_PROCESS_ID"),
)


def _several_tasks(environ) -> bool:
    """A task of a SLURM job step (srun) or an Open MPI launch (mpirun) of more than one task, as
    JAX's own cluster detection sees them (a plain command inside an sbatch script is not one)."""
    counts = []
    if all(v in environ for v in ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_PROCID", "SLURM_LOCALID")):
        counts.append(environ.get("SLURM_NTASKS", "1"))
    if "OMPI_MCA_orte_hnp_uri" in environ or "OMPI_COMM_WORLD_RANK" in environ:
        counts.append(environ.get("OMPI_COMM_WORLD_SIZE", "1"))
    return any(count.isdigit() and int(count) > 1 for count in counts)


def _number(option: str, source: str, text) -> int:
    try:
        return int(text)
    except (TypeError, ValueError):
        raise UserError(f"{option}: {text!r} (from {source}) is not a whole number") from None


def setup(coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None,
          multihost: bool = False, timeout: int = DEFAULT_TIMEOUT, environ=None) -> ProcessSetup | None:
    """The set-up train.py's flags and the environment describe; None for one process alone."""
    environ = os.environ if environ is None else environ
    given = [coordinator, num_processes, process_id]
    sources = ["flag"] * 3
    for index, (_, jax_name, keras_name) in enumerate(_ENVIRONMENT):
        for name in (jax_name, keras_name):
            if given[index] is None and environ.get(name):
                given[index], sources[index] = environ[name], name
    coordinator = given[0].split(",")[0].strip() if given[0] else None  # Keras lists every job; the first serves
    if timeout < 1:
        raise UserError(f"--rendezvous-timeout {timeout}: must be at least 1 second")
    if not any(v is not None for v in given):
        if multihost or _several_tasks(environ):
            return ProcessSetup(auto=True, timeout=timeout)
        return None
    missing = [flag for (flag, _, _), value in zip(_ENVIRONMENT, given) if value is None]
    if missing:
        raise UserError(f"{missing[0]}: needed with {', '.join(f for f, *_ in _ENVIRONMENT if f not in missing)} "
                        "(or --multihost to let JAX find the cluster)")
    count = _number("--num-processes", sources[1], given[1])
    index = _number("--process-id", sources[2], given[2])
    if count < 1:
        raise UserError(f"--num-processes {count}: must be at least 1")
    if not 0 <= index < count:
        raise UserError(f"--process-id {index}: must be from 0 to {count - 1} with --num-processes {count}")
    host, _, port = coordinator.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f"--coordinator {coordinator!r}: expected HOST:PORT, e.g. 10.0.0.2:8476")
    return ProcessSetup(coordinator, count, index, False, timeout)


def _wait_for_port(address: str, deadline: float) -> None:
    """Until the coordinator's port accepts a connection (process 0 may start a little later)."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    while True:
        try:
            with socket.create_connection((host, int(port)), timeout=2):
                return
        except OSError as error:
            if time.monotonic() > deadline:
                raise UserError(f"--coordinator {address}: nothing answered there ({error.strerror or error}); "
                                "start process 0 (--process-id 0) on that host, check the host name and port "
                                "and that the port is open between the hosts") from None
            time.sleep(0.5)


def join(process_setup: ProcessSetup) -> None:
    """jax.distributed.initialize within the time limit, or one line and exit code 2."""
    import jax

    started = time.monotonic()
    deadline = started + process_setup.timeout
    least = 1.0
    if not process_setup.auto and process_setup.process_id != 0:
        _wait_for_port(process_setup.coordinator, deadline)
        least = 30.0  # the rendezvous itself, however long the port took to answer

    def give_up():
        waited = round(time.monotonic() - started)
        if process_setup.auto:
            where = "--multihost: JAX found no complete cluster"
        else:
            where = (f"--num-processes {process_setup.num_processes}: process {process_setup.process_id} waited "
                     f"{waited}s at {process_setup.coordinator} and not all processes came")
        print(f"error: {where} (limit --rendezvous-timeout {process_setup.timeout}); start the same command on "
              "every host, each with its own --process-id and the same --num-processes and --coordinator",
              file=sys.stderr, flush=True)
        os._exit(2)

    watchdog = threading.Timer(max(least, deadline - time.monotonic()), give_up)
    watchdog.daemon = True
    watchdog.start()
    try:
        if process_setup.auto:
            jax.distributed.initialize(initialization_timeout=process_setup.timeout + 60)
        else:
            jax.distributed.initialize(process_setup.coordinator, process_setup.num_processes,
                                       process_setup.process_id, initialization_timeout=process_setup.timeout + 60)
    except (RuntimeError, ValueError) as error:
        raise UserError(f"{process_setup.describe()}: jax.distributed could not start ({first_line(error)})") from None
    finally:
        watchdog.cancel()


def _gather(values: list[int]):
    """Every process's `values`, one row per process (a collective: every process must call it)."""
    import jax
    import numpy as np
    from jax.experimental import multihost_utils

    # JAX keeps 32-bit integers: wrapped into the signed range, so that small values (-1 for "no
    # checkpoint") come back as they were, for the message that names them
    mine = np.array([(v + 2**31) % 2**32 - 2**31 for v in values], dtype=np.int32)
    return np.asarray(multihost_utils.process_allgather(mine)).reshape(jax.process_count(), len(values))


def together(action, what: str, count: int, agreed: dict[str, str] | None = None, values=None, undo=None,
             known: dict[str, int] | None = None):
    """`action()` in each of `count` processes; if it fails in any of them, every process raises:
    that one its own error, the others a UserError naming it. (A process that ended alone would
    leave the others waiting in their next collective.) Every process must call it.

    `agreed` ({key: how it is set}) names values every process must hold the same of, compared in
    the same collective (as `agree` does): `known` ones, held before the action (the config, the
    process count) and compared first, whatever the action did; then those `values(result)` finds.
    `undo(result)` is what a process whose action succeeded does when it stops all the same (another
    process failed, a value differs): release a lock."""
    if count == 1:
        return action()
    known = known or {}
    later = [key for key in agreed or {} if key not in known]
    result, done, failure, found = None, False, None, {}
    try:
        result = action()
        done = True
        found = values(result) if later else {}
    except Exception as error:  # any failure: raised after the collective, which the others wait in
        failure = error
    everyone = _gather([known[key] for key in known] + [failure is not None] + [found.get(key, 0) for key in later])
    try:
        _same_everywhere(everyone[:, :len(known)], list(known), agreed or {})
        if failure is not None:
            raise failure
        failed = everyone[:, len(known)]
        if failed.any():
            first = int(failed.nonzero()[0][0])
            raise UserError(f"{what}: process {first} stopped (its error line says why), and every process with it")
        _same_everywhere(everyone[:, len(known) + 1:], later, agreed or {})
    except Exception:
        if done and undo is not None:
            undo(result)
        raise
    return result


def agree(values: dict[str, int], names: dict[str, str]) -> None:
    """Every process holds the same `values` (e.g. the process count it was told, the run's
    fingerprint), or every process raises the same UserError naming the first that differs."""
    import jax

    if jax.process_count() == 1:
        return
    keys = list(values)  # the caller's order (the same code in every process): the first named is checked first
    _same_everywhere(_gather([values[k] for k in keys]), keys, names)


def _same_everywhere(everyone, keys: list[str], names: dict[str, str]) -> None:
    """One column of `everyone` (a row per process) per key: the first column whose processes
    differ is named, with every process's value."""
    for column, key in enumerate(keys):
        seen = everyone[:, column]
        if (seen != seen[0]).any():
            detail = ", ".join(f"process {i}: {v}" for i, v in enumerate(seen.tolist()))
            raise UserError(f"{names[key]} differs between the processes ({detail}); start every host with the "
                            "same command")
