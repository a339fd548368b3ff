"""Geometric augmentations: each returns [B, 3, 3] mapping output (x, y, 1) to input, in pixel
units centred on the image centre. The policy multiplies them and warps the batch once (`warp`),
with a gather-based bilinear sampler (reflect borders). `tf.raw_ops.ImageProjectiveTransformV3`
would be the obvious call but has no XLA kernel; the gather warp compiles and, measured here, runs
3.5x faster.
"""

from __future__ import annotations

import math

import tensorflow as tf

from pipeline.ops import draws
from pipeline.ops.draws import BatchFacts
from pipeline.policy import register

# object_crop's smallest crop side, as a share of the frame: a tighter crop would blow a handful of
# pixels up to the whole image.
SMALLEST_CROP = 0.35


@register("geometric")
def flip(facts: BatchFacts, seed, p: float, m: float):
    """Horizontal flip. Tiny-ImageNet objects are left-right symmetric in meaning: a dog facing left
    is still a dog. Doubles the effective data at no cost (folded into the one warp)."""
    sign = tf.where(draws.coin(facts, seed, p), -1.0, 1.0)
    one, zero = tf.ones_like(sign), tf.zeros_like(sign)
    return draws.matrix([[sign, zero, zero], [zero, one, zero], [zero, zero, one]])


@register("geometric")
def translate(facts: BatchFacts, seed, p: float, m: float):
    """Pad-and-random-crop, as a translation of up to m * size pixels each way with reflected
    borders (m=0.125: the classic 4 px at 32 px, 8 px at 64 px). Teaches that position does not
    matter; the object in a 64x64 crop is rarely centred."""
    shift = draws.uniform(facts, seed, -m, m, shape=(2,)) * tf.constant([facts.width, facts.height], tf.float32)
    shift = tf.round(shift) * tf.cast(draws.coin(facts, draws.second_stream(seed), p), tf.float32)[:, None]
    one, zero = tf.ones_like(shift[:, 0]), tf.zeros_like(shift[:, 0])
    return draws.matrix([[one, zero, shift[:, 0]], [zero, one, shift[:, 1]], [zero, zero, one]])


@register("geometric")
def scale(facts: BatchFacts, seed, p: float, m: float):
    """Zoom in and out by a factor exp(U(-m, m)) (m=0.4: 0.67x to 1.5x), output size unchanged.
    Objects in Tiny-ImageNet fill anywhere from 5% to 100% of the frame; at a 32 px stage this also
    shows objects as if seen at 24 or 48 px, which eases the switch to the next resolution."""
    factor = tf.exp(draws.uniform(facts, seed, -m, m))
    factor = tf.where(draws.coin(facts, draws.second_stream(seed), p), factor, 1.0)
    inverse, zero, one = 1.0 / factor, tf.zeros_like(factor), tf.ones_like(factor)
    return draws.matrix([[inverse, zero, zero], [zero, inverse, zero], [zero, zero, one]])


@register("geometric")
def rotate(facts: BatchFacts, seed, p: float, m: float):
    """Rotate by up to m degrees either way (reflected borders, so no black corners). Photos are
    rarely level; small rotations make the features tolerant to a tilted camera."""
    angle = draws.uniform(facts, seed, -m, m) * (math.pi / 180.0)  # degrees to radians
    angle = tf.where(draws.coin(facts, draws.second_stream(seed), p), angle, 0.0)
    cos, sin, zero, one = tf.cos(angle), tf.sin(angle), tf.zeros_like(angle), tf.ones_like(angle)
    return draws.matrix([[cos, -sin, zero], [sin, cos, zero], [zero, zero, one]])


@register("geometric")
def shear(facts: BatchFacts, seed, p: float, m: float):
    """Shear along x and y by up to m (m=0.2: about 11 degrees). Mimics a change of viewpoint, which
    the 64x64 crops of ImageNet objects show a lot of."""
    amount = draws.uniform(facts, seed, -m, m, shape=(2,))
    amount = amount * tf.cast(draws.coin(facts, draws.second_stream(seed), p), tf.float32)[:, None]
    one, zero = tf.ones_like(amount[:, 0]), tf.zeros_like(amount[:, 0])
    return draws.matrix([[one, amount[:, 0], zero], [amount[:, 1], one, zero], [zero, zero, one]])


