"""A network of one's own, written the way a student would, that obeys the course's rules.

    python train.py --data records --run-dir runs/mine --config configs/ten_classes.toml \
        --set model=examples/student_net.py:build

The trainer calls `build(num_classes)` and feeds the model float32 images normalised with the
train split's mean and std, of any size (32, 48 or 64 px as the stages go). It returns class
probabilities (a softmax here; logits work too: the trainer then adds the softmax).

The rules it keeps: no Dense layer (a convolution down to the class count, then global average
pooling), no Dropout (BatchNormalization and augmentation regularise), no 1x1 convolution that
adds channels (widths grow through 3x3 convolutions; the 1x1s only reduce), well under 26M
parameters, and separable convolutions in the deeper half (a bonus).
"""

import keras
from keras import layers


def conv_bn_relu(x, filters, stride=1, separable=False):
    conv = layers.SeparableConv2D if separable else layers.Conv2D
    x = conv(filters, 3, strides=stride, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    return layers.Activation("relu")(x)


def residual(x, filters, stride=1, separable=False):
    """Two 3x3 convolutions with a shortcut; a shape change goes through a strided 3x3."""
    out = conv_bn_relu(x, filters, stride, separable)
    out = conv_bn_relu(out, filters, 1, separable)
    if stride != 1 or x.shape[-1] != filters:
        x = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False)(x)
    return layers.Add()([out, x])


def build(num_classes: int) -> keras.Model:
    inputs = keras.Input(shape=(None, None, 3))
    x = conv_bn_relu(inputs, 32)
    x = residual(x, 32)
    x = residual(x, 64, stride=2)
    x = residual(x, 128, stride=2, separable=True)
    x = residual(x, 256, stride=2, separable=True)
    x = layers.Conv2D(128, 1, use_bias=False)(x)  # a 1x1 that reduces channels: allowed
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)
    x = layers.Conv2D(num_classes, 3, padding="same")(x)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Activation("softmax")(x)
    return keras.Model(inputs, outputs, name="student_net")
