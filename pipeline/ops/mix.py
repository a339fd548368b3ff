"""Mix augmentations: images and labels in, images and soft labels out, applied last. Each image
mixes with its neighbour in a random permutation of the batch; the batch size never changes.
"""

from __future__ import annotations

import tensorflow as tf

from pipeline.ops import draws, row_view
from pipeline.ops.draws import BatchFacts
from pipeline.policy import register

_EDGE = 1e-6  # keeps the uniform off 0 and 1, so the Beta-like draw stays strictly inside (0, 1)


def _beta_like(facts: BatchFacts, seed, alpha: float):
    """A symmetric Beta(alpha, alpha)-like draw: a Kumaraswamy(alpha, alpha) sample, mirrored with
    probability 1/2. The true Beta needs the gamma sampler, which has no XLA kernel."""
    seeds = draws.split(seed, 2)
    u = tf.clip_by_value(draws.uniform(facts, seeds[0]), _EDGE, 1 - _EDGE)
    draw = tf.pow(1.0 - tf.pow(1.0 - u, 1.0 / alpha), 1.0 / alpha)
    return tf.where(draws.coin(facts, seeds[1], 0.5), draw, 1.0 - draw)


def _centres_within(low, high):
    """How many pixel centres k + 0.5 (k an integer) lie in [low, high)."""
    return tf.maximum(tf.math.ceil(high - 0.5) - tf.math.ceil(low - 0.5), 0.0)


def _partners(facts: BatchFacts, seed):
    """A random permutation of the batch: image i mixes with image partners[i]."""
    return tf.argsort(draws.random_uniform([facts.size], seed))


@register("mix")
def mixup(facts: BatchFacts, images, labels, seed, p: float, m: float):
    """Blend each image with another from the batch, weight ~ Beta(m, m), and blend the labels the
    same (Zhang et al., 2018). A strong regulariser for long schedules: 500 epochs on 100k images
    overfit without it."""
    seeds = draws.split(seed, 3)
    partner = _partners(facts, seeds[0])
    keep = tf.where(draws.coin(facts, seeds[1], p), _beta_like(facts, seeds[2], m), 1.0)
    mixed = images * keep[:, None, None, None] + tf.gather(images, partner) * (1 - keep[:, None, None, None])
    return mixed, labels * keep[:, None] + tf.gather(labels, partner) * (1 - keep[:, None])


@register("mix")
def cutmix(facts: BatchFacts, images, labels, seed, p: float, m: float):
    """Paste a random box from another image of the batch; labels mix by the pasted area
    (Yun et al., 2019). Unlike cutout no pixels are wasted, and the network learns from parts."""
    seeds = draws.split(seed, 5)
    partner = _partners(facts, seeds[0])
    area = 1.0 - _beta_like(facts, seeds[1], m)  # fraction of the image taken from the partner
    side = tf.sqrt(area)
    h, w = float(facts.height), float(facts.width)
    cy, cx = draws.uniform(facts, seeds[2], 0.0, h), draws.uniform(facts, seeds[3], 0.0, w)
    y0, y1 = tf.clip_by_value(cy - side * h / 2, 0, h), tf.clip_by_value(cy + side * h / 2, 0, h)
    x0, x1 = tf.clip_by_value(cx - side * w / 2, 0, w), tf.clip_by_value(cx + side * w / 2, 0, w)
    # On the row view (pipeline/ops/row_view.py): a mask over [H, W * 3], no broadcast over channels.
    rows, cols = row_view.pixel_rows(facts.height), row_view.pixel_columns(facts.width)
    inside = (rows >= y0[:, None, None]) & (rows < y1[:, None, None]) & \
             (cols >= x0[:, None, None]) & (cols < x1[:, None, None])
    pasted = draws.coin(facts, seeds[4], p)
    inside &= pasted[:, None, None]
    flat = row_view.rows(images)
    mixed = row_view.images_of(tf.where(inside, tf.gather(flat, partner), flat), images)
    # The exact pasted share, counted instead of averaged over the mask: the pixel centres k + 0.5
    # inside [low, high) are k = ceil(low - 0.5) .. ceil(high - 0.5) - 1.
    taken = tf.where(pasted, _centres_within(y0, y1) * _centres_within(x0, x1) / (h * w), 0.0)
    return mixed, labels * (1 - taken[:, None]) + tf.gather(labels, partner) * taken[:, None]

