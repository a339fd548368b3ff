"""Tests that must import Keras under the JAX backend: run as their own pytest process.

    KERAS_BACKEND=jax python -m pytest tests_jax     (what `make test` does)
"""

import os
import tempfile

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tests import compile_cache  # noqa: E402

compile_cache.share()  # TensorFlow's XLA cache (the policy's compilation) for the run and its processes
compile_cache.compile_fast()  # XLA without LLVM's optimisations: the tests' programs compile, then run briefly

import jax  # noqa: E402
import keras  # noqa: E402

# JAX's persistent compilation cache for the runs in this pytest process (train.main, a tool's
# main): a run that compiles the same step as an earlier one (the same model, batch and size)
# loads it instead of compiling it again; what runs is the same, only the compiling is saved. One
# fresh folder per process, set in JAX's config and not in the environment: the train.py processes
# the tests start (and kill) never write to it, so no entry can be left half-written.
jax.config.update("jax_compilation_cache_dir", tempfile.mkdtemp(prefix="jax-cache-"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)

if keras.backend.backend() != "jax":
    raise RuntimeError("tests_jax must run with KERAS_BACKEND=jax (a separate pytest process)")
