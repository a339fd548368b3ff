"""Stateless random draws for the augmentations, and the facts about a batch that ops look at.

Random numbers: one named generator, and floats made from integer draws. Measured here, XLA and
eager TensorFlow turn the same Philox bits into different floats (integers agree), and the same
seed must give the same augmentation on the host and inside the compiled train step.
"""

from __future__ import annotations

import dataclasses
import math

import tensorflow as tf

PHILOX = "philox"
# Integer draws below 2**24 convert to float32 exactly (a 24-bit significand), so a uniform float is
# the same number wherever it is computed.
FLOAT_BITS = 24
_UNIT = 1.0 / (1 << FLOAT_BITS)  # the spacing of our uniform floats in [0, 1)


def split(seed, count: int):
    """`count` independent seeds from one."""
    return tf.random.experimental.stateless_split(seed, count, alg=PHILOX)


def second_stream(seed):
    """A second, independent seed for an op that draws twice (typically its value and its coin):
    the seed's two words reversed, a different Philox key."""
    return tf.reverse(seed, [0])


def random_uniform(shape, seed, low=0.0, high=1.0, dtype=tf.float32):
    """Uniform in [low, high): integers drawn directly, floats made from 24-bit integer draws."""
    if dtype.is_integer:
        return tf.random.stateless_uniform(shape, seed, low, high, dtype=dtype, alg=PHILOX)
    bits = tf.random.stateless_uniform(shape, seed, 0, 1 << FLOAT_BITS, dtype=tf.int32, alg=PHILOX)
    unit = tf.cast(bits, tf.float32) * _UNIT
    return low + (high - low) * unit


def random_normal(shape, seed):
    """Box-Muller on our uniforms, for the same reason."""
    seeds = split(seed, 2)
    u1 = random_uniform(shape, seeds[0], _UNIT, 1.0)  # never 0: log(u1) stays finite
    u2 = random_uniform(shape, seeds[1])
    return tf.sqrt(-2.0 * tf.math.log(u1)) * tf.cos(2.0 * math.pi * u2)


@dataclasses.dataclass
class BatchFacts:
    """What ops can look at: the images' size, the per-image mean colour (of the source; at the
    pixel stage moved by the colour map), the boxes."""

    size: int  # batch size (static where the batch is; else a tensor)
    height: int
    width: int
    # [B, 3]: the input images' mean colour; from the pixel ops on, moved by the colour map (affine
    # maps commute with the mean). Not read again from the warped batch: that extra pass over it
    # cost cutout 12-15 us an image at 64 px, a fifth of the default policy.
    mean_colour: tf.Tensor
    bbox: tf.Tensor | None  # [B, 4] xmin, ymin, xmax, ymax in [0, 1]


def uniform(facts: BatchFacts, seed, low=0.0, high=1.0, shape=()):
    """One uniform draw per image (of `shape` each)."""
    return random_uniform([facts.size, *shape], seed, low, high)


def coin(facts: BatchFacts, seed, p: float):
    """Per-image booleans, True with probability p."""
    return uniform(facts, seed) < p


def eye(facts: BatchFacts, n=3):
    """A batch of identity matrices: the transform of an image that an op leaves alone."""
    return tf.eye(n, batch_shape=[facts.size])


def choose(mask, matrix, identity):
    """Per image: `matrix` where mask, else `identity`."""
    return tf.where(mask[:, None, None], matrix, identity)


def matrix(rows) -> tf.Tensor:
    """Stack per-image scalars into [B, 3, 3]; `rows` is 3 lists of 3 tensors/floats of shape [B]."""
    return tf.stack([tf.stack(row, axis=-1) for row in rows], axis=-2)
