"""Order one training epoch: a fresh uniform random permutation for every (seed, epoch), in bounded memory.

A shuffle buffer of K records after an interleave of shards only moves a record by about K places:
record k of a shard lands near place 16k every epoch, so consecutive epochs are strongly alike
(measured on 64 px train: Spearman 0.79 between the places of epoch 1 and epoch 2). Here every
record draws a 64-bit sort key from a stateless generator keyed by (seed, epoch, input pipeline)
and its index in the fixed reading order, so the order is the same whether the records come from
disk or from the RAM cache, and is a pure function of the key: a resumed run sees exactly the
epochs it would have seen.

Bounded memory: each record also draws one of P = ceil(N / W) windows. Pass p reads the records
in their fixed order, keeps the ~W of window p (vectorised, without parsing them) and emits them
sorted by their keys. Memory: at most three windows (one being emitted, one ready, one being
built); reading: ceil(N / W) passes over the records per epoch, from the page cache or the RAM
cache after the first. `WINDOW_BYTES` = 128 MiB: at 64 px (12.3 KB a record) W = 10,900 records
and the 101,000 training images take 10 passes.
"""

from __future__ import annotations

import tensorflow as tf

WINDOW_BYTES = 128 << 20
_CHUNK = 1024  # records whose draws are made together (one vectorised draw)
ALL = 1 << 40  # a batch size larger than any split: "every record in one batch"
ENDLESS = 1 << 62  # a count of rounds never reached: "forever", as a finite tf.data range

# Independent random streams derived from one seed, by purpose.
ORDER, AUGMENT, HARD, AUGMENT_ON_DEVICE = 1, 2, 3, 4


def key(seed, purpose: int, *parts) -> tf.Tensor:
    """A stateless seed [2] (int64) for `purpose`, folding in each of `parts` (epoch, pipeline, ...)."""
    folded = tf.stack([tf.cast(seed, tf.int64), tf.constant(purpose, tf.int64)])
    for part in parts:
        folded = tf.random.experimental.stateless_fold_in(folded, tf.cast(part, tf.int64), alg="philox")
    return tf.cast(folded, tf.int64)


def window_size(count: int, record_bytes: float, budget: int | None = None) -> int:
    """Records per window: as many as `budget` bytes (default WINDOW_BYTES) hold, at least one,
    at most all of them."""
    budget = WINDOW_BYTES if budget is None else budget
    return int(max(1, min(count, budget // max(1, int(record_bytes)))))


def permuted(records: tf.data.Dataset, count: int, order_key: tf.Tensor, window: int) -> tf.data.Dataset:
    """`records` (about `count` of them, re-iterable in the same order) in the uniform random order
    that `order_key` picks. Every record exactly once.

    Each record draws, from `order_key` and its index in the reading order, a window (uniform in
    0..passes-1) and a 64-bit sort key; pass p emits window p's records sorted by key. A uniform
    assignment to windows followed by a uniform order inside each is a uniform permutation.
    (`tf.random.experimental.index_shuffle` was tried first: its permutations for different keys
    are strongly alike, correlation 0.76 for keys [0, 1] and [0, 2] at 50,000 records.)
    """
    passes = max(1, -(-count // window))
    indexed = records.batch(_CHUNK).enumerate()

    def draws(chunk, size):
        """Window and sort key of every record of chunk number `chunk` (drawn for a full chunk,
        then cut, so a record's draws never depend on how many records follow it)."""
        seeds = tf.random.experimental.stateless_split(
            tf.random.experimental.stateless_fold_in(order_key, chunk, alg="philox"), 2, alg="philox")
        windows = tf.random.stateless_uniform([_CHUNK], seeds[0], 0, passes, dtype=tf.int64, alg="philox")
        sort_keys = tf.random.stateless_uniform([_CHUNK], seeds[1], None, None, dtype=tf.int64, alg="philox")
        return windows[:size], sort_keys[:size]

    def one_window(p):
        """Window p as one element: its records, sorted by their keys."""
        def keep(chunk, record):
            windows, sort_keys = draws(chunk, tf.shape(record)[0])
            inside = tf.equal(windows, p)
            return tf.boolean_mask(sort_keys, inside), tf.boolean_mask(record, inside)

        chosen = indexed.map(keep).unbatch().batch(ALL)
        return chosen.map(lambda sort_keys, record: tf.gather(record, tf.argsort(sort_keys)))

    # Windows in turn, the next one built in the background while this one is emitted: at most the
    # current window, one ready and one being built are alive. (A parallel interleave over the
    # passes was tried first: it opens every pass at once and holds whole epochs.)
    return tf.data.Dataset.range(passes).flat_map(one_window).prefetch(1).unbatch()


def reshuffled_forever(records: tf.data.Dataset, stream_key: tf.Tensor) -> tf.data.Dataset:
    """A small, non-empty set of records (the hard examples, cached) repeated forever, each round
    in a fresh order drawn from `stream_key` and the round's number."""
    everything = records.batch(ALL)

    def round_(number):
        round_key = tf.random.experimental.stateless_fold_in(stream_key, number, alg="philox")
        return everything.map(
            lambda batch: tf.random.experimental.stateless_shuffle(batch, round_key, alg="philox")).unbatch()

    return tf.data.Dataset.range(ENDLESS).flat_map(round_)


def permuted_forever(records: tf.data.Dataset, count: int, stream_key: tf.Tensor, window: int) -> tf.data.Dataset:
    """`permuted` again and again, each round a fresh permutation (a worker whose share is shorter
    than the epoch wraps around into a new order, not a replay of the same one)."""
    return tf.data.Dataset.range(ENDLESS).flat_map(lambda number: permuted(
        records, count, tf.random.experimental.stateless_fold_in(stream_key, number, alg="philox"), window))


def order_statistics(first, second, batch_size: int) -> dict:
    """How alike two epochs' orders are (sequences of example ids), beside what independent uniform
    random orders give: Spearman's rho of each example's place (random: mean 0, sd 1/sqrt(n-1)),
    and the share of pairs sharing a batch in the first epoch that share one again in the second
    (random: (batch_size - 1) / (n - 1))."""
    import numpy as np

    first, second = np.asarray(first), np.asarray(second)
    common = np.intersect1d(first, second)
    place_a = dict(zip(first.tolist(), range(len(first))))
    place_b = dict(zip(second.tolist(), range(len(second))))
    a = np.array([place_a[n] for n in common.tolist()], np.float64)
    b = np.array([place_b[n] for n in common.tolist()], np.float64)
    rho = float(np.corrcoef(a, b)[0, 1])  # places are ranks already (no ties): Pearson's r is Spearman's rho
    batch_a, batch_b = (a // batch_size).astype(np.int64), (b // batch_size).astype(np.int64)

    def pairs(groups):
        counts = np.unique(groups, return_counts=True)[1].astype(np.float64)
        return float((counts * (counts - 1) / 2).sum())

    n = len(common)
    return {"examples": n, "position_spearman": rho, "random_spearman_sd": float(1 / np.sqrt(n - 1)),
            "batchmate_overlap": pairs(batch_a * (batch_b.max() + 1) + batch_b) / pairs(batch_a),
            "random_batchmate_overlap": (batch_size - 1) / (n - 1)}
