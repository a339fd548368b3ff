"""Pixel augmentations: images in, images out, applied in policy order after the warp and the colour
map (they need the pixels themselves: cutout, noise, blur, solarize, posterize, autocontrast).
Images are float32 in 0..255.
"""

from __future__ import annotations

import tensorflow as tf

from pipeline.ops import draws, row_view
from pipeline.ops.draws import BatchFacts
from pipeline.policy import register


def _per_image(mask):
    """A per-image boolean [B] shaped to select whole images [B, H, W, C]."""
    return mask[:, None, None, None]


@register("pixel")
def cutout(facts: BatchFacts, images, seed, p: float, m: float):
    """Random erasing: fill a square of side m * size (at a random centre, may hang over the edge)
    with the image's mean colour (the source's, through the colour ops of the policy; pixel ops
    placed before cutout do not change it). Makes the network use the whole object, not one
    telltale part; the standard regulariser for small-image ResNets (DeVries & Taylor, 2017)."""
    seeds = draws.split(seed, 3)
    half_h, half_w = m * facts.height / 2, m * facts.width / 2
    cy = draws.uniform(facts, seeds[0], 0.0, float(facts.height))
    cx = draws.uniform(facts, seeds[1], 0.0, float(facts.width))
    # On the row view (pipeline/ops/row_view.py): a mask over [H, W * 3], no broadcast over channels.
    inside = (tf.abs(row_view.pixel_rows(facts.height) - cy[:, None, None]) < half_h) & (
        tf.abs(row_view.pixel_columns(facts.width) - cx[:, None, None]) < half_w)
    inside &= draws.coin(facts, seeds[2], p)[:, None, None]
    fill = row_view.along_rows(facts.mean_colour, facts.width)
    return row_view.images_of(tf.where(inside, fill, row_view.rows(images)), images)


@register("pixel")
def noise(facts: BatchFacts, images, seed, p: float, m: float):
    """Gaussian noise of standard deviation up to m * 255 (m=0.04: about 10 grey levels), like
    sensor noise in dark photos. Drawing a fresh number per pixel was measured as the single most
    expensive step of a policy, so one noise tile is drawn per batch and each image gets one of
    its 16 variants (8 flips/transposes x sign) at its own strength."""
    seeds = draws.split(seed, 3)
    tile = draws.random_normal([facts.height, facts.width, 3], seeds[0])
    # Read through a gather, the tile is computed once: otherwise XLA fuses the Box-Muller into each
    # of the 16 variants below and draws it again for every one (measured: 3.1 ms -> 1.0 ms a batch).
    tile = tf.reshape(tf.gather(tf.reshape(tile, [-1]), tf.range(tf.size(tile))), tile.shape)
    variants = [tile, tf.reverse(tile, [0]), tf.reverse(tile, [1]), tf.reverse(tile, [0, 1])]
    if facts.height == facts.width:
        variants += [tf.transpose(v, [1, 0, 2]) for v in variants]
    variants = tf.stack(variants + [-v for v in variants])
    choice = draws.random_uniform([facts.size], seeds[1], 0, variants.shape[0], dtype=tf.int32)
    sigma = draws.uniform(facts, seeds[2], 0.0, m * 255.0)
    sigma = tf.where(draws.coin(facts, draws.second_stream(seeds[2]), p), sigma, 0.0)
    return images + tf.gather(variants, choice) * sigma[:, None, None, None]


@register("pixel")
def blur(facts: BatchFacts, images, seed, p: float, m: float):
    """Blend towards a 3x3 Gaussian blur by up to m. Many Tiny-ImageNet images were upscaled from
    tiny crops and are soft; blur teaches the network not to rely on crisp edges."""
    kernel = tf.constant([1.0, 2.0, 1.0]) / 4.0  # binomial weights: the 3-tap Gaussian, applied on rows then columns
    padded = tf.pad(images, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="SYMMETRIC")
    rows = padded[:, :-2] * kernel[0] + padded[:, 1:-1] * kernel[1] + padded[:, 2:] * kernel[2]
    blurred = rows[:, :, :-2] * kernel[0] + rows[:, :, 1:-1] * kernel[1] + rows[:, :, 2:] * kernel[2]
    amount = tf.where(draws.coin(facts, draws.second_stream(seed), p), draws.uniform(facts, seed, 0.0, m), 0.0)
    return images + (blurred - images) * amount[:, None, None, None]


@register("pixel")
def solarize(facts: BatchFacts, images, seed, p: float, m: float):
    """Invert pixels above a threshold drawn in [255 (1 - m), 255]. An AutoAugment op: a strong,
    non-linear tone change that keeps edges."""
    threshold = 255.0 * (1.0 - draws.uniform(facts, seed, 0.0, m))
    mask = _per_image(draws.coin(facts, draws.second_stream(seed), p)) & (images >= threshold[:, None, None, None])
    return tf.where(mask, 255.0 - images, images)


@register("pixel")
def posterize(facts: BatchFacts, images, seed, p: float, m: float):
    """Keep only 8 - k bits per channel, k drawn in 1..m. Coarse colour quantisation, like heavy
    JPEG compression in some of the source images."""
    bits = draws.random_uniform([facts.size], seed, 1, int(m) + 1, dtype=tf.int32)  # dropped bits, 1..m
    step = tf.cast(tf.bitwise.left_shift(tf.ones_like(bits), bits), tf.float32)[:, None, None, None]
    quantised = tf.floor(tf.clip_by_value(images, 0.0, 255.0) / step) * step
    return tf.where(_per_image(draws.coin(facts, draws.second_stream(seed), p)), quantised, images)


@register("pixel")
def autocontrast(facts: BatchFacts, images, seed, p: float, m: float):
    """Stretch each channel so its darkest pixel is 0 and brightest 255. Normalises washed-out
    photos; an AutoAugment op."""
    low = tf.reduce_min(images, axis=[1, 2], keepdims=True)
    high = tf.reduce_max(images, axis=[1, 2], keepdims=True)
    stretched = (images - low) * (255.0 / tf.maximum(high - low, 1.0))
    return tf.where(_per_image(draws.coin(facts, seed, p)), stretched, images)

