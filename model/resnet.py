"""Rule-abiding ResNets for 64x64 images, in the spirit of raghakot/keras-resnet's builder.

raghakot's `ResnetBuilder.build(input_shape, num_outputs, block_fn, repetitions)` makes depth a
list of repetitions (`[2, 2, 2, 2]` is ResNet-18) with pre-activation blocks (BN-ReLU-conv). This
keeps that shape and changes what the course's rules and 64 px images demand:

- Stem: one 3x3 stride-1 convolution, no 7x7/2 + max-pool (which would cut 64 px to 16 px before
  the first block and throw away most of the image).
- Channels never grow through a 1x1 convolution. Where a shortcut must change shape it is either
  a 3x3 strided convolution ("conv3x3") or a zero-padded, subsampled identity ("pad", option A of
  the ResNet paper, no parameters). A bottleneck's 1x1 only reduces; its expansion is a 3x3 (or a
  depthwise-separable 3x3, whose pointwise step belongs to the separable convolution).
- Head: BN-ReLU, a convolution down to the class count (1x1 when that reduces channels, 3x3
  otherwise), global average pooling, softmax in float32 so mixed precision stays stable. No
  Dense, no Dropout. Input size is free: the same weights run at 32, 48 and 64 px.
- The first layer normalises uint8 images with the training set's mean/std (the pipeline sends
  uint8: a quarter of the bytes of float32 to the accelerator).

Only Keras layers and keras.ops: the same model trains under TensorFlow and JAX.
"""

from __future__ import annotations

import dataclasses

import keras
from keras import layers, ops

# Per-channel statistics of the Tiny-ImageNet train split at 64 px (0..255), used when the caller
# does not pass the manifest's own.
TINY_IMAGENET_MEAN = (122.4, 114.3, 101.4)
TINY_IMAGENET_STD = (70.5, 68.6, 72.1)


