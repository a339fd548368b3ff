"""Presets, the rule checker and the cyclical learning rate."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import layers

import model
from model import rules
from model.resnet import ZeroPadShortcut
from training.schedules import CyclicalLearningRate, reference

# Exact parameter counts at 200 classes; the README lists the same numbers.
EXPECTED_PARAMS = {
    "resnet_tiny": 624_696,
    "resnet10": 6_379_144,
    "resnet18": 12_653_704,
    "resnet18_pad": 11_105_416,
    "resnet34": 22_769_288,
    "resnet50c": 23_931_016,
    "resnet18_sep": 1_547_144,
    "resnet34_sep": 5_965_032,
    "resnet50c_sep": 13_972_808,
    "resnet34_mixed": 3_950_216,
}


@pytest.mark.parametrize("name", list(model.PRESETS))
def test_every_preset_has_its_exact_parameter_count_and_obeys_the_rules(name):
    net = model.build(name)
    assert net.count_params() == EXPECTED_PARAMS[name]
    assert net.count_params() < rules.MAX_PARAMS
    assert rules.check(net) == []


def test_the_list_of_presets_is_the_tested_one_and_has_a_strong_one_under_25m():
    assert set(model.PRESETS) == set(EXPECTED_PARAMS)
    assert EXPECTED_PARAMS["resnet34"] < rules.BONUS_PARAMS and EXPECTED_PARAMS["resnet50c"] < rules.BONUS_PARAMS
    assert rules.uses_separable(model.build("resnet18_sep")) and not rules.uses_separable(model.build("resnet18"))


@pytest.mark.parametrize("resolution", [32, 48, 64])
def test_any_resolution_gives_probabilities_that_sum_to_one(resolution):
    net = model.build("resnet18_sep")
    images = np.random.default_rng(0).integers(0, 256, (2, resolution, resolution, 3)).astype("uint8")
    out = np.asarray(net(images, training=False))
    assert out.shape == (2, 200) and out.dtype == np.float32
    np.testing.assert_allclose(out.sum(1), 1.0, atol=1e-5)
    assert (out > 0).all()


def test_zero_pad_shortcut_subsamples_and_pads_without_parameters():
    x = np.arange(2 * 4 * 4 * 3, dtype="float32").reshape(2, 4, 4, 3)
    out = np.asarray(ZeroPadShortcut(8, 2)(x))
    assert out.shape == (2, 2, 2, 8)
    np.testing.assert_array_equal(out[..., 2:5], x[:, ::2, ::2, :])
    assert (out[..., :2] == 0).all() and (out[..., 5:] == 0).all()
    assert rules.check(model.build("resnet18_pad")) == []


def raghakot_style_resnet50_piece():
    """What the original builder makes: 1x1 expansion, 1x1 projection shortcut, Dense head."""
    inputs = keras.Input((32, 32, 3))
    x = layers.Conv2D(64, 7, strides=2, padding="same", name="conv1")(inputs)
    shortcut = layers.Conv2D(256, 1, name="shortcut_projection")(x)
    y = layers.Conv2D(64, 1, name="reduce")(x)  # 1x1 that keeps 64 -> 64: allowed
    y = layers.Conv2D(64, 3, padding="same", name="conv3x3")(y)
    y = layers.Conv2D(256, 1, name="expand")(y)
    x = layers.Add()([y, shortcut])
    x = layers.SeparableConv2D(512, 3, padding="same", name="separable_ok")(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.5, name="dropout")(x)
    outputs = layers.Dense(200, activation="softmax", name="fc1000")(x)
    return keras.Model(inputs, outputs)


def test_forbidden_constructs_are_named():
    found = rules.check(raghakot_style_resnet50_piece())
    named = {(v.rule, v.layer) for v in found}
    assert named == {
        ("no 1x1 convolution that increases channels", "shortcut_projection"),
        ("no 1x1 convolution that increases channels", "expand"),
        ("no dropout", "dropout"),
        ("no fully connected layers", "fc1000"),
    }
    text = [str(v) for v in found]
    assert "no 1x1 convolution that increases channels: expand: 1x1 Conv2D from 64 to 256 channels" in text


def test_spatial_dropout_nested_models_and_the_parameter_limit():
    inner = keras.Sequential([keras.Input((8, 8, 4)), layers.SpatialDropout2D(0.1, name="spatial")], name="inner")
    inputs = keras.Input((8, 8, 4))
    outputs = layers.Conv2D(4, 3, name="conv")(inner(inputs))
    found = rules.check(keras.Model(inputs, outputs), max_params=100)
    assert ("no dropout", "spatial") in {(v.rule, v.layer) for v in found}
    assert any(v.rule == "at most 100 parameters" and "148 parameters" in v.message for v in found)
    violations, text = rules.report(model.build("resnet34"))
    assert violations == [] and "22,769,288 parameters" in text and "all obeyed" in text


STEPS = [0, 1, 7, 99, 100, 101, 150, 199, 200, 201, 299, 350, 399, 400, 401, 555, 777, 999, 1000, 1234]


@pytest.mark.parametrize("mode,gamma", [("triangular", 1.0), ("triangular2", 1.0), ("exp_range", 0.999)])
def test_cyclical_lr_equals_the_float64_reference(mode, gamma):
    schedule = CyclicalLearningRate(1e-3, 6e-3, 100, mode=mode, gamma=gamma)
    for step in STEPS:
        assert float(schedule(step)) == pytest.approx(reference(step, 1e-3, 6e-3, 100, mode, gamma),
                                                      rel=1e-5, abs=1e-9), step
    assert float(schedule(200)) == pytest.approx(1e-3)  # every cycle ends at base_lr
    if mode != "exp_range":
        assert float(schedule(100)) == pytest.approx(6e-3)  # the first peak reaches max_lr


def test_cyclical_lr_is_exact_after_millions_of_steps():
    schedule = CyclicalLearningRate(0.01, 0.1, 781)
    for step in (5_000_017, 48_123_457, 123_456_789):
        assert float(schedule(step)) == pytest.approx(reference(step, 0.01, 0.1, 781), rel=1e-5)


def test_cyclical_lr_round_trips_through_config_and_a_saved_model(tmp_path):
    schedule = CyclicalLearningRate(1e-3, 6e-3, 50, mode="triangular2")
    again = CyclicalLearningRate.from_config(schedule.get_config())
    assert [float(again(s)) for s in STEPS] == [float(schedule(s)) for s in STEPS]
    net = model.build("resnet_tiny", 10)
    net.compile(optimizer=keras.optimizers.SGD(schedule, momentum=0.9), loss="categorical_crossentropy")
    path = str(tmp_path / "m.keras")
    net.save(path)
    loaded = keras.models.load_model(path)
    restored = loaded.optimizer._learning_rate  # the schedule itself (.learning_rate is its current value)
    assert isinstance(restored, CyclicalLearningRate) and restored.get_config() == schedule.get_config()


def test_cyclical_lr_refuses_bad_settings():
    with pytest.raises(ValueError, match="mode="):
        CyclicalLearningRate(1e-3, 1e-2, 10, mode="cosine")
    with pytest.raises(ValueError, match="base_lr <= max_lr"):
        CyclicalLearningRate(1e-2, 1e-3, 10)
    with pytest.raises(ValueError, match="step_size"):
        CyclicalLearningRate(1e-3, 1e-2, 0)


def test_staged_schedule_counts_epochs_across_stages():
    from training.schedules import StagedCyclicalLearningRate

    # stage 1: 10 steps an epoch from step 0; stage 2: 4 steps an epoch from step 30 (epoch 3)
    schedule = StagedCyclicalLearningRate(0.01, 0.1, 2.0, [(0, 0, 10), (30, 3, 4)])
    for step, epochs in ((0, 0.0), (10, 1.0), (25, 2.5), (30, 3.0), (32, 3.5), (34, 4.0)):
        assert float(schedule.epoch_at(step)) == pytest.approx(epochs)
        assert float(schedule(step)) == pytest.approx(reference(int(epochs * 100), 0.01, 0.1, 200), rel=1e-5)
    again = StagedCyclicalLearningRate.from_config(schedule.get_config())
    assert float(again(33)) == float(schedule(33))
