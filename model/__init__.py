"""Rule-abiding ResNets and the checks of the course's model rules (Keras layers only)."""

from model.resnet import PRESETS, build
from model.rules import check

__all__ = ["PRESETS", "build", "check"]
