"""Under JAX the model and schedule are the same objects as under TensorFlow."""

from __future__ import annotations

import os
import sys

import keras
import numpy as np
import pytest

import model
from model import rules
from training.schedules import CyclicalLearningRate, StagedCyclicalLearningRate, reference

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
from test_model import STEPS, expected_params  # noqa: E402  (the TensorFlow-side numbers)


def test_backend_is_jax():
    assert keras.backend.backend() == "jax"


@pytest.mark.parametrize("name", list(model.PRESETS))
def test_presets_have_the_same_parameter_counts_as_under_tensorflow(name):
    net = model.build(name)
    assert net.count_params() == expected_params(model.PRESETS[name])
    assert rules.check(net) == []


def test_model_runs_and_gives_probabilities():
    net = model.build("resnet18_sep", 200)
    images = np.random.default_rng(0).integers(0, 256, (2, 48, 48, 3)).astype("uint8")
    out = np.asarray(net(images, training=False))
    assert out.shape == (2, 200)
    np.testing.assert_allclose(out.sum(1), 1.0, atol=1e-5)


@pytest.mark.parametrize("mode,gamma", [("triangular", 1.0), ("triangular2", 1.0), ("exp_range", 0.999)])
def test_cyclical_schedule_gives_the_reference_values(mode, gamma):
    schedule = CyclicalLearningRate(1e-3, 6e-3, 100, mode=mode, gamma=gamma)
    for step in STEPS + [5_000_017]:
        assert float(schedule(step)) == pytest.approx(reference(step, 1e-3, 6e-3, 100, mode, gamma),
                                                      rel=1e-5, abs=1e-9)


def test_staged_schedule_counts_epochs_across_stages():
    # stage 1: 10 steps an epoch from step 0; stage 2: 4 steps an epoch from step 30 (epoch 3)
    schedule = StagedCyclicalLearningRate(0.01, 0.1, 2.0, [(0, 0, 10), (30, 3, 4)])
    for step, epochs in ((0, 0.0), (10, 1.0), (25, 2.5), (30, 3.0), (32, 3.5), (34, 4.0)):
        assert float(schedule.epoch_at(step)) == pytest.approx(epochs)
        assert float(schedule(step)) == pytest.approx(reference(int(epochs * 100), 0.01, 0.1, 200), rel=1e-5)
