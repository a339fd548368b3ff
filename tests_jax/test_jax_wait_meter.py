"""The input-wait meter under the JAX backend: Keras iterates the tf.data input in Python there,
the meter still measures inside tf.data. The same input-bound and model-bound fits as under
TensorFlow (tests/test_wait_meter.py)."""

import keras

from tests.test_wait_meter import test_input_wait_in_the_logs_of_an_input_bound_and_a_model_bound_fit


def test_the_jax_backend_is_what_runs():
    assert keras.backend.backend() == "jax"


__all__ = ["test_input_wait_in_the_logs_of_an_input_bound_and_a_model_bound_fit", "test_the_jax_backend_is_what_runs"]
