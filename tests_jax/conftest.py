"""Tests that must import Keras under the JAX backend: run as their own pytest process.

    KERAS_BACKEND=jax python -m pytest tests_jax     (what `make test` does)
"""

import os
import tempfile

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# JAX's persistent compilation cache, shared by the runs of this suite (in this process, in its
# other pytest worker and in the train.py processes the tests start): a run that compiles the same
# train step as an earlier one (the same model, batch and size) loads it instead of compiling it
# again. What runs is the same; only the compiling is saved.
_CACHE = os.path.join(tempfile.gettempdir(), f"tiny-imagenet-tests-jax-{os.getuid()}")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", _CACHE)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")

import keras  # noqa: E402

if keras.backend.backend() != "jax":
    raise RuntimeError("tests_jax must run with KERAS_BACKEND=jax (a separate pytest process)")
