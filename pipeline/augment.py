"""A registry of batched, graph-mode augmentations and the policy that fuses them.

Every augmentation works on a whole batch with per-image random parameters, a probability `p`
(per image) and a magnitude `m` in the op's natural unit (documented on each op). They come in
four kinds, and the kind decides how the policy runs them, which is what makes it fast:

- geometric: the op only returns a 3x3 matrix per image (output pixel -> input pixel). The policy
  multiplies the matrices of all geometric ops and warps the batch once, with a gather-based
  bilinear sampler (reflect borders). `tf.raw_ops.ImageProjectiveTransformV3` would be the obvious
  call but has no XLA kernel; the gather warp compiles and, measured here, runs 3.5x faster.
- colour: the op only returns a per-image affine colour map (3x3 matrix and offset). The policy
  composes them and applies one einsum: brightness, contrast, saturation, hue, grayscale,
  channel shuffle and invert cost one pass together. (Clipping between these ops is skipped.)
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
import math
from collections.abc import Callable

import tensorflow as tf

from common.errors import UserError

GRAY = (0.299, 0.587, 0.114)  # ITU-R BT.601 luma weights, as tf.image.rgb_to_grayscale uses
# Random numbers: one named generator, and floats made from integer draws. Measured here, XLA and
# eager TensorFlow turn the same Philox bits into different floats (integers agree), and the same
# seed must give the same augmentation on the host and inside the compiled train step.
PHILOX = "philox"
_FLOAT_BITS = 24


def _split(seed, count: int):
    return tf.random.experimental.stateless_split(seed, count, alg=PHILOX)


def _random_uniform(shape, seed, low=0.0, high=1.0, dtype=tf.float32):
    if dtype.is_integer:
        return tf.random.stateless_uniform(shape, seed, low, high, dtype=dtype, alg=PHILOX)
    bits = tf.random.stateless_uniform(shape, seed, 0, 1 << _FLOAT_BITS, dtype=tf.int32, alg=PHILOX)
    unit = tf.cast(bits, tf.float32) * (1.0 / (1 << _FLOAT_BITS))
    return low + (high - low) * unit


def _random_normal(shape, seed):
    """Box-Muller on our uniforms, for the same reason."""
    seeds = _split(seed, 2)
    u1 = _random_uniform(shape, seeds[0], 1.0 / (1 << _FLOAT_BITS), 1.0)
    u2 = _random_uniform(shape, seeds[1])
    return tf.sqrt(-2.0 * tf.math.log(u1)) * tf.cos(2.0 * math.pi * u2)


@dataclasses.dataclass(frozen=True)
class Augmentation:
    name: str
    kind: str  # "geometric" | "colour" | "pixel" | "mix"
    fn: Callable
    p: float  # default probability per image
    m: float  # default magnitude, in the op's own unit
    doc: str


REGISTRY: dict[str, Augmentation] = {}


def register(kind: str, p: float, m: float = 0.0):
    def wrap(fn):
        REGISTRY[fn.__name__] = Augmentation(fn.__name__, kind, fn, p, m, (fn.__doc__ or "").strip())
        return fn
    return wrap


@dataclasses.dataclass
class Batch:
    """What ops can look at: the images' size, the original per-image mean colour, the boxes."""

    size: int  # batch size (static where the batch is; else a tensor)
    height: int
    width: int
    mean_colour: tf.Tensor  # [B, 3], of the input images
    bbox: tf.Tensor | None  # [B, 4] xmin, ymin, xmax, ymax in [0, 1]


def _uniform(batch: Batch, seed, low=0.0, high=1.0, shape=()):
    return _random_uniform([batch.size, *shape], seed, low, high)


def _coin(batch: Batch, seed, p: float):
    """Per-image booleans, True with probability p."""
    return _uniform(batch, seed) < p


def _eye(batch: Batch, n=3):
    return tf.eye(n, batch_shape=[batch.size])


def _choose(mask, matrix, identity):
    """Per image: `matrix` where mask, else `identity`."""
    return tf.where(mask[:, None, None], matrix, identity)


def _matrix(rows) -> tf.Tensor:
    """Stack per-image scalars into [B, 3, 3]; `rows` is 3 lists of 3 tensors/floats of shape [B]."""
    return tf.stack([tf.stack(row, axis=-1) for row in rows], axis=-2)


