"""Any network a student chooses, from the config's `model`, in one of three forms:

- a preset name (`"resnet34"`: model/resnet.py's PRESETS);
- a table describing a ResNet as data, the builder's own fields, so "longer or wider?" and "more
  kernels at the end?" are config edits:
      [model]
      blocks = [2, 2, 2, 2]          # per stage: the number of blocks (longer)
      widths = [64, 128, 256, 512]   # per stage: the width (wider)
      separable = [false, false, true, true]   # per stage, or one boolean
      block = "basic"                # or "bottleneck" (with `expansion`)
      shortcut = "conv3x3"           # or "pad" (zero-padded identity, no parameters)
      stem_width = 64
- `"path/to/file.py:function"`: `function(num_classes) -> keras.Model` taking normalised float32
  images of any size, `(None, None, 3)`, and returning class probabilities (a softmax) or logits.

Whatever the form, the model the trainer gets takes images as the records hold them (uint8,
0..255), normalises them with the train split's mean and std first (exactly what presets do), and
ends in float32 probabilities; `best.keras` is therefore usable on its own.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import sys

from common import errors
from common.errors import UserError

TABLE_KEYS = {"blocks", "widths", "separable", "block", "shortcut", "stem_width", "expansion", "strides"}


def kind_of(model) -> str:
    """"preset", "table" or "file" (a UserError for anything else)."""
    if isinstance(model, dict):
        return "table"
    if isinstance(model, str) and ":" in model and model.split(":", 1)[0].endswith(".py"):
        return "file"
    if isinstance(model, str):
        return "preset"
    raise UserError(f"model={model!r}: expected a preset name, a table or \"path/to/file.py:function\"")


def describe(model) -> str:
    """A short human name of a model setting, for logs and tables."""
    if kind_of(model) == "table":
        table = dict(model)
        return f"table: {table.get('block', 'basic')} {table.get('blocks')} x {table.get('widths')}"
    return str(model)


def spec_from_table(table: dict, where: str = "model"):
    """The resnet.Spec a table describes; unknown keys and impossible values are named."""
    from model.resnet import Spec

    unknown = sorted(set(table) - TABLE_KEYS)
    if unknown:
        raise UserError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(TABLE_KEYS))})")
    blocks, widths = table.get("blocks"), table.get("widths")
    if not _ints(blocks) or not _ints(widths) or len(blocks) != len(widths) or not blocks:
        raise UserError(f"{where}: blocks and widths must be lists of positive whole numbers of the same length")
    stages = len(blocks)
    separable = table.get("separable", False)
    if isinstance(separable, list):
        if len(separable) != stages or not all(isinstance(s, bool) for s in separable):
            raise UserError(f"{where}.separable: one true/false per stage ({stages}), or one for all")
        separable = tuple(separable)
    elif not isinstance(separable, bool):
        raise UserError(f"{where}.separable: true/false, or a list of one per stage")
    strides = table.get("strides", [1] + [2] * (stages - 1))
    if not _ints(strides) or len(strides) != stages:
        raise UserError(f"{where}.strides: one positive whole number per stage")
    block, shortcut = table.get("block", "basic"), table.get("shortcut", "conv3x3")
    if block not in ("basic", "bottleneck"):
        raise UserError(f"{where}.block = {block!r}: expected basic or bottleneck")
    if shortcut not in ("conv3x3", "pad"):
        raise UserError(f"{where}.shortcut = {shortcut!r}: expected conv3x3 or pad")
    stem, expansion = table.get("stem_width", 64), table.get("expansion", 1 if block == "basic" else 4)
    if not _ints([stem, expansion]):
        raise UserError(f"{where}: stem_width and expansion must be positive whole numbers")
    return Spec(block, tuple(blocks), tuple(widths), expansion=expansion, stem_width=stem, strides=tuple(strides),
                shortcut=shortcut, separable=separable)


def _ints(values) -> bool:
    return isinstance(values, list) and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values)


@dataclasses.dataclass(frozen=True)
class FileModel:
    """`path.py:function`: where the student's builder lives."""

    path: str
    function: str

    @classmethod
    def parse(cls, text: str) -> FileModel:
        path, _, function = text.rpartition(":")
        if not path.endswith(".py") or not function.isidentifier():
            raise UserError(f"model={text!r}: expected \"path/to/file.py:function\"")
        return cls(path, function)

    def load(self, fallback: str | None = None):
        """The builder function; `fallback` is the copy kept in the run directory, used when the
        path no longer resolves (a resumed run started from another folder)."""
        path = self.path if os.path.exists(self.path) else fallback
        if path is None or not os.path.exists(path):
            raise UserError(f"{self.path}: model file not found")
        builder = getattr(import_file(path), self.function, None)
        if not callable(builder):
            raise UserError(f"{path}: defines no function {self.function!r}")
        return builder