@register("geometric")
def object_crop(facts: BatchFacts, seed, p: float, m: float):
    """Box-aware zoom: crop a square around the object's box (from the records' `bbox`) with a
    random margin of up to m of the box size, and scale it to fill the image. Small objects (a
    quarter of the images have boxes under 20% of the frame) then get seen at full resolution."""
    if facts.bbox is None:
        return draws.eye(facts)
    box = facts.bbox
    centre_x = (box[:, 0] + box[:, 2]) / 2 - 0.5
    centre_y = (box[:, 1] + box[:, 3]) / 2 - 0.5
    side = tf.maximum(box[:, 2] - box[:, 0], box[:, 3] - box[:, 1])
    side = tf.clip_by_value(side * (1.0 + draws.uniform(facts, seed, 0.0, m)), SMALLEST_CROP, 1.0)
    factor = tf.where(draws.coin(facts, draws.second_stream(seed), p), side, 1.0)
    # Keep the crop inside the image so the border is not reflected into view.
    limit = (1.0 - factor) / 2
    shift_x = tf.clip_by_value(centre_x, -limit, limit) * facts.width
    shift_y = tf.clip_by_value(centre_y, -limit, limit) * facts.height
    shift_x = tf.where(factor < 1.0, shift_x, 0.0)
    shift_y = tf.where(factor < 1.0, shift_y, 0.0)
    zero, one = tf.zeros_like(factor), tf.ones_like(factor)
    return draws.matrix([[factor, zero, shift_x], [zero, factor, shift_y], [zero, zero, one]])


def warp(images: tf.Tensor, matrices: tf.Tensor) -> tf.Tensor:
    """Bilinear warp with reflected (symmetric) borders, written with gathers so XLA compiles it.

    `matrices` [B, 3, 3] map output pixel centres to input positions, both relative to the centre.
    They are affine, as every geometric op's is (last row 0 0 1, and so is any product of them):
    the last row is not read, which saves two divisions a pixel by a depth that is exactly 1
    (measured at 64 px: 31.2 -> 29.2 us an image, the same pixels).
    An identity or a flip lands exactly on pixel centres, so it reproduces the pixels exactly.
    """
    # Static sizes where the shape is known: the reflect's modulo by a constant compiles to a
    # multiply (a mask at 64 px) instead of an integer division per pixel.
    shape = tf.shape(images)
    b, h, w, c = (shape[i] if images.shape[i] is None else images.shape[i] for i in range(4))
    hf, wf = tf.cast(h, tf.float32), tf.cast(w, tf.float32)
    ys, xs = tf.meshgrid(tf.range(hf) + 0.5 - hf / 2, tf.range(wf) + 0.5 - wf / 2, indexing="ij")
    # Each source coordinate written out as m_i0 x + m_i1 y + m_i2 over the [H, W] grid: as an
    # einsum, XLA's CPU dot with k=3 (and its transposes) took a third of the whole warp.
    rows = matrices[:, None, None, :, :]  # [B, 1, 1, 3, 3]

    def row(i):
        return rows[..., i, 0] * xs + rows[..., i, 1] * ys + rows[..., i, 2]

    x = row(0) + wf / 2 - 0.5
    y = row(1) + hf / 2 - 0.5
    x0, y0 = tf.floor(x), tf.floor(y)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]

    def reflect(index, size):
        index = tf.math.floormod(tf.cast(index, tf.int32), 2 * size)
        return tf.where(index >= size, 2 * size - 1 - index, index)

    flat = tf.reshape(images, [-1, c])
    base = (tf.range(b) * h * w)[:, None, None]

    def sample(yy, xx):
        return tf.gather(flat, base + reflect(yy, h) * w + reflect(xx, w))

    top = sample(y0, x0) * (1 - fx) + sample(y0, x0 + 1) * fx
    bottom = sample(y0 + 1, x0) * (1 - fx) + sample(y0 + 1, x0 + 1) * fx
    return top * (1 - fy) + bottom * fy

