"""Presets, the rule checker and the cyclical learning rate."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import layers

import model
from model import rules
from model.resnet import ZeroPadShortcut
from training.schedules import CyclicalLearningRate


def conv_params(kernel: int, cin: int, cout: int, separable: bool) -> int:
    """A bias-free convolution: k*k*cin*cout; separable (k > 1): a k*k depthwise then a 1x1 pointwise."""
    return kernel * kernel * cin + cin * cout if separable and kernel > 1 else kernel * kernel * cin * cout


def expected_params(spec, num_classes: int = 200) -> int:
    """Parameters of a pre-activation ResNet worked out from its description (He et al., 2016) and the
    course's rules, independently of the builder: batch norms hold 4 values per channel (scale,
    offset, moving mean and variance), the input normalisation none (its mean and variance are
    constants), shortcuts that change shape are 3x3 projections (1x1 only when they reduce at stride 1) or
    parameter-free zero padding, the head a convolution to the class count with a bias."""
    total = conv_params(3, 3, spec.stem_width, False)
    channels = spec.stem_width
    for stage, (repeats, width, first_stride) in enumerate(zip(spec.repetitions, spec.widths, spec.strides)):
        separable = spec.separable[stage] if isinstance(spec.separable, tuple) else spec.separable
        for block in range(repeats):
            stride = first_stride if block == 0 else 1
            out = width if spec.block == "basic" else width * spec.expansion
            total += 4 * channels
            if spec.block == "basic":
                total += conv_params(3, channels, width, separable) + 4 * width
                total += conv_params(3, width, width, separable)
            else:
                reduce_kernel = 1 if width <= channels else 3
                total += conv_params(reduce_kernel, channels, width, separable) + 4 * width
                total += conv_params(3, width, width, separable) + 4 * width + conv_params(3, width, out, separable)
            if (stride != 1 or channels != out) and spec.shortcut != "pad":
                total += conv_params(1 if out <= channels and stride == 1 else 3, channels, out, separable)
            channels = out
    head_kernel = 1 if num_classes <= channels else 3
    return total + 4 * channels + head_kernel * head_kernel * channels * num_classes + num_classes


def test_parameter_formula_on_resnet18_worked_out_by_hand():
    # stem 3*3*3*64; per stage (64, 128, 256, 512): two blocks of two 3x3 convs and two BNs, and
    # a 3x3 projection at the first block of stages 2-4; head BN and a 1x1 conv 512 -> 200 with bias.
    convs = 27 * 64 + 4 * 9 * 64 * 64
    bns = 4 * (2 * (64 + 64))
    for cin, width in ((64, 128), (128, 256), (256, 512)):
        convs += 9 * cin * width + 9 * width * width + 2 * 9 * width * width + 9 * cin * width
        bns += 4 * (cin + width + width + width)
    assert expected_params(model.PRESETS["resnet18"]) == convs + bns + 4 * 512 + 512 * 200 + 200


@pytest.mark.parametrize("name", list(model.PRESETS))
def test_every_preset_has_the_parameter_count_of_its_architecture_and_obeys_the_rules(name):
    net = model.build(name)
    assert net.count_params() == expected_params(model.PRESETS[name])
    assert net.count_params() < rules.MAX_PARAMS
    assert rules.check(net) == []


def test_there_are_strong_presets_under_the_25m_bonus_line():
    for name in ("resnet34", "resnet50c"):
        assert 20_000_000 < expected_params(model.PRESETS[name]) < rules.BONUS_PARAMS
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
def test_cyclical_lr_equals_smiths_formulas_in_float64(mode, gamma):
    schedule = CyclicalLearningRate(1e-3, 6e-3, 100, mode=mode, gamma=gamma)
    for step in STEPS:
        assert float(schedule(step)) == pytest.approx(smith(step, 1e-3, 6e-3, 100, mode, gamma),
                                                      rel=1e-5, abs=1e-9), step
    # worked by hand: step 50 is half-way up the first ramp (x = 0.5): 1e-3 + 5e-3 * 0.5
    assert float(schedule(50)) == pytest.approx(3.5e-3 if mode != "exp_range" else 1e-3 + 5e-3 * 0.5 * 0.999 ** 50)
    assert float(schedule(200)) == pytest.approx(1e-3)  # every cycle ends at base_lr
    if mode != "exp_range":
        assert float(schedule(100)) == pytest.approx(6e-3)  # the first peak reaches max_lr


def test_cyclical_lr_is_exact_after_millions_of_steps():
    schedule = CyclicalLearningRate(0.01, 0.1, 781)
    for step in (5_000_017, 48_123_457, 123_456_789):
        assert float(schedule(step)) == pytest.approx(smith(step, 0.01, 0.1, 781, "triangular", 1.0), rel=1e-5)


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
        assert float(schedule(step)) == pytest.approx(smith(epochs * 100, 0.01, 0.1, 200, "triangular", 1.0), rel=1e-5)
    again = StagedCyclicalLearningRate.from_config(schedule.get_config())
    assert float(again(33)) == float(schedule(33))


def smith(iteration: float, base_lr: float, max_lr: float, step_size: float, mode: str, gamma: float) -> float:
    """Smith (2017), "Cyclical Learning Rates for Training Neural Networks", section 3.1, written out
    here in float64 from the paper (not from training/schedules.py): cycle = floor(1 + it / (2 ss)),
    x = |it / ss - 2 cycle + 1|, lr = base + (max - base) max(0, 1 - x) scale, with scale 1
    (triangular), 1 / 2^(cycle - 1) (triangular2) or gamma^it (exp_range)."""
    cycle = np.floor(1 + iteration / (2 * step_size))
    x = abs(iteration / step_size - 2 * cycle + 1)
    scale = {"triangular": 1.0, "triangular2": 1.0 / 2 ** (cycle - 1), "exp_range": gamma ** iteration}[mode]
    return base_lr + (max_lr - base_lr) * max(0.0, 1 - x) * scale


@pytest.mark.parametrize("mode,gamma", [("triangular", 1.0), ("triangular2", 1.0), ("exp_range", 0.9)])
def test_staged_schedule_follows_smith_in_every_mode_across_stages(mode, gamma):
    from training.schedules import StagedCyclicalLearningRate

    # 32 px: 100 steps an epoch for 6 epochs; 48 px: 40 steps an epoch for 5; 64 px: 25 steps an epoch.
    # Half a cycle is 2.5 epochs, so cycles straddle the stage boundaries.
    stages = [(0, 0, 100), (600, 6, 40), (800, 11, 25)]
    schedule = StagedCyclicalLearningRate(0.004, 0.08, 2.5, stages, mode, gamma)

    def epochs_at(step):  # by hand: the stage holding the step, then whole and fractional epochs
        first_step, first_epoch, per_epoch = [s for s in stages if s[0] <= step][-1]
        return first_epoch + (step - first_step) / per_epoch

    for step in (0, 1, 125, 250, 499, 500, 599, 600, 610, 700, 799, 800, 812, 900, 1000, 1099):
        expected = smith(epochs_at(step), 0.004, 0.08, 2.5, mode, gamma)
        assert float(schedule(step)) == pytest.approx(expected, rel=2e-5, abs=1e-9), (mode, step)
    # Worked by hand: epoch 2.5 is the first peak; epoch 7.5 (step 600 + 1.5 * 40 = 660) the second,
    # at full height (triangular), half (triangular2) or gamma^7.5 of it (exp_range).
    peak = {"triangular": 0.08, "triangular2": 0.004 + 0.076 / 2, "exp_range": 0.004 + 0.076 * 0.9 ** 7.5}[mode]
    assert float(schedule(660)) == pytest.approx(peak, rel=2e-5)
    # Epoch 15 (step 800 + 4 * 25 = 900) ends the third cycle: back at base_lr in every mode.
    assert float(schedule(900)) == pytest.approx(0.004, abs=1e-7)