# ----------------------------------------------------------------------------------------------------
# Geometric ops: each returns [B, 3, 3] mapping output (x, y, 1) to input, in pixel units centred on
# the image centre. The policy multiplies them and warps once.
# ----------------------------------------------------------------------------------------------------
@register("geometric", p=0.5)
def flip(batch: Batch, seed, p: float, m: float):
    """Horizontal flip. Tiny-ImageNet objects are left-right symmetric in meaning: a dog facing left
    is still a dog. Doubles the effective data at no cost (folded into the one warp)."""
    sign = tf.where(_coin(batch, seed, p), -1.0, 1.0)
    one, zero = tf.ones_like(sign), tf.zeros_like(sign)
    return _matrix([[sign, zero, zero], [zero, one, zero], [zero, zero, one]])


@register("geometric", p=0.5, m=0.125)
def translate(batch: Batch, seed, p: float, m: float):
    """Pad-and-random-crop, as a translation of up to m * size pixels each way with reflected
    borders (m=0.125: the classic 4 px at 32 px, 8 px at 64 px). Teaches that position does not
    matter; the object in a 64x64 crop is rarely centred."""
    shift = _uniform(batch, seed, -m, m, shape=(2,)) * tf.constant([batch.width, batch.height], tf.float32)
    shift = tf.round(shift) * tf.cast(_coin(batch, tf.reverse(seed, [0]), p), tf.float32)[:, None]
    one, zero = tf.ones_like(shift[:, 0]), tf.zeros_like(shift[:, 0])
    return _matrix([[one, zero, shift[:, 0]], [zero, one, shift[:, 1]], [zero, zero, one]])


@register("geometric", p=0.5, m=0.4)
def scale(batch: Batch, seed, p: float, m: float):
    """Zoom in and out by a factor exp(U(-m, m)) (m=0.4: 0.67x to 1.5x), output size unchanged.
    Objects in Tiny-ImageNet fill anywhere from 5% to 100% of the frame; at a 32 px stage this also
    shows objects as if seen at 24 or 48 px, which eases the switch to the next resolution."""
    factor = tf.exp(_uniform(batch, seed, -m, m))
    factor = tf.where(_coin(batch, tf.reverse(seed, [0]), p), factor, 1.0)
    inverse, zero, one = 1.0 / factor, tf.zeros_like(factor), tf.ones_like(factor)
    return _matrix([[inverse, zero, zero], [zero, inverse, zero], [zero, zero, one]])


@register("geometric", p=0.3, m=15.0)
def rotate(batch: Batch, seed, p: float, m: float):
    """Rotate by up to m degrees either way (reflected borders, so no black corners). Photos are
    rarely level; small rotations make the features tolerant to a tilted camera."""
    angle = _uniform(batch, seed, -m, m) * (math.pi / 180.0)
    angle = tf.where(_coin(batch, tf.reverse(seed, [0]), p), angle, 0.0)
    cos, sin, zero, one = tf.cos(angle), tf.sin(angle), tf.zeros_like(angle), tf.ones_like(angle)
    return _matrix([[cos, -sin, zero], [sin, cos, zero], [zero, zero, one]])


@register("geometric", p=0.2, m=0.2)
def shear(batch: Batch, seed, p: float, m: float):
    """Shear along x and y by up to m (m=0.2: about 11 degrees). Mimics a change of viewpoint, which
    the 64x64 crops of ImageNet objects show a lot of."""
    amount = _uniform(batch, seed, -m, m, shape=(2,))
    amount = amount * tf.cast(_coin(batch, tf.reverse(seed, [0]), p), tf.float32)[:, None]
    one, zero = tf.ones_like(amount[:, 0]), tf.zeros_like(amount[:, 0])
    return _matrix([[one, amount[:, 0], zero], [amount[:, 1], one, zero], [zero, zero, one]])


