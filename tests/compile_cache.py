"""One TensorFlow XLA compilation cache on disk for a whole pytest run and every process it starts.

The augmentation policy is two XLA-compiled functions (pipeline/finish.py): ~4.5 s of compiling in
every process that builds a training input, and the suites start dozens (train.py runs, tools).
With `--tf_xla_persistent_cache_directory` a process that compiles the same HLO as an earlier one
loads the executable instead: what runs is the same, only the compiling is saved. TensorFlow
writes each entry to a temporary name and renames it (a process killed while writing leaves no
half entry) and checks the whole HLO of an entry before using it, so the train.py processes the
tests kill may share it. The folder is made by the process that first imports this (pytest's
controller under xdist), handed on through TF_XLA_FLAGS to the workers and their subprocesses,
and removed when that process ends. `make demo` (outside pytest) does not use it.

`compile_fast` sets XLA's backend optimisation level to 0 for the tests' processes: XLA still
compiles the same HLO, but LLVM no longer optimises the machine code. The tests' programs are
small and run for seconds, where compiling took the larger share: a pair of JAX processes
training 3 epochs took 42 s, 29 s with it (every eager JAX op, a weight initialiser, a metric's
update, is a small XLA program of its own). Nothing a test checks depends on how fast the code
runs; the numbers differ from optimised code's in the last bits only, and a test comparing two
runs compares two compiled alike. The notebook's kernel is started without it (`optimised`): it
runs as on Colab, and its minutes of augmenting real images took 11 instead of 9 with it. (The
on-disk cache's key is the HLO, not the flags: the notebook's pytest run, `make test-colab`, has a
cache folder of its own, which only its kernels fill.) `xla_flags` gives a process started with an
environment of its own the same level.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import tempfile

FLAG = "--tf_xla_persistent_cache_directory"
LEVEL = "--xla_backend_optimization_level"
FAST = f"{LEVEL}=0"


def share() -> None:
    """Set TF_XLA_FLAGS (before TensorFlow starts) to a cache folder for this run, unless set."""
    flags = os.environ.get("TF_XLA_FLAGS", "")
    if FLAG in flags:
        return
    folder = tempfile.mkdtemp(prefix="tf-xla-cache-")
    owner = os.getpid()
    atexit.register(lambda: os.getpid() == owner and shutil.rmtree(folder, ignore_errors=True))
    os.environ["TF_XLA_FLAGS"] = f"{flags} {FLAG}={folder}".strip()


def compile_fast() -> None:
    """XLA_FLAGS (before TensorFlow or JAX starts) with `FAST` added, for this process and the
    processes it starts (see the module's docstring), unless the caller set a level of their own."""
    flags = os.environ.get("XLA_FLAGS", "")
    if LEVEL not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {FAST}".strip()


def xla_flags(*extra: str) -> str:
    """XLA_FLAGS for a process given an environment of its own: this run's optimisation level (the
    caller's, or `FAST`) and `extra`, and nothing else of the caller's (a device count, say)."""
    level = [flag for flag in os.environ.get("XLA_FLAGS", "").split() if flag.startswith(LEVEL)] or [FAST]
    return " ".join([*level, *extra])


@contextlib.contextmanager
def optimised():
    """XLA_FLAGS without `FAST` while the block runs: the processes started in it (the notebook's
    kernel and what it runs) compile as a user's would."""
    flags = os.environ.get("XLA_FLAGS")
    if flags is not None:
        os.environ["XLA_FLAGS"] = " ".join(flag for flag in flags.split() if flag != FAST)
    try:
        yield
    finally:
        if flags is not None:
            os.environ["XLA_FLAGS"] = flags