@keras.saving.register_keras_serializable(package="tin")
class ZeroPadShortcut(layers.Layer):
    """Option-A shortcut: subsample by `stride`, then zero-pad the channels up to `filters`."""

    def __init__(self, filters: int, stride: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.stride = int(filters), int(stride)

    def call(self, x):
        if self.stride > 1:
            x = x[:, :: self.stride, :: self.stride, :]
        extra = self.filters - x.shape[-1]
        if extra > 0:
            x = ops.pad(x, [[0, 0], [0, 0], [0, 0], [extra // 2, extra - extra // 2]])
        return x

    def compute_output_shape(self, input_shape):
        batch, height, width, _ = input_shape

        def shrink(n):
            return None if n is None else -(-n // self.stride)

        return (batch, shrink(height), shrink(width), self.filters)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "stride": self.stride}


@dataclasses.dataclass(frozen=True)
class Spec:
    """A whole network as data, like raghakot's repetitions list."""

    block: str  # "basic" | "bottleneck"
    repetitions: tuple[int, ...]
    widths: tuple[int, ...]  # per stage: output channels (basic) or bottleneck width
    expansion: int = 1  # bottleneck output = width * expansion
    stem_width: int = 64
    strides: tuple[int, ...] = (1, 2, 2, 2)
    shortcut: str = "conv3x3"  # "conv3x3" | "pad"
    separable: tuple[bool, ...] | bool = False  # whole network, or per stage

    def stage_separable(self, stage: int) -> bool:
        return self.separable[stage] if isinstance(self.separable, tuple) else bool(self.separable)


PRESETS: dict[str, Spec] = {
    # The course's 10-class sanity run and the tests: small enough for a laptop CPU.
    "resnet_tiny": Spec("basic", (1, 1, 1, 1), (16, 32, 64, 128), stem_width=16),
    "resnet10": Spec("basic", (1, 1, 1, 1), (64, 128, 256, 512)),
    "resnet18": Spec("basic", (2, 2, 2, 2), (64, 128, 256, 512)),
    "resnet18_pad": Spec("basic", (2, 2, 2, 2), (64, 128, 256, 512), shortcut="pad"),
    "resnet34": Spec("basic", (3, 4, 6, 3), (64, 128, 256, 512)),
    "resnet50c": Spec("bottleneck", (3, 4, 6, 3), (64, 128, 224, 320), expansion=2),
    "resnet18_sep": Spec("basic", (2, 2, 2, 2), (64, 128, 256, 512), separable=True),
    "resnet34_sep": Spec("basic", (3, 4, 6, 3), (96, 192, 384, 768), separable=True),
    "resnet50c_sep": Spec("bottleneck", (3, 4, 6, 3), (64, 128, 256, 512), expansion=4, separable=True),
    # Full convolutions where the feature maps are large, separable ones deeper down.
    "resnet34_mixed": Spec("basic", (3, 4, 6, 3), (64, 128, 256, 512), separable=(False, False, True, True)),
}


def _conv(filters: int, kernel: int, stride: int, separable: bool, name: str):
    if separable and kernel > 1:
        return layers.SeparableConv2D(filters, kernel, strides=stride, padding="same", use_bias=False,
                                      depthwise_initializer="he_normal", pointwise_initializer="he_normal",
                                      name=name)
    return layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False,
                         kernel_initializer="he_normal", name=name)


def _bn_relu(x, name: str):
    x = layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=f"{name}_bn")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x)


def _shortcut(x, preactivated, filters: int, stride: int, kind: str, separable: bool, name: str):
    """Identity when shapes match; else a 3x3 strided projection (separable in separable stages)
    or the zero-padded identity."""
    if stride == 1 and x.shape[-1] == filters:
        return x
    if kind == "pad":
        if x.shape[-1] > filters:
            raise ValueError(f"{name}: a zero-padded shortcut cannot reduce {x.shape[-1]} to {filters} channels")
        return ZeroPadShortcut(filters, stride, name=f"{name}_shortcut")(x)
    # Projection from the pre-activated input, as in pre-activation ResNets (He et al., 2016).
    kernel = 1 if filters <= preactivated.shape[-1] and stride == 1 else 3
    return _conv(filters, kernel, stride, separable, f"{name}_shortcut")(preactivated)


def basic_block(x, filters: int, stride: int, separable: bool, shortcut: str, name: str):
    """Two 3x3 convolutions, pre-activation (raghakot's basic_block)."""
    pre = _bn_relu(x, f"{name}_pre")
    out = _conv(filters, 3, stride, separable, f"{name}_conv1")(pre)
    out = _bn_relu(out, f"{name}_mid")
    out = _conv(filters, 3, 1, separable, f"{name}_conv2")(out)
    return layers.Add(name=f"{name}_add")([out, _shortcut(x, pre, filters, stride, shortcut, separable, name)])


def bottleneck(x, width: int, expansion: int, stride: int, separable: bool, shortcut: str, name: str):
    """1x1 reduce -> 3x3 -> 3x3 expand: the rule-abiding bottleneck (its 1x1 only reduces)."""
    filters = width * expansion
    pre = _bn_relu(x, f"{name}_pre")
    reduce_kernel = 1 if width <= x.shape[-1] else 3
    out = _conv(width, reduce_kernel, 1, separable, f"{name}_reduce")(pre)
    out = _bn_relu(out, f"{name}_mid1")
    out = _conv(width, 3, stride, separable, f"{name}_conv")(out)
    out = _bn_relu(out, f"{name}_mid2")
    out = _conv(filters, 3, 1, separable, f"{name}_expand")(out)
    return layers.Add(name=f"{name}_add")([out, _shortcut(x, pre, filters, stride, shortcut, separable, name)])


def build_from_spec(spec: Spec, num_classes: int = 200, input_shape=(None, None, 3), mean=TINY_IMAGENET_MEAN,
                    std=TINY_IMAGENET_STD, name: str = "resnet") -> keras.Model:
    inputs = keras.Input(shape=input_shape, name="image")
    x = layers.Normalization(mean=list(mean), variance=[s * s for s in std], name="normalize")(inputs)
    x = _conv(spec.stem_width, 3, 1, False, "stem_conv")(x)
    for stage, (repeats, width, stride) in enumerate(zip(spec.repetitions, spec.widths, spec.strides)):
        separable = spec.stage_separable(stage)
        for index in range(repeats):
            block_name = f"stage{stage + 1}_block{index + 1}"
            block_stride = stride if index == 0 else 1
            if spec.block == "basic":
                x = basic_block(x, width, block_stride, separable, spec.shortcut, block_name)
            else:
                x = bottleneck(x, width, spec.expansion, block_stride, separable, spec.shortcut, block_name)
    x = _bn_relu(x, "head")
    head_kernel = 1 if num_classes <= x.shape[-1] else 3
    x = layers.Conv2D(num_classes, head_kernel, padding="same", name="head_conv",
                      kernel_initializer="he_normal")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = layers.Activation("softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=name)


def build(name: str, num_classes: int = 200, input_shape=(None, None, 3), mean=TINY_IMAGENET_MEAN,
          std=TINY_IMAGENET_STD) -> keras.Model:
    """An uncompiled model of a preset. `mean`/`std`: the train split's (manifest) statistics."""
    if name not in PRESETS:
        raise ValueError(f"unknown model {name!r}; presets: {', '.join(PRESETS)}")
    return build_from_spec(PRESETS[name], num_classes, input_shape, mean, std, name=name)
