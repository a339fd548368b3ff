"""Colour augmentations: each maps the current per-image affine colour transform (A [B,3,3], t [B,3])
to a new one. `x -> A x + t` is applied to every pixel once (`apply_colour`), after all of them are
composed: brightness, contrast, saturation, hue, grayscale, channel shuffle and invert cost one
pass together. (Clipping between these ops is skipped.)
"""

from __future__ import annotations

import math

import tensorflow as tf

from pipeline.ops import draws
from pipeline.ops.draws import BatchFacts
from pipeline.policy import register

GRAY = (0.299, 0.587, 0.114)  # ITU-R BT.601 luma weights, as tf.image.rgb_to_grayscale uses
# RGB -> NTSC YIQ (luma, then the two chroma axes), rounded to three decimals: hue turns the chroma plane.
TO_YIQ = [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]]
PERMUTATIONS = [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]]  # the 3! orders of RGB


def _gray_row():
    """The luma weights as a [1, 3] row: `x * _gray_row()` summed over channels is x's grey value."""
    return tf.constant([GRAY], tf.float32)  # [1, 3]


def colour_of_mean(facts: BatchFacts, affine):
    """The per-image mean colour after the transform so far (affine maps commute with the mean)."""
    matrix, offset = affine
    return tf.einsum("bij,bj->bi", matrix, facts.mean_colour) + offset


def followed_by(affine, matrix, offset=None):
    """Compose: first `affine`, then x -> matrix x + offset."""
    current_matrix, current_offset = affine
    new_matrix = tf.matmul(matrix, current_matrix)
    new_offset = tf.einsum("bij,bj->bi", matrix, current_offset)
    if offset is not None:
        new_offset += offset
    return new_matrix, new_offset


@register("colour")
def brightness(facts: BatchFacts, affine, seed, p: float, m: float):
    """Add up to m * 255 to every channel. Tiny-ImageNet photos range from dark indoor shots to
    overexposed skies; the class must not depend on exposure."""
    delta = draws.uniform(facts, seed, -m, m) * 255.0
    delta = tf.where(draws.coin(facts, draws.second_stream(seed), p), delta, 0.0)
    return followed_by(affine, draws.eye(facts), tf.tile(delta[:, None], [1, 3]))


@register("colour")
def contrast(facts: BatchFacts, affine, seed, p: float, m: float):
    """Scale the distance to the image's mean grey by a factor in [1-m, 1+m]. Haze, fog and cheap
    cameras flatten contrast; the network should still see the shapes."""
    factor = tf.where(draws.coin(facts, draws.second_stream(seed), p),
                      draws.uniform(facts, seed, 1 - m, 1 + m), 1.0)
    grey = tf.reduce_sum(colour_of_mean(facts, affine) * _gray_row(), axis=-1)
    matrix = factor[:, None, None] * draws.eye(facts)
    return followed_by(affine, matrix, tf.tile(((1 - factor) * grey)[:, None], [1, 3]))


@register("colour")
def saturation(facts: BatchFacts, affine, seed, p: float, m: float):
    """Blend each pixel with its grey value, factor in [1-m, 1+m]. Colour intensity varies with
    light and camera; many classes (e.g. 'goldfish' vs 'tabby') must not rely on it alone."""
    factor = tf.where(draws.coin(facts, draws.second_stream(seed), p),
                      draws.uniform(facts, seed, 1 - m, 1 + m), 1.0)
    to_grey = tf.ones([3, 1]) * _gray_row()  # every channel becomes the grey value
    matrix = factor[:, None, None] * tf.eye(3) + (1 - factor)[:, None, None] * to_grey
    return followed_by(affine, matrix)


def _hue_matrix(angle):
    """Rotation of the chroma plane in YIQ space by `angle` radians (per image), back in RGB."""
    to_yiq = tf.constant(TO_YIQ)
    from_yiq = tf.linalg.inv(to_yiq)
    cos, sin, zero, one = tf.cos(angle), tf.sin(angle), tf.zeros_like(angle), tf.ones_like(angle)
    rotation = draws.matrix([[one, zero, zero], [zero, cos, -sin], [zero, sin, cos]])
    return tf.einsum("ij,bjk,kl->bil", from_yiq, rotation, to_yiq)


@register("colour")
def hue(facts: BatchFacts, affine, seed, p: float, m: float):
    """Rotate hue by up to m * 180 degrees. White balance differs between cameras and light sources;
    a small hue shift keeps colour useful but not decisive."""
    angle = draws.uniform(facts, seed, -m, m) * math.pi
    angle = tf.where(draws.coin(facts, draws.second_stream(seed), p), angle, 0.0)
    return followed_by(affine, _hue_matrix(angle))


@register("colour")
def grayscale(facts: BatchFacts, affine, seed, p: float, m: float):
    """Turn the image grey (three equal channels). About 0.6% of Tiny-ImageNet images are grayscale
    JPEGs; this teaches shape and texture without colour for all classes."""
    to_grey = tf.ones([facts.size, 3, 1]) * _gray_row()  # every channel becomes the grey value
    matrix = draws.choose(draws.coin(facts, seed, p), to_grey, draws.eye(facts))
    return followed_by(affine, matrix)


@register("colour")
def channel_shuffle(facts: BatchFacts, affine, seed, p: float, m: float):
    """Permute the RGB channels at random. A strong colour perturbation: forces shape cues where a
    class (fruit, flowers) could otherwise be learned by its colour alone."""
    index = draws.random_uniform([facts.size], seed, 0, len(PERMUTATIONS), dtype=tf.int32)
    matrix = tf.one_hot(tf.gather(tf.constant(PERMUTATIONS), index), 3)
    shuffled = draws.coin(facts, draws.second_stream(seed), p)
    return followed_by(affine, draws.choose(shuffled, matrix, draws.eye(facts)))


@register("colour")
def invert(facts: BatchFacts, affine, seed, p: float, m: float):
    """Photographic negative (255 - x). Rarely useful alone; kept for AutoAugment-style policies."""
    flip_sign = tf.where(draws.coin(facts, seed, p), -1.0, 1.0)
    offset = tf.tile(tf.where(flip_sign < 0, 255.0, 0.0)[:, None], [1, 3])
    return followed_by(affine, flip_sign[:, None, None] * draws.eye(facts), offset)


def apply_colour(images, affine, as_dot: bool = False):
    """x -> A x + t on every pixel of each image: all the colour ops of a policy in one pass.

    Written as three broadcast products, one per input channel, which XLA fuses into the loop of
    the ops around it: as an einsum it compiles to a dot with k=3 of its own (measured at 64 px on
    one core: 19.6 -> 5.3 us an image for cast, colour map, round; the same values up to float
    rounding). `as_dot` keeps the einsum where the images come straight from the warp in the same
    XLA function (`Policy.__call__`): there a dot is what keeps the warp from being fused into
    this loop and computed once for every channel it reads."""
    matrix, offset = affine
    if as_dot:
        return tf.einsum("bhwc,bdc->bhwd", images, matrix) + offset[:, None, None, :]
    columns = [images[..., c:c + 1] * matrix[:, None, None, :, c] for c in range(3)]
    return columns[0] + columns[1] + columns[2] + offset[:, None, None, :]
