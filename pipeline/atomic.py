"""Write a file so that a reader never sees half of it: a temporary name beside it, then a rename.

Through tf.io.gfile, so a local disk, a mounted Drive and a `gs://` bucket work the same. A kill
between the two steps leaves the old file whole (and a `.tmp` that the next write replaces).
"""

from __future__ import annotations


def write_bytes(path: str, data: bytes) -> None:
    import tensorflow as tf  # deferred: the converter's worker processes never need TensorFlow

    temporary = path + ".tmp"
    with tf.io.gfile.GFile(temporary, "wb") as handle:
        handle.write(data)
    tf.io.gfile.rename(temporary, path, overwrite=True)


def write_text(path: str, text: str) -> None:
    write_bytes(path, text.encode())
