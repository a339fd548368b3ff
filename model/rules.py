"""The course's model rules, checked on any Keras model, with the offending layer named.

Rules: at most 26M parameters (25M earns a bonus); no Dense / fully connected layers; no Dropout
of any kind; no 1x1 convolution that increases the number of channels (shortcut projections
included). Depthwise-separable convolutions are allowed: their pointwise step is part of the
separable convolution, not a standalone 1x1. A separable convolution whose kernel is itself 1x1 is
not: its depthwise step is only a per-channel scale, so it is a 1x1 convolution in disguise.
Separable convolutions earn a bonus.

Students write functional, Sequential and subclassed models, and put layers inside their own
layers as attributes; so the checker walks every tracked sublayer (not only `model.layers`), reads
channel counts from the kernels (a subclassed model has no `layer.input`), and builds a model that
was never called before checking it. Backend-neutral: only `keras` and `keras.ops`.
"""

from __future__ import annotations

import dataclasses

import keras

MAX_PARAMS = 26_000_000
BONUS_PARAMS = 25_000_000
MAX_EPOCHS = 500
MIN_AUGMENTATIONS = 10


@dataclasses.dataclass(frozen=True)
class Violation:
    rule: str
    layer: str
    message: str

    def __str__(self) -> str:
        return f"{self.rule}: {self.layer}: {self.message}"


def _children(layer) -> list:
    """The layers `layer` holds directly. Keras 3 tracks every Layer assigned to an attribute (also
    inside lists and dicts) in `_layers`, which is what it walks to collect weights; `.layers` is
    the public view of models, read too in case a Keras version tracks them differently."""
    children = list(getattr(layer, "_layers", None) or [])
    if isinstance(layer, keras.Model):
        try:
            children += list(layer.layers)
        except (AttributeError, ValueError):
            pass
    return children


def all_layers(model: keras.Model):
    """Every layer below `model`, each once (by identity), parents before their children: nested
    models, layers held as attributes of custom layers, and layers inside those.

    A forbidden layer hidden in a custom block counts as much as one at the top level, so the walk
    must not stop at `model.layers` (which lists only the top level of a model)."""
    seen = {id(model)}
    stack = list(reversed(_children(model)))
    while stack:
        layer = stack.pop()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        yield layer
        stack.extend(reversed(_children(layer)))


def ensure_built(model: keras.Model, resolution: int = 32) -> keras.Model:
    """Build `model` (one call on a batch of zeros, 1 x resolution x resolution x 3) when it or one
    of its sublayers has no weights yet: a subclassed model that was never called has no kernels to
    read channel counts from and reports 0 parameters, which would let it pass every rule."""
    if model.built and all(layer.built for layer in all_layers(model)):
        return model
    try:
        model(keras.ops.zeros((1, resolution, resolution, 3), dtype="float32"))
    except Exception as error:  # the student's call() may fail on any input: say what was tried
        raise ValueError(f"cannot check the rules on model {model.name!r}: it is not built and calling it on "
                         f"zeros of shape (1, {resolution}, {resolution}, 3) failed ({error}); call it on a "
                         "batch of images first") from error
    return model


DROPOUT_CLASSES = (keras.layers.Dropout, keras.layers.SpatialDropout1D, keras.layers.SpatialDropout2D,
                   keras.layers.SpatialDropout3D, keras.layers.GaussianDropout, keras.layers.AlphaDropout)
DENSE_CLASSES = (keras.layers.Dense, keras.layers.EinsumDense)


def _is_dropout(layer) -> bool:
    """Keras's dropouts (GaussianDropout and AlphaDropout do not inherit from Dropout) and any class
    named like one, such as a student's own. GaussianNoise adds noise and drops nothing: allowed."""
    return isinstance(layer, DROPOUT_CLASSES) or any("dropout" in cls.__name__.lower() for cls in type(layer).__mro__)


def _is_dense(layer) -> bool:
    """Fully connected layers by class (subclasses included), not by name: a layer named 'fc' may be a conv."""
    return isinstance(layer, DENSE_CLASSES)