def import_file(path: str):
    """Import a student's model file as a module (registering any custom layers it defines, which
    Keras needs to load a saved model of it); a UserError naming the file when it fails."""
    name = "student_model_" + os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as error:  # noqa: BLE001 - the student's file: say which and why, in one line
        raise UserError(f"{path}: cannot import it ({type(error).__name__}: {error})") from None
    return module


def build_any(model, num_classes: int, mean, std, input_shape=(None, None, 3), fallback_file: str | None = None):
    """The network of any of the three forms, ready for the trainer (see the module docstring)."""
    from model import resnet

    kind = kind_of(model)
    if kind == "preset":
        if model not in resnet.PRESETS:
            raise UserError(f"model={model!r}: unknown preset (choose from {', '.join(resnet.PRESETS)})")
        return resnet.build(model, num_classes, input_shape, mean, std)
    if kind == "table":
        return resnet.build_from_spec(spec_from_table(model), num_classes, input_shape, mean, std, name="resnet_table")
    source = FileModel.parse(model)
    builder = source.load(fallback_file)
    try:
        net = builder(num_classes)
    except Exception as error:  # noqa: BLE001 - the student's function: say which and why, in one line
        raise UserError(f"{model}: {source.function}({num_classes}) raised {type(error).__name__}: "
                        f"{errors.first_line(error)}") from None
    import keras

    if not isinstance(net, keras.Model):
        raise UserError(f"{model}: {source.function}({num_classes}) returned {type(net).__name__}, expected a "
                        f"keras.Model")
    return wrap(net, num_classes, mean, std, input_shape)


def check_resolutions(net, resolutions, model) -> None:
    """The network takes images of every size it will see (each stage's, the final evaluation's):
    one built on keras.Input((32, 32, 3)) would pass the 32 px checks, train, and fail at the
    first other size. One image of each size through it, before anything is trained."""
    import numpy as np

    for resolution in sorted(set(resolutions)):
        try:
            net(np.zeros((1, resolution, resolution, 3), "float32"), training=False)
        except Exception as error:  # noqa: BLE001 - the student's network: say which size and why
            raise UserError(f"model {describe(model)}: cannot take {resolution}x{resolution} images "
                            f"({type(error).__name__}: {errors.first_line(error, 200)}); build it on "
                            f"keras.Input((None, None, 3)) so that every stage's resolution fits") from None


def output_kind(net, num_classes: int) -> str:
    """"softmax" when the network's outputs on random images are probability rows, else "logits"."""
    import numpy as np

    probe = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    out = np.asarray(net(probe, training=False), dtype="float64")
    if out.shape != (2, num_classes):
        raise UserError(f"model {net.name}: returns shape {tuple(out.shape)[1:]} per image, expected ({num_classes},) "
                        "(one score per class)")
    if (out >= 0).all() and np.allclose(out.sum(axis=1), 1.0, atol=1e-2):
        return "softmax"
    return "logits"


def wrap(net, num_classes: int, mean, std, input_shape=(None, None, 3)):
    """uint8 images -> normalise (the manifest's statistics) -> the student's network -> float32
    probabilities (a softmax added when it returns logits)."""
    import keras

    kind = output_kind(net, num_classes)
    inputs = keras.Input(shape=input_shape, name="image")
    x = keras.layers.Normalization(mean=list(mean), variance=[s * s for s in std], name="normalize")(inputs)
    x = net(x)
    activation = "softmax" if kind == "logits" else "linear"  # float32 either way, under mixed precision too
    outputs = keras.layers.Activation(activation, dtype="float32", name="probabilities")(x)
    wrapped = keras.Model(inputs, outputs, name=net.name)
    wrapped.output_kind = kind
    return wrapped
