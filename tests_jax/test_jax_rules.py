"""Under JAX the rule checker builds and judges a subclassed model as it does under TensorFlow."""

from __future__ import annotations

import os
import sys

import keras

from model import rules

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
from test_rules import EXPAND_PARAMS, POINTWISE, Expand, Head  # noqa: E402  (the TensorFlow-side cases)


def test_subclassed_model_never_called_is_built_and_caught_under_jax():
    assert keras.backend.backend() == "jax"
    net = Expand()
    found = rules.check(net)
    assert net.count_params() == EXPAND_PARAMS
    assert [str(v) for v in found] == [f"{POINTWISE}: expand: 1x1 Conv2D from 16 to 48 channels"]


def test_layers_held_inside_a_custom_layer_are_found_under_jax():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inputs))
    found = rules.check(keras.Model(inputs, Head(name="head")(x)))
    assert {(v.rule, v.layer) for v in found} == {("no fully connected layers", "head_fc"), ("no dropout", "head_drop")}
