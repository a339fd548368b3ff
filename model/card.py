"""What the course asks to know about a model before training it: parameters, the rule report,
multiply-adds per image at each resolution, and the receptive field of the last convolution
against the image size (a receptive field much smaller than the image means the network never
sees whole objects; the course insists on checking it).

Library code so that the command line (tools/model_card.py), the tests and a notebook measure
the same way.
"""

from __future__ import annotations

import keras


def _inbound(layer):
    """Layers feeding `layer` in a functional model."""
    found = []
    for node in layer._inbound_nodes:
        for tensor in node.input_tensors:
            history = getattr(tensor, "_keras_history", None)
            if history is not None:
                found.append(history[0])
    return found


def receptive_field(model: keras.Model) -> int:
    """Receptive field (pixels) of the model's last spatial layer, through every path of the graph.

    Walks the layers in order keeping (field, jump) per layer: a k x k layer of stride s turns
    (r, j) into (r + (k - 1) j, j s); merges take the largest field.
    """
    state = {}
    last = 1
    for layer in model.layers:
        parents = [state[p.name] for p in _inbound(layer) if p.name in state]
        field, jump = max(parents) if parents else (1, 1)
        kernel = getattr(layer, "kernel_size", None) or getattr(layer, "pool_size", None)
        stride = getattr(layer, "strides", None)
        if kernel is not None and stride is not None:
            k, s = kernel[0], stride[0]
            if getattr(layer, "dilation_rate", (1,))[0] > 1:
                k = (k - 1) * layer.dilation_rate[0] + 1
            field, jump = field + (k - 1) * jump, jump * s
        elif getattr(layer, "stride", None):  # the zero-padded shortcut subsamples
            jump = jump * layer.stride
        state[layer.name] = (field, jump)
        if kernel is not None:
            last = field
    return last


def multiply_adds(model: keras.Model) -> int:
    """Multiply-adds of one image through the convolutions (built at a fixed input size)."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.SeparableConv2D, keras.layers.DepthwiseConv2D)):
            _, height, width, out_channels = layer.output.shape
            in_channels = layer.input.shape[-1]
            kh, kw = layer.kernel_size
            if isinstance(layer, keras.layers.SeparableConv2D):
                total += height * width * (kh * kw * in_channels * layer.depth_multiplier
                                           + in_channels * layer.depth_multiplier * out_channels)
            elif isinstance(layer, keras.layers.DepthwiseConv2D):
                total += height * width * kh * kw * out_channels
            else:
                total += height * width * kh * kw * in_channels * out_channels
    return total


def card(model, resolutions: list[int], num_classes: int = 200) -> str:
    """The card of any model setting: a preset name, a table or "file.py:function" (model/custom.py)."""
    from model import custom, rules
    from model.resnet import TINY_IMAGENET_MEAN, TINY_IMAGENET_STD

    def build(input_shape=(None, None, 3)):
        return custom.build_any(model, num_classes, TINY_IMAGENET_MEAN, TINY_IMAGENET_STD, input_shape)

    _, report = rules.report(build())
    lines = [f"model {custom.describe(model)}", report, ""]
    for resolution in resolutions:
        fixed = build((resolution, resolution, 3))
        if custom.kind_of(model) == "file":
            # the student's network is one layer of the wrapper: measure inside it, on a graph
            # rebuilt at this size when it is a functional model
            fixed = _at_size(fixed.layers[2], resolution)
        if fixed is None:
            lines.append(f"{resolution:>3} px: not a functional model: multiply-adds and receptive field not traced")
            continue
        field = receptive_field(fixed)
        lines.append(f"{resolution:>3} px: {multiply_adds(fixed) / 1e9:6.2f} G multiply-adds per image, "
                     f"receptive field {field} px ({field / resolution:.1f}x the image)")
    return "\n".join(lines)


def _at_size(net, resolution: int):
    """A functional or Sequential model re-traced at a fixed input size (None for a subclassed one,
    whose graph cannot be traced)."""
    try:
        return keras.models.clone_model(net, input_tensors=keras.Input(shape=(resolution, resolution, 3)))
    except Exception:  # noqa: BLE001 - subclassed models raise several kinds of errors here
        return None
