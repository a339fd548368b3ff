"""Hard examples (`augment.hard_examples`, `augment.hard_fraction`): a share of every training
batch drawn from a list of training images, the batch size and the epoch length unchanged.

The list becomes the hard examples' indices in this input pipeline's records (the same indices
`pipeline.read.whole` gives them), so that an epoch's batches are index arithmetic
(`epoch_order.batch_indices`) and the records are still read once."""

from __future__ import annotations

import numpy as np
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


def per_batch(fraction: float, batch_size: int) -> int:
    """Slots of every batch given to hard examples: round(fraction * batch), at least one."""
    return max(1, round(fraction * batch_size))


def hard_indices(in_order: tf.data.Dataset, path: str | None, fraction: float) -> tf.Tensor | None:
    """int64 indices, in the reading order of `in_order`, of the records whose filename `path`
    lists (None if unused). One pass over the records now, at build time: a list that names no
    training image of these records is refused at once instead of leaving training waiting."""
    if not path or fraction <= 0:
        return None
    if not 0 < fraction < 1:
        raise UserError(f"hard_fraction={fraction}: must be between 0 and 1")
    names = listed_names(path)
    name_only = {"filename": records.FEATURES["filename"]}
    filenames = in_order.batch(4096).map(lambda batch: tf.io.parse_example(batch, name_only)["filename"])
    every = np.concatenate([chunk.numpy() for chunk in filenames] or [np.zeros([0], object)])
    found = np.flatnonzero(np.isin(every, np.array([n.encode() for n in names], object)))
    if found.size == 0:
        raise UserError(f"{path}: none of its {len(names)} filenames is a training image of these records "
                        "(another dataset, resolution or class subset?)")
    return tf.constant(found, tf.int64)
