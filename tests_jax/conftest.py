"""Tests that must import Keras under the JAX backend: run as their own pytest process.

    KERAS_BACKEND=jax python -m pytest tests_jax     (what `make test` does)
"""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

if keras.backend.backend() != "jax":
    raise RuntimeError("tests_jax must run with KERAS_BACKEND=jax (a separate pytest process)")