@register("geometric", p=0.3, m=0.3)
def object_crop(batch: Batch, seed, p: float, m: float):
    """Box-aware zoom: crop a square around the object's box (from the records' `bbox`) with a
    random margin of up to m of the box size, and scale it to fill the image. Small objects (a
    quarter of the images have boxes under 20% of the frame) then get seen at full resolution."""
    if batch.bbox is None:
        return _eye(batch)
    box = batch.bbox
    centre_x = (box[:, 0] + box[:, 2]) / 2 - 0.5
    centre_y = (box[:, 1] + box[:, 3]) / 2 - 0.5
    side = tf.maximum(box[:, 2] - box[:, 0], box[:, 3] - box[:, 1])
    side = tf.clip_by_value(side * (1.0 + _uniform(batch, seed, 0.0, m)), 0.35, 1.0)
    factor = tf.where(_coin(batch, tf.reverse(seed, [0]), p), side, 1.0)
    # Keep the crop inside the image so the border is not reflected into view.
    limit = (1.0 - factor) / 2
    shift_x = tf.clip_by_value(centre_x, -limit, limit) * batch.width
    shift_y = tf.clip_by_value(centre_y, -limit, limit) * batch.height
    shift_x = tf.where(factor < 1.0, shift_x, 0.0)
    shift_y = tf.where(factor < 1.0, shift_y, 0.0)
    zero, one = tf.zeros_like(factor), tf.ones_like(factor)
    return _matrix([[factor, zero, shift_x], [zero, factor, shift_y], [zero, zero, one]])


BOX_AWARE = frozenset({"object_crop"})  # geometric ops that read the source image's box


def warp(images: tf.Tensor, matrices: tf.Tensor) -> tf.Tensor:
    """Bilinear warp with reflected (symmetric) borders, written with gathers so XLA compiles it.

    `matrices` [B, 3, 3] map output pixel centres to input positions, both relative to the centre.
    An identity or a flip lands exactly on pixel centres, so it reproduces the pixels exactly.
    """
    shape = tf.shape(images)
    b, h, w, c = shape[0], shape[1], shape[2], shape[3]
    hf, wf = tf.cast(h, tf.float32), tf.cast(w, tf.float32)
    ys, xs = tf.meshgrid(tf.range(hf) + 0.5 - hf / 2, tf.range(wf) + 0.5 - wf / 2, indexing="ij")
    grid = tf.stack([xs, ys, tf.ones_like(xs)], axis=-1)  # [H, W, 3]
    source = tf.einsum("bij,hwj->bhwi", matrices, grid)
    x = source[..., 0] / source[..., 2] + wf / 2 - 0.5
    y = source[..., 1] / source[..., 2] + hf / 2 - 0.5
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


# ----------------------------------------------------------------------------------------------------
# Colour ops: each maps the current per-image affine colour transform (A [B,3,3], t [B,3]) to a new
# one. `x -> A x + t` is applied to every pixel once, after all of them are composed.
# ----------------------------------------------------------------------------------------------------
def _gray_row():
    return tf.constant([GRAY], tf.float32)  # [1, 3]


def _current_mean(batch: Batch, affine):
    """The per-image mean colour after the transform so far (affine maps commute with the mean)."""
    matrix, offset = affine
    return tf.einsum("bij,bj->bi", matrix, batch.mean_colour) + offset


def _then(affine, matrix, offset=None):
    """Compose: first `affine`, then x -> matrix x + offset."""
    current_matrix, current_offset = affine
    new_matrix = tf.matmul(matrix, current_matrix)
    new_offset = tf.einsum("bij,bj->bi", matrix, current_offset)
    if offset is not None:
        new_offset += offset
    return new_matrix, new_offset


@register("colour", p=0.5, m=0.25)
def brightness(batch: Batch, affine, seed, p: float, m: float):
    """Add up to m * 255 to every channel. Tiny-ImageNet photos range from dark indoor shots to
    overexposed skies; the class must not depend on exposure."""
    delta = _uniform(batch, seed, -m, m) * 255.0
    delta = tf.where(_coin(batch, tf.reverse(seed, [0]), p), delta, 0.0)
    return _then(affine, _eye(batch), tf.tile(delta[:, None], [1, 3]))


@register("colour", p=0.5, m=0.3)
def contrast(batch: Batch, affine, seed, p: float, m: float):
    """Scale the distance to the image's mean grey by a factor in [1-m, 1+m]. Haze, fog and cheap
    cameras flatten contrast; the network should still see the shapes."""
    factor = tf.where(_coin(batch, tf.reverse(seed, [0]), p), _uniform(batch, seed, 1 - m, 1 + m), 1.0)
    grey = tf.reduce_sum(_current_mean(batch, affine) * _gray_row(), axis=-1)
    matrix = factor[:, None, None] * _eye(batch)
    return _then(affine, matrix, tf.tile(((1 - factor) * grey)[:, None], [1, 3]))


