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
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

FLAG = "--tf_xla_persistent_cache_directory"


def share() -> None:
    """Set TF_XLA_FLAGS (before TensorFlow starts) to a cache folder for this run, unless set."""
    flags = os.environ.get("TF_XLA_FLAGS", "")
    if FLAG in flags:
        return
    folder = tempfile.mkdtemp(prefix="tf-xla-cache-")
    owner = os.getpid()
    atexit.register(lambda: os.getpid() == owner and shutil.rmtree(folder, ignore_errors=True))
    os.environ["TF_XLA_FLAGS"] = f"{flags} {FLAG}={folder}".strip()
