"""The one place that knows the TFRecord Example schema: writing it and parsing it (batched).

    image     bytes   raw uint8 HxWx3 (encoding "raw") or a JPEG (encoding "jpeg")
    label     int64   index into the manifest's sorted class list; -1 for the unlabeled test split
    filename  bytes   the source file name, for error analysis and leak checks
    bbox      float   4 values in [0, 1]: xmin, ymin, xmax, ymax of the object

Shard names: `train-00003-of-00016.tfrecord`. TFDS's default is `<name>-train.tfrecord-00003-of-00016`;
pipeline/tfds_metadata.py names our template to TFDS, so that it opens the shards as they are.
"""

from __future__ import annotations

import tensorflow as tf

FEATURES = {
    "image": tf.io.FixedLenFeature([], tf.string),
    "label": tf.io.FixedLenFeature([], tf.int64),
    "filename": tf.io.FixedLenFeature([], tf.string),
    "bbox": tf.io.FixedLenFeature([4], tf.float32),
}
ENCODINGS = ("raw", "jpeg")


def shard_name(split: str, index: int, count: int) -> str:
    return f"{split}-{index:05d}-of-{count:05d}.tfrecord"


def serialize(image: bytes, label: int, filename: str, bbox: tuple[float, float, float, float]) -> bytes:
    """One Example, serialised deterministically: protobuf's map serialisation order is otherwise
    not fixed, and the same image gave different shard bytes (and sha256) from one process to the
    next."""
    feature = {
        "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image])),
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
        "filename": tf.train.Feature(bytes_list=tf.train.BytesList(value=[filename.encode()])),
        "bbox": tf.train.Feature(float_list=tf.train.FloatList(value=list(bbox))),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString(deterministic=True)


def parse_batch(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
    """Parse a batch of serialised Examples in one kernel call (much cheaper than per example)."""
    return tf.io.parse_example(serialized, FEATURES)


def decode_images(encoded: tf.Tensor, encoding: str, resolution: int) -> tf.Tensor:
    """Bytes of a batch of images -> uint8 [batch, res, res, 3]."""
    if encoding == "raw":
        flat = tf.io.decode_raw(encoded, tf.uint8)
        return tf.reshape(flat, [-1, resolution, resolution, 3])
    if encoding == "jpeg":
        def one(data):
            image = tf.io.decode_jpeg(data, channels=3)
            return tf.ensure_shape(image, [resolution, resolution, 3])
        return tf.map_fn(one, encoded, fn_output_signature=tf.TensorSpec([resolution, resolution, 3], tf.uint8))
    raise ValueError(f"unknown encoding {encoding!r}; expected one of {ENCODINGS}")
