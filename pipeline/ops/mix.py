"""Mix augmentations: images and labels in, images and soft labels out, applied last. Each image
mixes with its neighbour in a random permutation of the batch; the batch size never changes.
"""

from __future__ import annotations

import tensorflow as tf

from pipeline.ops import draws
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
    rows = tf.range(h)[None, :, None] + 0.5
    cols = tf.range(w)[None, None, :] + 0.5
    inside = (rows >= y0[:, None, None]) & (rows < y1[:, None, None]) & \
             (cols >= x0[:, None, None]) & (cols < x1[:, None, None])
    inside &= draws.coin(facts, seeds[4], p)[:, None, None]
    mixed = tf.where(inside[..., None], tf.gather(images, partner), images)
    taken = tf.reduce_mean(tf.cast(inside, tf.float32), axis=[1, 2])  # exact pasted share
    return mixed, labels * (1 - taken[:, None]) + tf.gather(labels, partner) * taken[:, None]

