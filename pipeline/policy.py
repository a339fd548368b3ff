"""The augmentation policy as a small language: which ops exist, and how a policy is written.

Pure Python, no TensorFlow: a config is checked, and its policy parsed once, before anything heavy
is imported (`training/config.py` keeps the parsed steps). The TF implementations live in
`pipeline/ops/` and register against the table declared here; `pipeline/augment.py` runs them.

A policy is written as a string `"flip, rotate:p=0.5:m=20, cutout"`, as a list of names or of
tables `{name = "rotate", p = 0.5, m = 20}`, or as "default" / "none". Each entry names an op, a
probability `p` (per image) and a magnitude `m` in the op's own unit; omitted values take the
op's defaults from the table below, and a magnitude outside the op's declared range is refused.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

from common.errors import UserError

# How the executor runs an op of each kind, in this order: one warp for every geometric op, one
# colour map for every colour op, then the pixel ops in policy order, then the label-mixing ops.
KINDS = ("geometric", "colour", "pixel", "mix")


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """One entry of a policy: run op `name` on each image with probability `p`, magnitude `m`."""

    name: str
    p: float
    m: float


@dataclasses.dataclass(frozen=True)
class Declared:
    """An op as the policy language knows it: its kind, its default p and m, and the magnitudes
    that mean something (None: the op takes no magnitude)."""

    name: str
    kind: str  # one of KINDS
    p: float  # default probability per image
    m: float  # default magnitude, in the op's own unit
    m_range: tuple[float, float] | None  # the magnitudes accepted, both ends included
    whole_m: bool = False  # m counts something (bits): a fraction would be cut off


def _declare(kind: str, table: dict[str, tuple]) -> dict[str, Declared]:
    return {name: Declared(name, kind, *entry) for name, entry in table.items()}


# Every op, its kind, default (p, m) and the range of m; the units of m are documented on each
# implementation, and each range ends where the unit stops meaning something (a shift beyond the
# image, a factor that turns negative, more bits dropped than a byte has).
# The order is the order ops are listed in (error messages, tools.preview, tools.benchmark).
DECLARED: dict[str, Declared] = {
    **_declare("geometric", {"flip": (0.5, 0.0, None), "translate": (0.5, 0.125, (0.0, 1.0)),
                             "scale": (0.5, 0.4, (0.0, 2.0)), "rotate": (0.3, 15.0, (0.0, 180.0)),
                             "shear": (0.2, 0.2, (0.0, 1.0)), "object_crop": (0.3, 0.3, (0.0, 5.0))}),
    **_declare("colour", {"brightness": (0.5, 0.25, (0.0, 1.0)), "contrast": (0.5, 0.3, (0.0, 1.0)),
                          "saturation": (0.5, 0.4, (0.0, 1.0)), "hue": (0.3, 0.1, (0.0, 1.0)),
                          "grayscale": (0.1, 0.0, None), "channel_shuffle": (0.1, 0.0, None),
                          "invert": (0.05, 0.0, None)}),
    **_declare("pixel", {"cutout": (0.5, 0.4, (0.0, 1.0)), "noise": (0.2, 0.04, (0.0, 1.0)),
                         "blur": (0.1, 1.0, (0.0, 1.0)), "solarize": (0.1, 0.5, (0.0, 1.0)),
                         "posterize": (0.1, 4.0, (1.0, 7.0), True), "autocontrast": (0.1, 0.0, None)}),
    **_declare("mix", {"mixup": (0.3, 0.2, (0.01, 10.0)), "cutmix": (0.3, 1.0, (0.01, 10.0))}),
}

BOX_AWARE = frozenset({"object_crop"})  # geometric ops that read the source image's box

DEFAULT_POLICY = (
    "flip, translate, scale, rotate, shear, brightness, contrast, saturation, hue, grayscale, "
    "cutout, noise, cutmix"
)

@dataclasses.dataclass(frozen=True)
class Registered:
    """A declared op with the function that implements it: what the executor runs and what
    tools.preview, tools.benchmark and the report list. Its declaration is not copied: the table
    above stays the one place that states an op's kind and defaults."""

    declared: Declared
    fn: Callable

    @property
    def name(self) -> str:
        return self.declared.name

    @property
    def kind(self) -> str:
        return self.declared.kind

    @property
    def doc(self) -> str:
        """What the op does and why: its docstring."""
        return (self.fn.__doc__ or "").strip()


# Filled by `register` as pipeline/ops is imported (TensorFlow code); the table above is read
# without it, by the config check.
_IMPLEMENTATIONS: dict[str, Registered] = {}


def names() -> tuple[str, ...]:
    """Every op's name, in the table's order."""
    return tuple(DECLARED)