PLAIN_CONVOLUTIONS = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)
TRANSPOSED_CONVOLUTIONS = (keras.layers.Conv1DTranspose, keras.layers.Conv2DTranspose, keras.layers.Conv3DTranspose)
SEPARABLE_CONVOLUTIONS = (keras.layers.SeparableConv1D, keras.layers.SeparableConv2D)
DEPTHWISE_CONVOLUTIONS = (keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D)


def _shape(layer, attribute: str) -> tuple[int, ...] | None:
    """The shape of a kernel, or None while the layer is unbuilt (Keras raises AttributeError then)."""
    kernel = getattr(layer, attribute, None)  # getattr's default also covers the AttributeError
    return None if kernel is None else tuple(int(d) for d in kernel.shape)


def _channels(layer) -> tuple[int, int] | None:
    """(in, out) channels of a convolution whose kernel is 1 everywhere, read from its kernel (the
    layouts of Keras 3, whatever the data_format), or None for anything else.

    Conv: (k..., in / groups, out). Transposed: (k..., out, in). Separable: depthwise (k..., in,
    multiplier), then pointwise (1..., in * multiplier, out). Depthwise convolutions never mix
    channels, so they are not 1x1 convolutions in the sense of the rule."""
    if not isinstance(layer, (*PLAIN_CONVOLUTIONS, *TRANSPOSED_CONVOLUTIONS, *SEPARABLE_CONVOLUTIONS)):
        return None
    if any(k != 1 for k in layer.kernel_size):
        return None
    if isinstance(layer, SEPARABLE_CONVOLUTIONS):
        shape = _shape(layer, "depthwise_kernel")
        return None if shape is None else (shape[-2], layer.filters)
    shape = _shape(layer, "kernel")
    if shape is None:
        return None
    if isinstance(layer, TRANSPOSED_CONVOLUTIONS):
        return shape[-1], shape[-2]
    return shape[-2] * getattr(layer, "groups", 1), shape[-1]


def _pointwise_increase(layer) -> tuple[int, int] | None:
    """(in, out) channels when `layer` is a 1x1 convolution (plain, transposed or separable) that adds channels."""
    channels = _channels(layer)
    return channels if channels is not None and channels[1] > channels[0] else None


def check(model: keras.Model, max_params: int = MAX_PARAMS, resolution: int = 32) -> list[Violation]:
    """Every rule the model breaks (an empty list when it obeys them all). A model never called is
    built first (`ensure_built`, on `resolution` px images), so parameters and kernels are real."""
    ensure_built(model, resolution)
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
    """Whether the model earns the separable-convolution bonus (depthwise layers count)."""
    return any(isinstance(layer, (*SEPARABLE_CONVOLUTIONS, *DEPTHWISE_CONVOLUTIONS)) for layer in all_layers(model))


def report(model: keras.Model, max_params: int = MAX_PARAMS, resolution: int = 32) -> tuple[list[Violation], str]:
    """The violations and a few lines a person reads at the start of every run."""
    violations = check(model, max_params, resolution)
    params = model.count_params()
    lines = [f"model {model.name}: {params:,} parameters "
             f"({'under' if params <= BONUS_PARAMS else 'over'} the 25M bonus line, limit {max_params:,})",
             f"separable convolutions: {'yes (bonus)' if uses_separable(model) else 'no'}"]
    if violations:
        lines += [f"RULE BROKEN - {v}" for v in violations]
    else:
        lines.append("rules: no Dense, no Dropout, no channel-increasing 1x1 convolution, parameter limit: all obeyed")
    return violations, "\n".join(lines)


def run_violations(total_epochs: int, augmentation_names: list[str], max_epochs: int = MAX_EPOCHS,
                   min_augmentations: int = MIN_AUGMENTATIONS) -> list[Violation]:
    """The rules on a run rather than a model: at most `max_epochs` epochs in total, and at least
    `min_augmentations` augmentation variants. Variants are counted by distinct name, so listing
    the same augmentation twice does not make up the number."""
    found = []
    if total_epochs > max_epochs:
        found.append(Violation(f"at most {max_epochs:,} epochs", "run", f"{total_epochs:,} epochs in total"))
    names = list(dict.fromkeys(augmentation_names))
    if len(names) < min_augmentations:
        listed = ", ".join(names) if names else "none"
        found.append(Violation(f"at least {min_augmentations} augmentation variants", "run",
                               f"{len(names)} variants ({listed})"))
    return found