@register("colour", p=0.5, m=0.4)
def saturation(batch: Batch, affine, seed, p: float, m: float):
    """Blend each pixel with its grey value, factor in [1-m, 1+m]. Colour intensity varies with
    light and camera; many classes (e.g. 'goldfish' vs 'tabby') must not rely on it alone."""
    factor = tf.where(_coin(batch, tf.reverse(seed, [0]), p), _uniform(batch, seed, 1 - m, 1 + m), 1.0)
    to_grey = tf.ones([3, 1]) * _gray_row()  # every channel becomes the grey value
    matrix = factor[:, None, None] * tf.eye(3) + (1 - factor)[:, None, None] * to_grey
    return _then(affine, matrix)


def _hue_matrix(angle):
    """Rotation of the chroma plane in YIQ space by `angle` radians (per image), back in RGB."""
    to_yiq = tf.constant([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    from_yiq = tf.linalg.inv(to_yiq)
    cos, sin, zero, one = tf.cos(angle), tf.sin(angle), tf.zeros_like(angle), tf.ones_like(angle)
    rotation = _matrix([[one, zero, zero], [zero, cos, -sin], [zero, sin, cos]])
    return tf.einsum("ij,bjk,kl->bil", from_yiq, rotation, to_yiq)


@register("colour", p=0.3, m=0.1)
def hue(batch: Batch, affine, seed, p: float, m: float):
    """Rotate hue by up to m * 180 degrees. White balance differs between cameras and light sources;
    a small hue shift keeps colour useful but not decisive."""
    angle = _uniform(batch, seed, -m, m) * math.pi
    angle = tf.where(_coin(batch, tf.reverse(seed, [0]), p), angle, 0.0)
    return _then(affine, _hue_matrix(angle))


@register("colour", p=0.1)
def grayscale(batch: Batch, affine, seed, p: float, m: float):
    """Turn the image grey (three equal channels). About 0.6% of Tiny-ImageNet images are grayscale
    JPEGs; this teaches shape and texture without colour for all classes."""
    matrix = _choose(_coin(batch, seed, p), tf.ones([batch.size, 3, 1]) * _gray_row(), _eye(batch))
    return _then(affine, matrix)


@register("colour", p=0.1)
def channel_shuffle(batch: Batch, affine, seed, p: float, m: float):
    """Permute the RGB channels at random. A strong colour perturbation: forces shape cues where a
    class (fruit, flowers) could otherwise be learned by its colour alone."""
    permutations = tf.constant([[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]])
    index = _random_uniform([batch.size], seed, 0, 6, dtype=tf.int32)
    matrix = tf.one_hot(tf.gather(permutations, index), 3)
    return _then(affine, _choose(_coin(batch, tf.reverse(seed, [0]), p), matrix, _eye(batch)))


@register("colour", p=0.05)
def invert(batch: Batch, affine, seed, p: float, m: float):
    """Photographic negative (255 - x). Rarely useful alone; kept for AutoAugment-style policies."""
    flip_sign = tf.where(_coin(batch, seed, p), -1.0, 1.0)
    offset = tf.tile(tf.where(flip_sign < 0, 255.0, 0.0)[:, None], [1, 3])
    return _then(affine, flip_sign[:, None, None] * _eye(batch), offset)


def apply_colour(images, affine):
    matrix, offset = affine
    return tf.einsum("bhwc,bdc->bhwd", images, matrix) + offset[:, None, None, :]


# ----------------------------------------------------------------------------------------------------
# Pixel ops: images in, images out.
# ----------------------------------------------------------------------------------------------------
def _per_image(mask):
    return mask[:, None, None, None]


@register("pixel", p=0.5, m=0.4)
def cutout(batch: Batch, images, seed, p: float, m: float):
    """Random erasing: fill a square of side m * size (at a random centre, may hang over the edge)
    with the image's mean colour. Makes the network use the whole object, not one telltale part;
    the standard regulariser for small-image ResNets (DeVries & Taylor, 2017)."""
    seeds = _split(seed, 3)
    half_h, half_w = m * batch.height / 2, m * batch.width / 2
    cy = _uniform(batch, seeds[0], 0.0, float(batch.height))
    cx = _uniform(batch, seeds[1], 0.0, float(batch.width))
    rows = tf.range(batch.height, dtype=tf.float32)[None, :, None] + 0.5
    cols = tf.range(batch.width, dtype=tf.float32)[None, None, :] + 0.5
    inside = (tf.abs(rows - cy[:, None, None]) < half_h) & (tf.abs(cols - cx[:, None, None]) < half_w)
    inside &= _coin(batch, seeds[2], p)[:, None, None]
    fill = tf.reduce_mean(images, axis=[1, 2], keepdims=True)
    return tf.where(inside[..., None], fill, images)


@register("pixel", p=0.2, m=0.04)
def noise(batch: Batch, images, seed, p: float, m: float):
    """Gaussian noise of standard deviation up to m * 255 (m=0.04: about 10 grey levels), like
    sensor noise in dark photos. Drawing a fresh number per pixel was measured as the single most
    expensive step of a policy, so one noise tile is drawn per batch and each image gets one of
    its 16 variants (8 flips/transposes x sign) at its own strength."""
    seeds = _split(seed, 3)
    tile = _random_normal([batch.height, batch.width, 3], seeds[0])
    variants = [tile, tf.reverse(tile, [0]), tf.reverse(tile, [1]), tf.reverse(tile, [0, 1])]
    if batch.height == batch.width:
        variants += [tf.transpose(v, [1, 0, 2]) for v in variants]
    variants = tf.stack(variants + [-v for v in variants])
    choice = _random_uniform([batch.size], seeds[1], 0, variants.shape[0], dtype=tf.int32)
    sigma = _uniform(batch, seeds[2], 0.0, m * 255.0)
    sigma = tf.where(_coin(batch, tf.reverse(seeds[2], [0]), p), sigma, 0.0)
    return images + tf.gather(variants, choice) * sigma[:, None, None, None]


@register("pixel", p=0.1, m=1.0)
def blur(batch: Batch, images, seed, p: float, m: float):
    """Blend towards a 3x3 Gaussian blur by up to m. Many Tiny-ImageNet images were upscaled from
    tiny crops and are soft; blur teaches the network not to rely on crisp edges."""
    kernel = tf.constant([1.0, 2.0, 1.0]) / 4.0
    padded = tf.pad(images, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="SYMMETRIC")
    rows = padded[:, :-2] * kernel[0] + padded[:, 1:-1] * kernel[1] + padded[:, 2:] * kernel[2]
    blurred = rows[:, :, :-2] * kernel[0] + rows[:, :, 1:-1] * kernel[1] + rows[:, :, 2:] * kernel[2]
    amount = tf.where(_coin(batch, tf.reverse(seed, [0]), p), _uniform(batch, seed, 0.0, m), 0.0)
    return images + (blurred - images) * amount[:, None, None, None]


@register("pixel", p=0.1, m=0.5)
def solarize(batch: Batch, images, seed, p: float, m: float):
    """Invert pixels above a threshold drawn in [255 (1 - m), 255]. An AutoAugment op: a strong,
    non-linear tone change that keeps edges."""
    threshold = 255.0 * (1.0 - _uniform(batch, seed, 0.0, m))
    mask = _per_image(_coin(batch, tf.reverse(seed, [0]), p)) & (images >= threshold[:, None, None, None])
    return tf.where(mask, 255.0 - images, images)


@register("pixel", p=0.1, m=4.0)
def posterize(batch: Batch, images, seed, p: float, m: float):
    """Keep only 8 - k bits per channel, k drawn in 1..m. Coarse colour quantisation, like heavy
    JPEG compression in some of the source images."""
    bits = _random_uniform([batch.size], seed, 1, int(m) + 1, dtype=tf.int32)
    step = tf.cast(tf.bitwise.left_shift(tf.ones_like(bits), bits), tf.float32)[:, None, None, None]
    quantised = tf.floor(tf.clip_by_value(images, 0.0, 255.0) / step) * step
    return tf.where(_per_image(_coin(batch, tf.reverse(seed, [0]), p)), quantised, images)


@register("pixel", p=0.1)
def autocontrast(batch: Batch, images, seed, p: float, m: float):
    """Stretch each channel so its darkest pixel is 0 and brightest 255. Normalises washed-out
    photos; an AutoAugment op."""
    low = tf.reduce_min(images, axis=[1, 2], keepdims=True)
    high = tf.reduce_max(images, axis=[1, 2], keepdims=True)
    stretched = (images - low) * (255.0 / tf.maximum(high - low, 1.0))
    return tf.where(_per_image(_coin(batch, seed, p)), stretched, images)


# ----------------------------------------------------------------------------------------------------
# Mix ops: images and labels in, images and soft labels out. Each image mixes with its neighbour in a
# random permutation of the batch; the batch size never changes.
# ----------------------------------------------------------------------------------------------------
def _beta_like(batch: Batch, seed, alpha: float):
    """A symmetric Beta(alpha, alpha)-like draw: a Kumaraswamy(alpha, alpha) sample, mirrored with
    probability 1/2. The true Beta needs the gamma sampler, which has no XLA kernel."""
    seeds = _split(seed, 2)
    u = tf.clip_by_value(_uniform(batch, seeds[0]), 1e-6, 1 - 1e-6)
    draw = tf.pow(1.0 - tf.pow(1.0 - u, 1.0 / alpha), 1.0 / alpha)
    return tf.where(_coin(batch, seeds[1], 0.5), draw, 1.0 - draw)


def _partners(batch: Batch, seed):
    return tf.argsort(_random_uniform([batch.size], seed))


@register("mix", p=0.3, m=0.2)
def mixup(batch: Batch, images, labels, seed, p: float, m: float):
    """Blend each image with another from the batch, weight ~ Beta(m, m), and blend the labels the
    same (Zhang et al., 2018). A strong regulariser for long schedules: 500 epochs on 100k images
    overfit without it."""
    seeds = _split(seed, 3)
    partner = _partners(batch, seeds[0])
    keep = tf.where(_coin(batch, seeds[1], p), _beta_like(batch, seeds[2], m), 1.0)
    mixed = images * keep[:, None, None, None] + tf.gather(images, partner) * (1 - keep[:, None, None, None])
    return mixed, labels * keep[:, None] + tf.gather(labels, partner) * (1 - keep[:, None])


@register("mix", p=0.3, m=1.0)
def cutmix(batch: Batch, images, labels, seed, p: float, m: float):
    """Paste a random box from another image of the batch; labels mix by the pasted area
    (Yun et al., 2019). Unlike cutout no pixels are wasted, and the network learns from parts."""
    seeds = _split(seed, 5)
    partner = _partners(batch, seeds[0])
    area = 1.0 - _beta_like(batch, seeds[1], m)  # fraction of the image taken from the partner
    side = tf.sqrt(area)
    h, w = float(batch.height), float(batch.width)
    cy, cx = _uniform(batch, seeds[2], 0.0, h), _uniform(batch, seeds[3], 0.0, w)
    y0, y1 = tf.clip_by_value(cy - side * h / 2, 0, h), tf.clip_by_value(cy + side * h / 2, 0, h)
    x0, x1 = tf.clip_by_value(cx - side * w / 2, 0, w), tf.clip_by_value(cx + side * w / 2, 0, w)
    rows = tf.range(h)[None, :, None] + 0.5
    cols = tf.range(w)[None, None, :] + 0.5
    inside = (rows >= y0[:, None, None]) & (rows < y1[:, None, None]) & \
             (cols >= x0[:, None, None]) & (cols < x1[:, None, None])
    inside &= _coin(batch, seeds[4], p)[:, None, None]
    mixed = tf.where(inside[..., None], tf.gather(images, partner), images)
    taken = tf.reduce_mean(tf.cast(inside, tf.float32), axis=[1, 2])  # exact pasted share
    return mixed, labels * (1 - taken[:, None]) + tf.gather(labels, partner) * taken[:, None]


# ----------------------------------------------------------------------------------------------------
# Policies
# ----------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Step:
    name: str
    p: float
    m: float


DEFAULT_POLICY = (
    "flip, translate, scale, rotate, shear, brightness, contrast, saturation, hue, grayscale, "
    "cutout, noise, cutmix"
)


def parse_policy(spec) -> list[Step]:
    """A policy from config: a string `"flip, rotate:p=0.5:m=20, cutout"` or a list of names or
    of tables `{name = "rotate", p = 0.5, m = 20}`. Unknown names and bad values are refused."""
    if spec is None or spec == "default":
        spec = DEFAULT_POLICY
    if not isinstance(spec, (str, list, tuple)):
        raise UserError(f"augmentation policy: expected a string or a list of augmentations, got {spec!r}")
    if spec in ("none", ""):
        return []
    items = [s.strip() for s in spec.split(",") if s.strip()] if isinstance(spec, str) else list(spec)
    steps = []
    for item in items:
        if isinstance(item, Step):
            steps.append(item)
            continue
        if isinstance(item, str):
            name, *settings = item.split(":")
            values = {}
            for setting in settings:
                key, _, value = setting.partition("=")
                values[key.strip()] = value
        elif isinstance(item, dict):
            values = dict(item)
            name = values.pop("name", "")
        else:
            raise UserError(f"augmentation policy: cannot read {item!r}")
        if not isinstance(name, str):
            raise UserError(f"augmentation policy: name {name!r} is not an augmentation's name")
        name = name.strip()
        if name not in REGISTRY:
            raise UserError(f"augmentation policy: unknown augmentation {name!r} (known: {', '.join(REGISTRY)})")
        unknown = set(values) - {"p", "m"}
        if unknown:
            raise UserError(f"augmentation policy: {name}: unknown setting {sorted(unknown)[0]!r} (use p and m)")
        try:
            p = float(values.get("p", REGISTRY[name].p))
            m = float(values.get("m", REGISTRY[name].m))
        except (TypeError, ValueError):
            raise UserError(f"augmentation policy: {name}: p and m must be numbers") from None
        if not (math.isfinite(p) and math.isfinite(m)):
            raise UserError(f"augmentation policy: {name}: p and m must be finite numbers")
        if not 0.0 <= p <= 1.0:
            raise UserError(f"augmentation policy: {name}: p={p} outside [0, 1]")
        steps.append(Step(name, p, m))
    return steps


class Policy:
    """A list of steps, run as geometric warp -> colour map -> pixel ops -> mix ops.

    Call it on a batch: `images, labels = policy(images, labels, seed, bbox)` with images uint8 or
    float [B, H, W, 3] in 0..255, labels float [B, K], seed int [2]. Pure TF ops, XLA-compilable.
    """

    def __init__(self, spec=None):
        self.steps = parse_policy(spec)
        self.kinds = {kind: [s for s in self.steps if REGISTRY[s.name].kind == kind]
                      for kind in ("geometric", "colour", "pixel", "mix")}

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
        batch = Batch(size, static[1], static[2], tf.reduce_mean(images, axis=[1, 2]), bbox)
        seeds = _split(tf.cast(seed, tf.int64), len(self.steps))
        seed_of = {id(step): seeds[i] for i, step in enumerate(self.steps)}
        if self.kinds["geometric"]:
            # Matrices map output to input: the product A @ B applies A to the source first, then B.
            # Box-aware ops come first whatever the policy order: the box describes the source image,
            # so the crop is taken around the object there and the other ops then act on the crop.
            matrix = _eye(batch)
            for step in sorted(self.kinds["geometric"], key=lambda s: s.name not in BOX_AWARE):
                matrix = tf.matmul(matrix, REGISTRY[step.name].fn(batch, seed_of[id(step)], step.p, step.m))
            images = warp(images, matrix)
        if self.kinds["colour"]:
            affine = (_eye(batch), tf.zeros([batch.size, 3]))
            for step in self.kinds["colour"]:
                affine = REGISTRY[step.name].fn(batch, affine, seed_of[id(step)], step.p, step.m)
            images = apply_colour(images, affine)
        for step in self.kinds["pixel"]:
            images = REGISTRY[step.name].fn(batch, images, seed_of[id(step)], step.p, step.m)
        images = tf.clip_by_value(images, 0.0, 255.0)
        for step in self.kinds["mix"]:
            images, labels = REGISTRY[step.name].fn(batch, images, labels, seed_of[id(step)], step.p, step.m)
        return images, labels
