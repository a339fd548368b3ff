"""The read stage: a split's serialised records in their one fixed order, and batches of them
parsed and decoded. Training, evaluation, the benchmark, the statistics, the preview and verify
all read through here.

The fixed order matters: each epoch's permutation (pipeline/epoch_order.py) is drawn over it, so
it must be the same at every iteration: shards interleaved deterministically, record by record.
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from pipeline import records
from pipeline.data_folder import Split

AUTOTUNE = tf.data.AUTOTUNE
MAX_OPEN_SHARDS = 16  # shards read at once: enough to keep a bucket or Drive busy


@dataclasses.dataclass(frozen=True)
class Share:
    """Which part of a split one input pipeline reads (several workers, one pipeline each)."""

    pipelines: int = 1
    index: int = 0

    def by_shard(self, shard_count: int) -> bool:
        """Whole shards per pipeline when there are enough of them, else every n-th record."""
        return self.pipelines > 1 and shard_count >= self.pipelines


def in_order(split: Split, share: Share = Share()) -> tf.data.Dataset:
    """Serialised records of this pipeline's share of a split, always in the same order; records
    of classes the split's subset leaves out are dropped."""
    paths = list(split.paths)
    by_shard = share.by_shard(len(paths))
    if by_shard:
        paths = paths[share.index::share.pipelines]
    stream = tf.data.Dataset.from_tensor_slices(paths).interleave(
        tf.data.TFRecordDataset, cycle_length=min(len(paths), MAX_OPEN_SHARDS), num_parallel_calls=AUTOTUNE,
        deterministic=True)
    if share.pipelines > 1 and not by_shard:
        stream = stream.shard(share.pipelines, share.index)
    if split.label_map is not None:
        keep = tf.constant(split.keep, tf.int64)
        label_only = {"label": records.FEATURES["label"]}
        stream = stream.filter(lambda r: tf.reduce_any(
            tf.equal(tf.io.parse_single_example(r, label_only)["label"], keep)))
    return stream


def share_count(split: Split, share: Share) -> int:
    """Examples in this pipeline's share (from the manifest's counts the split holds)."""
    if share.pipelines == 1:
        return split.count
    if share.by_shard(len(split.paths)):
        return sum(split.shard_counts[share.index::share.pipelines])
    return len(range(share.index, split.count, share.pipelines))


@tf.autograph.experimental.do_not_convert
def decode(serialized: tf.Tensor, encoding: str, resolution: int) -> dict[str, tf.Tensor]:
    """A batch of serialised records -> {image: uint8 [B, res, res, 3], label, bbox, filename}."""
    parsed = records.parse_batch(serialized)
    parsed["image"] = records.decode_images(parsed["image"], encoding, resolution)
    return parsed


CHUNK = 1024  # records parsed together while a whole share is read


def whole(split: Split, records: tf.data.Dataset, count: int) -> tf.data.Dataset:
    """`records` (this pipeline's, in their fixed reading order; `count` of them, from the
    manifest) parsed and decoded as ONE element: {image: uint8 [n, res, res, 3], label, bbox,
    filename}, n >= count, the first `count` rows the records in order (zero rows may follow).

    Decoded in chunks of CHUNK and joined as dense arrays: joining 100,000 serialised strings
    costs a memory allocation each (a second per epoch at 64 px, more than a plain pipeline's
    whole epoch), and the records would be parsed again every epoch anyway. A folder whose files
    hold another number of records than its manifest says fails here, naming the count."""
    @tf.autograph.experimental.do_not_convert  # TensorFlow ops alone (see pipeline/dataset.py)
    def chunk(serialized):
        size = tf.shape(serialized, out_type=tf.int64)[0]
        parsed = decode(serialized, split.encoding, split.resolution)
        full = tf.cond(size < CHUNK, lambda: {  # only the last chunk is short: no copy of the others
            name: tf.pad(value, [[0, CHUNK - size]] + [[0, 0]] * (value.shape.rank - 1))
            for name, value in parsed.items()}, lambda: parsed)
        return {name: tf.ensure_shape(value, [CHUNK] + parsed[name].shape[1:]) for name, value in full.items()}, size

    @tf.autograph.experimental.do_not_convert
    def joined(chunks, sizes):
        check = tf.debugging.assert_equal(tf.reduce_sum(sizes), tf.constant(count, tf.int64), message=(
            f"{split.folder}: the records hold another number of examples than the manifest says ({count})"))
        with tf.control_dependencies([check]):
            return {name: tf.reshape(value, tf.concat([[-1], tf.shape(value)[2:]], 0))
                    for name, value in chunks.items()}

    return (records.batch(CHUNK).map(chunk, num_parallel_calls=AUTOTUNE, deterministic=True)
            .batch(-(-count // CHUNK) + 1).map(joined).take(1))


def batches(split: Split, batch_size: int) -> tf.data.Dataset:
    """Decoded batches of a whole split in file order (the last one short): for the statistics,
    the preview and the tests."""
    return (in_order(split).batch(batch_size)
            .map(lambda serialized: decode(serialized, split.encoding, split.resolution), num_parallel_calls=AUTOTUNE)
            .prefetch(AUTOTUNE))