def register(kind: str):
    """Decorator: `fn` implements the declared op `fn.__name__` of this kind.

    Registering a name twice, a name the table does not declare, or under another kind is a
    programming error, raised at import: a policy must never run a different op than it names.
    """
    def wrap(fn: Callable) -> Callable:
        name = fn.__name__
        if name in _IMPLEMENTATIONS:
            raise ValueError(f"augmentation {name!r} is registered twice")
        if name not in DECLARED:
            raise ValueError(f"augmentation {name!r} is not declared in pipeline.policy.DECLARED")
        if DECLARED[name].kind != kind:
            raise ValueError(f"augmentation {name!r} is declared {DECLARED[name].kind}, registered {kind}")
        _IMPLEMENTATIONS[name] = Registered(DECLARED[name], fn)
        return fn
    return wrap


def implementation(name: str) -> Callable:
    """The registered function of op `name` (its docstring says what it does and why)."""
    try:
        return _IMPLEMENTATIONS[name].fn
    except KeyError:
        raise LookupError(f"augmentation {name!r} has no implementation; import pipeline.ops") from None


def registered() -> dict[str, Registered]:
    """Every op, declared and implemented, in the table's order (pipeline.ops must be imported:
    pipeline/augment.py does). An op declared but not implemented is named."""
    missing = [name for name in DECLARED if name not in _IMPLEMENTATIONS]
    if missing:
        raise LookupError(f"augmentation {missing[0]!r} has no implementation; import pipeline.ops")
    return {name: _IMPLEMENTATIONS[name] for name in DECLARED}


def _entry(item) -> tuple[str, dict]:
    """(name, {setting: value}) of one written entry: `"rotate:p=0.5"` or `{name = "rotate", ...}`."""
    if isinstance(item, str):
        name, *settings = item.split(":")
        values = {}
        for setting in settings:
            key, _, value = setting.partition("=")
            values[key.strip()] = value
        return name, values
    if isinstance(item, dict):
        values = dict(item)
        return values.pop("name", ""), values
    raise UserError(f"augmentation policy: cannot read {item!r}")


def _augmentation(name, values: dict, check_ranges: bool = True) -> Augmentation:
    """One entry checked: a known name, only p and m, finite numbers, p a probability."""
    if not isinstance(name, str):
        raise UserError(f"augmentation policy: name {name!r} is not an augmentation's name")
    name = name.strip()
    if name not in DECLARED:
        raise UserError(f"augmentation policy: unknown augmentation {name!r} (known: {', '.join(DECLARED)})")
    unknown = set(values) - {"p", "m"}
    if unknown:
        raise UserError(f"augmentation policy: {name}: unknown setting {sorted(unknown)[0]!r} (use p and m)")
    try:
        p = float(values.get("p", DECLARED[name].p))
        m = float(values.get("m", DECLARED[name].m))
    except (TypeError, ValueError):
        raise UserError(f"augmentation policy: {name}: p and m must be numbers") from None
    if not (math.isfinite(p) and math.isfinite(m)):
        raise UserError(f"augmentation policy: {name}: p and m must be finite numbers")
    if not 0.0 <= p <= 1.0:
        raise UserError(f"augmentation policy: {name}: p={p} outside [0, 1]")
    if not check_ranges:
        return Augmentation(name, p, m)
    limits = DECLARED[name].m_range
    if DECLARED[name].whole_m and m != int(m):
        raise UserError(f"augmentation policy: {name}: m={m:g} must be a whole number")
    if limits is None and "m" in values and m != DECLARED[name].m:
        raise UserError(f"augmentation policy: {name}: takes no magnitude (m={m:g} would be ignored)")
    if limits is not None and not limits[0] <= m <= limits[1]:
        raise UserError(f"augmentation policy: {name}: m={m:g} outside [{limits[0]:g}, {limits[1]:g}] "
                        f"(default {DECLARED[name].m:g})")
    return Augmentation(name, p, m)


def parse(spec, check_ranges: bool = True) -> tuple[Augmentation, ...]:
    """A policy from config: a string `"flip, rotate:p=0.5:m=20, cutout"` or a list of names or
    of tables `{name = "rotate", p = 0.5, m = 20}`. Unknown names and bad values are refused.
    `check_ranges=False` reads a policy a run was trained with before magnitudes had ranges."""
    if spec is None or spec == "default":
        spec = DEFAULT_POLICY
    if not isinstance(spec, (str, list, tuple)):
        raise UserError(f"augmentation policy: expected a string or a list of augmentations, got {spec!r}")
    if spec in ("none", ""):
        return ()
    items = [s.strip() for s in spec.split(",") if s.strip()] if isinstance(spec, str) else list(spec)
    return tuple(item if isinstance(item, Augmentation) else _augmentation(*_entry(item), check_ranges)
                 for item in items)
