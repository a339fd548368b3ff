"""The executor of an augmentation policy: batched, graph-mode, XLA-compiled.

Every augmentation works on a whole batch with per-image random parameters, a probability `p`
(per image) and a magnitude `m` in the op's natural unit (documented on each op). A policy is
parsed once by `pipeline/policy.py` (pure Python); the ops are in `pipeline/ops/`, one module per
kind, and the kind decides how `Policy` runs them, which is what makes it fast:

- geometric: the op only returns a 3x3 matrix per image (output pixel -> input pixel). The policy
  multiplies the matrices of all geometric ops and warps the batch once (`ops.geometric.warp`).
- colour: the op only returns a per-image affine colour map (3x3 matrix and offset). The policy
  composes them and applies the map once (`ops.colour.apply_colour`).
- pixel: ops that need the pixels (cutout, noise, blur, solarize, ...), applied in policy order.
- mix: ops that also change labels into soft labels (mixup, cutmix), applied last.

The policy runs in two stages, the warp (`Policy.geometric_stage`) and everything after it
(`Policy.pixel_stage`). On the host each is a `tf.function(jit_compile=True)` of its own when the
policy warps (one function when it does not: pipeline/finish.py), and XLA fuses the elementwise
work of each; calling the policy runs both as one function, which is what runs inside the
compiled train step (`augment.on = "device"`).
The policy and its ops are written in TensorFlow ops alone (no Python `if` or loop on a tensor),
so AutoGraph is told not to convert them (`tf.autograph.experimental.do_not_convert`): converting
the ~150 functions of the default policy cost ~2.5 s each time a process built its first dataset.
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

    @tf.autograph.experimental.do_not_convert
    def __call__(self, images, labels, seed, bbox=None):
        """The whole policy as one function: what runs inside a compiled train step
        (`augment.on = "device"`). The colour map is a dot there (`apply_colour(as_dot=True)`):
        it keeps XLA from fusing the warp into the colour map's loop, which reads every channel of
        a pixel for each channel it writes and so would compute the warp nine times a pixel."""
        images, source_mean = self.geometric_stage(images, seed, bbox)
        return self.pixel_stage(images, labels, seed, source_mean, colour_as_dot=True)

    def _start(self, images, seed, mean_colour, bbox=None):
        """The batch's facts and one seed per step, by its place in the policy: the same whatever
        kind runs first, and the same in either stage."""
        static = images.shape
        size = static[0] if static[0] is not None else tf.shape(images)[0]
        facts = draws.BatchFacts(size, static[1], static[2], mean_colour, bbox)
        seeds = draws.split(tf.cast(seed, tf.int64), len(self.steps))
        return facts, {id(step): seeds[i] for i, step in enumerate(self.steps)}

    @tf.autograph.experimental.do_not_convert
    def geometric_stage(self, images, seed, bbox=None):
        """First stage: uint8 or float images -> (float32 images warped once by the product of
        every geometric op's matrix, the source's mean colour [B, 3] for the pixel stage).

        The host input compiles each stage as an XLA function of its own (pipeline/finish.py):
        in one function XLA's CPU compiler fuses the warp's gathers into the loops of the pixel
        ops, which then recompute the warp's indices for each of the three channels (measured at
        64 px on one core, the finishing stage with its rounding to uint8: the default policy 60.2 us
        an image in one function, 46.8 in two; the warp stage alone is about 31).
        """
        images = tf.cast(images, tf.float32)
        source_mean = row_view.mean_colour(images) if self.steps else None
        if not self.kinds["geometric"]:
            return images, source_mean
        facts, seed_of = self._start(images, seed, source_mean, bbox)
        # Matrices map output to input: the product A @ B applies A to the source first, then B.
        # Box-aware ops come first whatever the policy order: the box describes the source image,
        # so the crop is taken around the object there and the other ops then act on the crop.
        matrix = draws.eye(facts)
        for step in sorted(self.kinds["geometric"], key=lambda s: s.name not in policy.BOX_AWARE):
            matrix = tf.matmul(matrix, REGISTRY[step.name].fn(facts, seed_of[id(step)], step.p, step.m))
        return warp(images, matrix), source_mean

    @tf.autograph.experimental.do_not_convert
    def pixel_stage(self, images, labels, seed, source_mean, colour_as_dot: bool = False):
        """Second stage: the colour map, the pixel ops, the clip to 0..255 and the mix ops, on the
        warped float32 images -> (images, labels)."""
        if not self.steps:
            return images, labels
        facts, seed_of = self._start(images, seed, source_mean)
        if self.kinds["colour"]:
            affine = (draws.eye(facts), tf.zeros([facts.size, 3]))
            for step in self.kinds["colour"]:
                affine = REGISTRY[step.name].fn(facts, affine, seed_of[id(step)], step.p, step.m)
            images = apply_colour(images, affine, as_dot=colour_as_dot)
            # The pixel ops see the mean colour moved by the colour map (see BatchFacts.mean_colour).
            facts = dataclasses.replace(facts, mean_colour=colour_of_mean(facts, affine))
        for step in self.kinds["pixel"]:
            images = REGISTRY[step.name].fn(facts, images, seed_of[id(step)], step.p, step.m)
        images = tf.clip_by_value(images, 0.0, 255.0)
        for step in self.kinds["mix"]:
            images, labels = REGISTRY[step.name].fn(facts, images, labels, seed_of[id(step)], step.p, step.m)
        return images, labels
