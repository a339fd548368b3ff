"""Hard examples (`augment.hard_examples`, `augment.hard_fraction`): a share of every training
batch drawn from a list of training images, the batch size and the epoch length unchanged."""

from __future__ import annotations

import tensorflow as tf

from common import files
from common.errors import UserError
from pipeline import records


def listed_names(path: str) -> list[str]:
    """The filenames of a hard-examples file (one a line, tab-separated loss allowed, # comments)."""
    text = files.read_text(path)
    if text is None:
        raise UserError(f"{path}: hard examples file not found")
    names = [line.split("\t")[0].strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    if not names:
        raise UserError(f"{path}: no filenames listed")
    return names


def hard_records(in_order: tf.data.Dataset, path: str | None, fraction: float) -> tf.data.Dataset | None:
    """The serialised training records whose filename is listed in `path` (None if unused)."""
    if not path or fraction <= 0:
        return None
    if not 0 < fraction < 1:
        raise UserError(f"hard_fraction={fraction}: must be between 0 and 1")
    names = listed_names(path)
    wanted = tf.constant(names)
    name_only = {"filename": records.FEATURES["filename"]}
    hard = in_order.filter(lambda r: tf.reduce_any(
        tf.equal(tf.io.parse_single_example(r, name_only)["filename"], wanted))).cache()
    # One pass now: a list that names no training image of these records would otherwise leave
    # the hard-example stream empty and training waiting for it forever.
    if int(hard.reduce(tf.constant(0, tf.int64), lambda count, _: count + 1)) == 0:
        raise UserError(f"{path}: none of its {len(names)} filenames is a training image of these records "
                        "(another dataset, resolution or class subset?)")
    return hard


def mix_in_hard(ordered: tf.data.Dataset, hard_stream: tf.data.Dataset, fraction: float,
                batch_size: int) -> tf.data.Dataset:
    """Replace `round(fraction * batch)` records of every batch with hard examples.

    Slots come in a fixed pattern per batch (choose_from_datasets), so every batch has the same
    share; the normal stream simply supplies fewer records per batch, and the epoch keeps its
    number of batches (`take` in the caller). The normal records left over at the end of the
    epoch are a fresh random set every epoch, since the order is.
    """
    per_batch = max(1, round(fraction * batch_size))
    pattern = [1] * per_batch + [0] * (batch_size - per_batch)
    choice = tf.data.Dataset.from_tensor_slices(tf.constant(pattern, tf.int64)).repeat()
    return tf.data.Dataset.choose_from_datasets([ordered, hard_stream], choice)
