"""The last stage of the input: a decoded batch -> (images, one-hot labels[, ...]) for the model.

Take the decoded batch (pipeline/read.py), resize it when asked (`InputSpec.resize_to`: e.g.
evaluating at 56 px from the 64 px records), map labels to a class subset, augment with the
policy, and hand images on as uint8 (resized and augmented ones rounded back): a quarter of the
bytes of float32 to copy and to send to the accelerator, where the model's first layer normalises
them. Normalised float32 is there for users who want it.
"""

from __future__ import annotations

import functools

import tensorflow as tf

from pipeline.augment import Policy
from pipeline.data_folder import Split
from pipeline.input_spec import InputSpec


def normalise(images, mean, std):
    """0..255 float -> zero mean, unit variance per channel (the train split's statistics)."""
    return (images - tf.constant(mean, tf.float32)) / tf.constant(std, tf.float32)


@functools.lru_cache(maxsize=32)
def _compiled(steps: tuple, num_classes: int, mean_std: tuple | None, jit: bool):
    """Labels to one-hot, augment, back to uint8 (or normalised float): compiled functions.

    With a warp in the policy, two XLA functions, the warp and then the rest
    (`Policy.geometric_stage`, `Policy.pixel_stage`): compiled as one, XLA's CPU compiler fused
    the warp into the loops after it and recomputed it there (see `Policy.geometric_stage`).
    Cached, so that datasets built again (each stage, each evaluation, each test) reuse the XLA
    compilation instead of paying seconds for it every time.
    """
    policy = Policy(steps) if steps else None

    def rest(images, labels, seed, source_mean):
        onehot = tf.one_hot(labels, num_classes, dtype=tf.float32)
        if policy is not None:
            images, onehot = policy.pixel_stage(images, onehot, seed, source_mean)
            if mean_std is None:
                images = tf.cast(tf.round(images), tf.uint8)
        if mean_std is not None:
            images = normalise(tf.cast(images, tf.float32), *mean_std)
        return images, onehot

    if policy is not None and policy.kinds["geometric"]:
        warp_stage = tf.function(policy.geometric_stage, jit_compile=jit, autograph=False)
        rest_stage = tf.function(rest, jit_compile=jit, autograph=False)

        def finish(images, labels, bbox, seed):
            warped, source_mean = warp_stage(images, seed, bbox)
            return rest_stage(warped, labels, seed, source_mean)

        return finish

    def finish_in_one(images, labels, bbox, seed):
        source_mean = None
        if policy is not None:
            images, source_mean = policy.geometric_stage(images, seed, bbox)  # no warp: cast, mean colour
        return rest(images, labels, seed, source_mean)

    if policy is not None or mean_std is not None:
        return tf.function(finish_in_one, jit_compile=jit, autograph=False)
    return finish_in_one


def resized(images, size: int):
    """uint8 [B, h, w, 3] -> uint8 [B, size, size, 3]: bilinear with antialiasing (a downscale
    averages every source pixel instead of sampling a few), rounded and clipped back to 0..255."""
    scaled = tf.image.resize(images, [size, size], method="bilinear", antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(scaled), 0.0, 255.0), tf.uint8)


def batch_finisher(split: Split, spec: InputSpec, batch_size: int = 0):
    """`(seed, decoded batch) -> outputs` for `spec`: (images, labels),
    plus the filenames with `with_filenames`, the boxes with `with_boxes` (training), or sample
    weights for padded evaluation batches.
    With `spec.resize_to` (other than the records' resolution) the decoded images are resized
    first, in the graph, so that augmentation and the model see the new size."""
    steps = spec.training.policy if spec.is_training else ()
    mean_std = (split.mean, split.std) if spec.normalised else None
    finish = _compiled(steps, len(split.keep), mean_std, spec.jit)
    label_map = None if split.label_map is None else tf.constant(split.label_map, tf.int64)
    pad_to = 1 if spec.is_training else spec.evaluation.pad_to
    fill_to = batch_size if spec.evaluation.same_batches and not spec.is_training else 0
    resize_to = spec.resize_to if spec.resize_to and spec.resize_to != split.resolution else None

    def batch_fn(seed, parsed):
        labels = parsed["label"] if label_map is None else tf.gather(label_map, parsed["label"])
        images = parsed["image"] if resize_to is None else resized(parsed["image"], resize_to)
        images, onehot = finish(images, labels, parsed["bbox"], seed)
        if pad_to > 1 or fill_to:
            return _padded(images, onehot, 1 if fill_to else pad_to, fill_to)
        if spec.with_filenames:
            return images, onehot, parsed["filename"]
        return (images, onehot, parsed["bbox"]) if spec.is_training and spec.training.with_boxes else (images, onehot)

    return tf.autograph.experimental.do_not_convert(batch_fn)  # TensorFlow ops alone (see pipeline/dataset.py)


def _padded(images, labels, multiple: int, at_least: int = 0):
    """Pad a (short, last) batch with zero images to a multiple of `multiple` (and to `at_least`
    rows); weight 0 marks them, so that metrics still count every real example exactly once (JAX's
    DataParallel splits every batch evenly over its devices)."""
    count = tf.shape(images)[0]
    extra = tf.maximum((multiple - count % multiple) % multiple, at_least - count)
    images = tf.pad(images, [[0, extra], [0, 0], [0, 0], [0, 0]])
    labels = tf.pad(labels, [[0, extra], [0, 0]])
    weights = tf.concat([tf.ones([count]), tf.zeros([extra])], axis=0)
    return images, labels, weights
