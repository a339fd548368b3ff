"""The course's model rules, checked on any Keras model, with the offending layer named.

Rules: at most 26M parameters (25M earns a bonus); no Dense / fully connected layers; no Dropout
of any kind; no 1x1 convolution that increases the number of channels (shortcut projections
included). Depthwise-separable convolutions are allowed: their pointwise step is part of the
separable convolution, not a standalone 1x1. Separable convolutions earn a bonus.
"""

from __future__ import annotations

import dataclasses

import keras

MAX_PARAMS = 26_000_000
BONUS_PARAMS = 25_000_000


@dataclasses.dataclass(frozen=True)
class Violation:
    rule: str
    layer: str
    message: str

    def __str__(self) -> str:
        return f"{self.rule}: {self.layer}: {self.message}"


def all_layers(model: keras.Model):
    """Every layer, descending into nested models and layers that hold layers."""
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model) or hasattr(layer, "layers"):
            yield from all_layers(layer)


def _is_dropout(layer) -> bool:
    return isinstance(layer, keras.layers.Dropout) or "dropout" in type(layer).__name__.lower()


def _is_dense(layer) -> bool:
    return isinstance(layer, (keras.layers.Dense, keras.layers.EinsumDense))


def _channels_in(layer) -> int | None:
    shape = getattr(layer, "input", None)
    shape = getattr(shape, "shape", None)
    if shape is None:
        return None
    axis = -1 if getattr(layer, "data_format", "channels_last") == "channels_last" else 1
    return shape[axis]


PLAIN_CONVOLUTIONS = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D,
                      keras.layers.Conv1DTranspose, keras.layers.Conv2DTranspose, keras.layers.Conv3DTranspose)


def _pointwise_increase(layer) -> tuple[int, int] | None:
    """(in, out) channels when `layer` is a plain 1x1 convolution that adds channels."""
    # Separable and depthwise convolutions are other classes in Keras 3, so they never match here.
    if not isinstance(layer, PLAIN_CONVOLUTIONS):
        return None
    if any(k != 1 for k in layer.kernel_size):
        return None
    channels = _channels_in(layer)
    if channels is not None and layer.filters > channels:
        return channels, layer.filters
    return None


def check(model: keras.Model, max_params: int = MAX_PARAMS) -> list[Violation]:
    """Every rule the model breaks (an empty list when it obeys them all)."""
    found = []
    for layer in all_layers(model):
        if _is_dense(layer):
            found.append(Violation("no fully connected layers", layer.name, f"{type(layer).__name__} layer"))
        if _is_dropout(layer):
            found.append(Violation("no dropout", layer.name, f"{type(layer).__name__} layer"))
        increase = _pointwise_increase(layer)
        if increase:
            found.append(Violation("no 1x1 convolution that increases channels", layer.name,
                                   f"1x1 {type(layer).__name__} from {increase[0]} to {increase[1]} channels"))
    params = model.count_params()
    if params > max_params:
        found.append(Violation(f"at most {max_params:,} parameters", model.name, f"{params:,} parameters"))
    return found


def uses_separable(model: keras.Model) -> bool:
    return any(isinstance(layer, (keras.layers.SeparableConv2D, keras.layers.DepthwiseConv2D))
               for layer in all_layers(model))


def report(model: keras.Model, max_params: int = MAX_PARAMS) -> tuple[list[Violation], str]:
    """The violations and a few lines a person reads at the start of every run."""
    violations = check(model, max_params)
    params = model.count_params()
    lines = [f"model {model.name}: {params:,} parameters "
             f"({'under' if params <= BONUS_PARAMS else 'over'} the 25M bonus line, limit {max_params:,})",
             f"separable convolutions: {'yes (bonus)' if uses_separable(model) else 'no'}"]
    if violations:
        lines += [f"RULE BROKEN - {v}" for v in violations]
    else:
        lines.append("rules: no Dense, no Dropout, no channel-increasing 1x1 convolution, parameter limit: all obeyed")
    return violations, "\n".join(lines)
