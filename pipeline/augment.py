"""The executor of an augmentation policy: batched, graph-mode, one XLA function per batch.

Every augmentation works on a whole batch with per-image random parameters, a probability `p`
(per image) and a magnitude `m` in the op's natural unit (documented on each op). A policy is
parsed once by `pipeline/policy.py` (pure Python); the ops are in `pipeline/ops/`, one module per
kind, and the kind decides how `Policy` runs them, which is what makes it fast:

- geometric: the op only returns a 3x3 matrix per image (output pixel -> input pixel). The policy
  multiplies the matrices of all geometric ops and warps the batch once (`ops.geometric.warp`).
- colour: the op only returns a per-image affine colour map (3x3 matrix and offset). The policy
  composes them and applies one einsum (`ops.colour.apply_colour`).
- pixel: ops that need the pixels (cutout, noise, blur, solarize, ...), applied in policy order.
- mix: ops that also change labels into soft labels (mixup, cutmix), applied last.

The whole policy is one `tf.function(jit_compile=True)`: XLA fuses the elementwise work, and the
very same function can run inside the compiled train step (`augment_on = "device"`).
Randomness is stateless, from one seed per batch, so a run is reproducible and resumable.
Augmentations replace samples and never add any: the batch size in equals the batch size out.
Images are float32 in 0..255 throughout; labels are one-hot or soft float32 rows.
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

import pipeline.ops  # noqa: F401  (registers every op)
from pipeline import policy
from pipeline.ops import draws, row_view
from pipeline.ops.colour import apply_colour, colour_of_mean
from pipeline.ops.geometric import warp
from pipeline.policy import Augmentation

# Every op with its implementation (pipeline.policy.Registered: the declaration and the function);
# one declared but not implemented fails here, at import.
REGISTRY: dict[str, policy.Registered] = policy.registered()


class Policy:
    """Parsed steps, run as geometric warp -> colour map -> pixel ops -> mix ops.

    `Policy(policy.parse(spec))`; call it on a batch: `images, labels = policy(images, labels, seed,
    bbox)` with images uint8 or float [B, H, W, 3] in 0..255, labels float [B, K], seed int [2].
    Pure TF ops, XLA-compilable.
    """

    def __init__(self, steps: tuple[Augmentation, ...]):
        if isinstance(steps, str) or not isinstance(steps, (tuple, list)) or not all(
                isinstance(step, Augmentation) for step in steps):
            raise TypeError(f"Policy takes parsed steps (a tuple of pipeline.policy.Augmentation), got {steps!r}: "
                            "call pipeline.policy.parse(spec) first")
        self.steps = tuple(steps)
        self.kinds = {kind: [s for s in self.steps if REGISTRY[s.name].kind == kind] for kind in policy.KINDS}

    def __len__(self):
        return len(self.steps)

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.steps]

    def __call__(self, images, labels, seed, bbox=None):
        images = tf.cast(images, tf.float32)
        if not self.steps:
            return images, labels
        static = images.shape
        size = static[0] if static[0] is not None else tf.shape(images)[0]
        facts = draws.BatchFacts(size, static[1], static[2], row_view.mean_colour(images), bbox)
        # One seed per step, by its place in the policy: the same whatever kind runs first.
        seeds = draws.split(tf.cast(seed, tf.int64), len(self.steps))
        seed_of = {id(step): seeds[i] for i, step in enumerate(self.steps)}
        if self.kinds["geometric"]:
            # Matrices map output to input: the product A @ B applies A to the source first, then B.
            # Box-aware ops come first whatever the policy order: the box describes the source image,
            # so the crop is taken around the object there and the other ops then act on the crop.
            matrix = draws.eye(facts)
            for step in sorted(self.kinds["geometric"], key=lambda s: s.name not in policy.BOX_AWARE):
                matrix = tf.matmul(matrix, REGISTRY[step.name].fn(facts, seed_of[id(step)], step.p, step.m))
            images = warp(images, matrix)
        if self.kinds["colour"]:
            affine = (draws.eye(facts), tf.zeros([facts.size, 3]))
            for step in self.kinds["colour"]:
                affine = REGISTRY[step.name].fn(facts, affine, seed_of[id(step)], step.p, step.m)
            images = apply_colour(images, affine)
            # The pixel ops see the mean colour moved by the colour map (see BatchFacts.mean_colour).
            facts = dataclasses.replace(facts, mean_colour=colour_of_mean(facts, affine))
        for step in self.kinds["pixel"]:
            images = REGISTRY[step.name].fn(facts, images, seed_of[id(step)], step.p, step.m)
        images = tf.clip_by_value(images, 0.0, 255.0)
        for step in self.kinds["mix"]:
            images, labels = REGISTRY[step.name].fn(facts, images, labels, seed_of[id(step)], step.p, step.m)
        return images, labels
