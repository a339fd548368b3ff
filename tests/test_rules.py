"""The rule checker on models a student writes: functional, Sequential, subclassed, custom layers.

Every expectation (rule, layer name, channel counts, parameter counts) is written out by hand from
the model each test builds, not taken from the checker. Layers and inputs are small: the suite is fast.
"""

from __future__ import annotations

import keras
import pytest
from keras import layers

from model import rules

DENSE = "no fully connected layers"
DROPOUT = "no dropout"
POINTWISE = "no 1x1 convolution that increases channels"


def named(found):
    return {(v.rule, v.layer) for v in found}


def functional(shape, *stack, name="net"):
    """A functional model: the layers of `stack` applied in turn to an input of `shape`."""
    inputs = keras.Input(shape)
    x = inputs
    for layer in stack:
        x = layer(x)
    return keras.Model(inputs, x, name=name)


class Head(keras.layers.Layer):
    """A custom layer that holds a Dropout and a Dense as attributes: they are not in `model.layers`."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.drop = layers.Dropout(0.5, name="head_drop")
        self.fc = layers.Dense(10, name="head_fc")

    def call(self, x):
        return self.fc(self.drop(x))


class Expand(keras.Model):
    """A subclassed model: 3x3 conv 3 -> 16, then a 1x1 conv 16 -> 48 (the rule breaker)."""

    def __init__(self):
        super().__init__(name="expand_net")
        self.stem = layers.Conv2D(16, 3, padding="same", name="stem")
        self.expand = layers.Conv2D(48, 1, name="expand")

    def call(self, x):
        return self.expand(self.stem(x))


# Expand's parameters: stem 3*3*3*16 + 16 biases, expand 1*1*16*48 + 48 biases.
EXPAND_PARAMS = 3 * 3 * 3 * 16 + 16 + 16 * 48 + 48


def test_dense_and_dropout_held_inside_a_custom_layer():
    net = functional((8, 8, 3), layers.Conv2D(4, 3, name="conv"), layers.GlobalAveragePooling2D(), Head(name="head"))
    found = rules.check(net)
    assert named(found) == {(DENSE, "head_fc"), (DROPOUT, "head_drop")}
    assert "no fully connected layers: head_fc: Dense layer" in [str(v) for v in found]


def test_subclassed_model_built_by_calling_it():
    net = Expand()
    net(keras.ops.zeros((2, 8, 8, 3)))
    found = rules.check(net)
    assert [str(v) for v in found] == [f"{POINTWISE}: expand: 1x1 Conv2D from 16 to 48 channels"]


def test_subclassed_model_never_called_is_built_by_the_checker():
    net = Expand()
    assert not net.built
    violations, text = rules.report(net)
    assert net.built and net.count_params() == EXPAND_PARAMS == 1264
    assert [str(v) for v in violations] == [f"{POINTWISE}: expand: 1x1 Conv2D from 16 to 48 channels"]
    assert "model expand_net: 1,264 parameters" in text and "RULE BROKEN" in text


def test_ensure_built_says_when_the_dummy_call_fails():
    class NeedsFiveValues(keras.Model):
        def call(self, x):
            return keras.ops.reshape(x, (1, 5))

    with pytest.raises(ValueError, match=r"not built and calling it on zeros of shape \(1, 32, 32, 3\) failed"):
        rules.check(NeedsFiveValues(name="odd"))


def test_a_separable_conv_with_a_1x1_kernel_is_a_1x1_convolution():
    net = functional((8, 8, 3), layers.Conv2D(16, 3, name="stem"), layers.SeparableConv2D(64, 1, name="sep1x1"))
    assert [str(v) for v in rules.check(net)] == [f"{POINTWISE}: sep1x1: 1x1 SeparableConv2D from 16 to 64 channels"]


def test_a_strided_1x1_projection_shortcut():
    inputs = keras.Input((8, 8, 16))
    main = layers.Conv2D(32, 3, strides=2, padding="same", name="main")(inputs)
    shortcut = layers.Conv2D(32, 1, strides=2, name="projection")(inputs)
    net = keras.Model(inputs, layers.Add()([main, shortcut]))
    assert [str(v) for v in rules.check(net)] == [f"{POINTWISE}: projection: 1x1 Conv2D from 16 to 32 channels"]


def test_a_dense_head():
    net = functional((8, 8, 3), layers.Conv2D(8, 3, name="conv"), layers.GlobalAveragePooling2D(),
                     layers.Dense(10, activation="softmax", name="classifier"))
    assert named(rules.check(net)) == {(DENSE, "classifier")}


def test_spatial_dropout_inside_a_nested_sequential():
    inner = keras.Sequential([layers.Conv2D(4, 3, padding="same", name="inner_conv"),
                              keras.Sequential([layers.SpatialDropout2D(0.2, name="spatial")], name="innermost")],
                             name="inner")
    net = functional((8, 8, 3), inner, layers.Conv2D(4, 3, name="after"))
    assert named(rules.check(net)) == {(DROPOUT, "spatial")}


def test_gaussian_dropout():
    net = functional((8, 8, 3), layers.Conv2D(4, 3, name="conv"), layers.GaussianDropout(0.1, name="gauss"))
    assert [str(v) for v in rules.check(net)] == [f"{DROPOUT}: gauss: GaussianDropout layer"]


def test_einsum_dense():
    net = functional((8, 8, 4), layers.EinsumDense("abcd,de->abce", output_shape=(8, 8, 6), name="einsum"))
    assert [str(v) for v in rules.check(net)] == [f"{DENSE}: einsum: EinsumDense layer"]


def test_a_clean_network_breaks_no_rule():
    """3x3 projections, a 1x1 that reduces channels, a 1x1 down to the class count, separable and
    depthwise 3x3 convolutions and GaussianNoise (noise, not dropout): all allowed."""
    inputs = keras.Input((16, 16, 3))
    x = layers.GaussianNoise(0.1, name="noise")(inputs)
    x = layers.Conv2D(16, 3, padding="same", name="stem")(x)
    main = layers.Conv2D(32, 3, strides=2, padding="same", name="block_conv")(x)
    shortcut = layers.Conv2D(32, 3, strides=2, padding="same", name="projection_3x3")(x)
    x = layers.Add()([main, shortcut])
    x = layers.Conv2D(8, 1, name="reduce_1x1")(x)
    x = layers.SeparableConv2D(32, 3, padding="same", name="separable_3x3")(x)
    x = layers.DepthwiseConv2D(3, padding="same", name="depthwise_3x3")(x)
    x = layers.BatchNormalization(name="bn")(x)
    x = layers.Conv2D(10, 1, name="to_classes_1x1")(x)
    outputs = layers.Softmax()(layers.GlobalAveragePooling2D()(x))
    net = keras.Model(inputs, outputs, name="clean")
    assert rules.check(net) == []
    violations, text = rules.report(net)
    assert violations == [] and "separable convolutions: yes (bonus)" in text and "all obeyed" in text


@pytest.mark.parametrize("shape,layer,channels", [
    ((10, 4), layers.Conv1D(8, 1, name="c"), (4, 8)),
    ((2, 2, 2, 3), layers.Conv3D(6, 1, name="c"), (3, 6)),
    ((4, 4, 4), layers.Conv2D(8, 1, groups=2, name="c"), (4, 8)),
    ((4, 5, 5), layers.Conv2D(8, 1, data_format="channels_first", name="c"), (4, 8)),
    ((4, 4, 4), layers.Conv2DTranspose(8, 1, strides=2, name="c"), (4, 8)),
    ((10, 4), layers.SeparableConv1D(8, 1, name="c"), (4, 8)),
])
def test_other_1x1_layouts_read_their_channels_from_the_kernel(shape, layer, channels):
    found = rules.check(functional(shape, layer))
    assert [str(v) for v in found] == [f"{POINTWISE}: c: 1x1 {type(layer).__name__} from {channels[0]} to "
                                       f"{channels[1]} channels"]


def test_layers_in_a_list_attribute_and_a_shared_layer_are_found_once():
    class Blocks(keras.Model):
        def __init__(self):
            super().__init__(name="blocks")
            self.convs = [layers.Conv2D(4, 3, padding="same", name=f"conv{i}") for i in range(2)]
            self.fc = layers.Dense(4, name="shared_fc")

        def call(self, x):
            for conv in self.convs:
                x = self.fc(conv(x))
            return x

    assert [str(v) for v in rules.check(Blocks())] == [f"{DENSE}: shared_fc: Dense layer"]


def test_a_model_over_26m_parameters():
    # One 3x3 convolution 1024 -> 2900 channels with bias: 9 * 1024 * 2900 + 2900 parameters.
    expected = 9 * 1024 * 2900 + 2900
    assert expected == 26_729_300
    net = functional((3, 3, 1024), layers.Conv2D(2900, 3, kernel_initializer="zeros", name="wide"), name="big")
    found = rules.check(net)
    assert [str(v) for v in found] == ["at most 26,000,000 parameters: big: 26,729,300 parameters"]
    assert rules.check(net, max_params=27_000_000) == []


def test_run_violations():
    nine = [f"aug{i}" for i in range(9)]
    found = rules.run_violations(501, nine)
    assert [(v.rule, v.layer) for v in found] == [("at most 500 epochs", "run"),
                                                  ("at least 10 augmentation variants", "run")]
    assert str(found[0]) == "at most 500 epochs: run: 501 epochs in total"
    assert str(found[1]).startswith("at least 10 augmentation variants: run: 9 variants (aug0, aug1,")
    assert rules.run_violations(500, [*nine, "aug9"]) == []
    assert len(rules.run_violations(500, [*nine, "aug0"])) == 1  # a repeated name is not a new variant
