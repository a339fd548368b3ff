"""Every epoch a fresh uniform random order, each record read once, at a scale above every buffer.

20,480 examples in 16 shards: a shuffle buffer of 16,384 after an interleave of the shards gave
consecutive epochs a position correlation far from 0. The expectations are what two independent
uniform random permutations give: Spearman's rho ~ N(0, 1/(n-1)), batch-mate overlap
(B-1)/(n-1).
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from pipeline import epoch_order
from pipeline.input_spec import Training
from tests.conftest import build_split

EXAMPLES, BATCH = 20_480, 256


def epochs_of(data, epochs=2, first_epoch=0, **kwargs):
    ds, info = build_split(data, "train", 8, BATCH, epochs=epochs, first_epoch=first_epoch, with_filenames=True,
                             **kwargs)
    names = np.concatenate([batch[2].numpy() for batch in ds]).astype(int)
    per_epoch = info.steps_per_epoch * BATCH
    return [names[i * per_epoch:(i + 1) * per_epoch] for i in range(epochs)]


def assert_random_like(first, second, batch=BATCH):
    stats = epoch_order.order_statistics(first, second, batch)
    n = stats["examples"]
    assert abs(stats["position_spearman"]) < 4 / np.sqrt(n - 1), stats  # 4 standard deviations
    expected = (batch - 1) / (n - 1)
    assert abs(stats["batchmate_overlap"] - expected) < 0.15 * expected, stats


@pytest.mark.slow
@pytest.mark.parametrize("cache", [False, True], ids=["from-disk", "cached"])
def test_each_epoch_is_a_fresh_random_order_with_every_example_once(large_split, cache):
    first, second = epochs_of(large_split, cache=cache)
    for epoch in (first, second):
        np.testing.assert_array_equal(np.sort(epoch), np.arange(EXAMPLES))  # every example exactly once
    assert_random_like(first, second)
    # Nor does an epoch keep the reading order (shard by shard, interleaved).
    assert abs(np.corrcoef(first, np.arange(EXAMPLES))[0, 1]) < 4 / np.sqrt(EXAMPLES - 1)


@pytest.mark.slow
def test_order_is_a_function_of_seed_and_epoch_whatever_the_cache_or_resume(large_split):
    run = epochs_of(large_split, epochs=3, seed=4)
    resumed = epochs_of(large_split, epochs=1, first_epoch=2, seed=4, cache=True)
    np.testing.assert_array_equal(run[2], resumed[0])
    other_seed = epochs_of(large_split, epochs=1, seed=5)
    assert_random_like(run[0], other_seed[0])


@pytest.mark.slow
def test_with_hard_examples_the_rest_is_fresh_and_a_random_share_is_left_out(large_split, tmp_path):
    hard_names = [str(i) for i in range(0, EXAMPLES, 10)]  # 2,048 hard examples
    hard_file = tmp_path / "hard.txt"
    hard_file.write_text("\n".join(hard_names) + "\n")
    first, second = epochs_of(large_split, hard_examples=str(hard_file), hard_fraction=0.25)
    hard = set(map(int, hard_names))
    per_batch = round(0.25 * BATCH)
    for epoch in (first, second):
        batches = epoch.reshape(-1, BATCH)
        assert all(sum(int(n) in hard for n in b) >= per_batch for b in batches)
    normal = [np.array([n for n in epoch if n not in hard]) for epoch in (first, second)]
    # The hard slots take a quarter of every batch: a quarter of the normal examples is left out each
    # epoch. Which ones must be a fresh random draw (not the same shard tails every epoch).
    everyone = set(range(EXAMPLES)) - hard
    left_out = [everyone - set(e.tolist()) for e in normal]
    share = len(left_out[0]) / len(everyone)
    expected_both = share * len(left_out[1])
    assert abs(len(left_out[0] & left_out[1]) - expected_both) < 5 * np.sqrt(expected_both), (
        len(left_out[0] & left_out[1]), expected_both)
    common = np.intersect1d(normal[0], normal[1])
    place = [dict(zip(e.tolist(), range(len(e)))) for e in normal]
    rho = np.corrcoef([place[0][n] for n in common], [place[1][n] for n in common])[0, 1]
    assert abs(rho) < 4 / np.sqrt(len(common) - 1)


def test_order_statistics_on_orders_worked_out_by_hand():
    same = np.arange(8)
    stats = epoch_order.order_statistics(same, same, 4)
    assert stats["position_spearman"] == pytest.approx(1.0) and stats["batchmate_overlap"] == pytest.approx(1.0)
    reversed_ = same[::-1]
    assert epoch_order.order_statistics(same, reversed_, 4)["position_spearman"] == pytest.approx(-1.0)
    # batches {0,1,2,3},{4,5,6,7} then {0,4,1,5},{2,6,3,7}: of the 12 pairs, (0,1) and (2,3), (4,5), (6,7) stay
    stats = epoch_order.order_statistics(same, np.array([0, 4, 1, 5, 2, 6, 3, 7]), 4)
    assert stats["batchmate_overlap"] == pytest.approx(4 / 12)
    assert stats["random_batchmate_overlap"] == pytest.approx(3 / 7)


def counting_reads(monkeypatch):
    """Make pipeline.read.in_order count every record it yields (a variable the test reads)."""
    from pipeline import read

    counter = tf.Variable(0, dtype=tf.int64)
    original = read.in_order

    def in_order(*args, **kwargs):
        return original(*args, **kwargs).map(lambda record: (counter.assign_add(1), record)[1])

    monkeypatch.setattr(read, "in_order", in_order)
    return counter


@pytest.mark.parametrize("cache, reads_per_epoch", [(False, 1), (True, 0)], ids=["from-disk", "cached"])
def test_each_record_is_read_once_per_epoch_and_once_per_run_when_cached(large_split, monkeypatch, cache,
                                                                          reads_per_epoch):
    """Records counted as the read stage yields them: 20,480 per epoch from disk whatever the epoch
    count, and 20,480 in all from the cache (the first epoch fills it)."""
    counter = counting_reads(monkeypatch)
    for epochs in (1, 3):
        counter.assign(0)
        epochs_of(large_split, epochs=epochs, cache=cache)
        assert int(counter.numpy()) == EXAMPLES * (1 + reads_per_epoch * (epochs - 1)), (epochs, cache)


def test_permutations_are_uniform_over_all_orders():
    """Every one of the 24 orders of 4 records equally likely: 4,800 keys, chi-square with 23
    degrees of freedom below its 0.999 quantile (49.73)."""
    import itertools

    orders = {order: 0 for order in itertools.permutations(range(4))}
    draw = tf.function(lambda seed: epoch_order.permutation(epoch_order.key(seed, epoch_order.ORDER, 0), 4))
    for seed in range(4_800):
        orders[tuple(draw(tf.constant(seed, tf.int64)).numpy().tolist())] += 1
    expected = 4_800 / 24
    chi_square = sum((seen - expected) ** 2 / expected for seen in orders.values())
    assert chi_square < 49.73, orders


def test_batch_indices_put_hard_examples_first_and_wrap_into_a_fresh_order():
    key = epoch_order.key(1, epoch_order.ORDER, 0)
    hard = tf.constant([3, 7], tf.int64)
    # 10 records, 4 batches of 4 with one hard slot: 12 normal slots wrap once past the 10 records
    batches = epoch_order.batch_indices(10, 4, 4, key, hard, 1, epoch_order.key(1, epoch_order.HARD, 0)).numpy()
    assert batches.shape == (4, 4)
    assert sorted(batches[:2, 0].tolist()) == [3, 7] and sorted(batches[2:, 0].tolist()) == [3, 7]  # each once a round
    assert sorted(batches[:, 1:].reshape(-1)[:10].tolist()) == list(range(10))  # the first round: every record once
    # two whole rounds: each a permutation of the 10 records, the second not a replay of the first
    rounds = epoch_order.batch_indices(10, 5, 4, key).numpy().reshape(2, 10)
    assert all(sorted(r.tolist()) == list(range(10)) for r in rounds) and rounds[0].tolist() != rounds[1].tolist()
    plain = epoch_order.batch_indices(10, 4, 2, key).numpy()
    assert plain.shape == (2, 4) and len(set(plain.reshape(-1).tolist())) == 8  # the remainder left out
    # every slot a hard one: the hard stream alone
    only_hard = epoch_order.batch_indices(10, 2, 3, key, hard, 2, epoch_order.key(1, epoch_order.HARD, 0)).numpy()
    assert only_hard.shape == (3, 2) and set(only_hard.reshape(-1).tolist()) == {3, 7}


def test_keys_differ_by_purpose_epoch_and_pipeline():
    keys = {tuple(epoch_order.key(3, purpose, epoch, pipe).numpy()) for purpose in (1, 2) for epoch in (0, 1)
            for pipe in (0, 1)}
    assert len(keys) == 8
    assert tf.reduce_all(epoch_order.key(3, 1, 5, 0) == epoch_order.key(3, 1, 5, 0))


def test_hard_examples_that_match_no_record_are_refused_not_waited_for(large_split, tmp_path):
    from common.errors import UserError

    hard_file = tmp_path / "hard.txt"
    hard_file.write_text("n99999999_1.JPEG\nn99999999_2.JPEG\n")
    with pytest.raises(UserError, match=r"hard.txt: none of its 2 filenames is a training image"):
        build_split(large_split, "train", 8, BATCH, epochs=1, hard_examples=str(hard_file), hard_fraction=0.1)


MEMORY = """
import resource, sys
from pipeline import dataset, epoch_order
from pipeline.data_folder import DataFolder
from pipeline.input_spec import Training
ds, _ = dataset.build(DataFolder.open(sys.argv[1], 32).split("train"),
                      dataset.InputSpec(256, training=Training(epochs=int(sys.argv[2]))))
iterator = iter(ds)
for _ in range(40):
    next(iterator)
import time; time.sleep(3)  # let every background prefetch fill what it will
for _ in range(40):
    next(iterator)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


@pytest.mark.slow
def test_memory_stays_bounded_however_many_epochs_are_asked_for(tmp_path):
    """20,480 records of 3 KB (63 MB the split, held in RAM for the epoch): reading 80 batches of a
    30-epoch run costs what a 2-epoch run costs. tf.data's parallel interleave once opened and
    buffered several epochs ahead."""
    import os
    import subprocess
    import sys

    from tests.conftest import write_split

    data = write_split(str(tmp_path), examples=20_480, shards=16, classes=10, resolution=32)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": root, "TF_CPP_MIN_LOG_LEVEL": "2"}
    peak = {}
    for epochs in (2, 30):
        result = subprocess.run([sys.executable, "-c", MEMORY, data, str(epochs)], env=env, capture_output=True,
                                text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        peak[epochs] = int(result.stdout.strip().splitlines()[-1])
    assert peak[30] - peak[2] < 30, peak  # MB: less than half the split more


def test_jax_processes_read_disjoint_shares_that_cover_each_epoch(large_split):
    """Two JAX processes (Runtime.distribute, as the trainer feeds them) at a global batch of 256:
    16 shards of 1,280 split 8 and 8, so each process yields 20,480 / 256 = 80 steps of 128
    examples an epoch, none shared with the other, together every example exactly once."""
    from pipeline import dataset
    from pipeline.data_folder import DataFolder
    from training.runtime import Runtime

    train = DataFolder.open(large_split, 8).split("train")
    steps = dataset.training_steps(train, BATCH)
    spec = dataset.InputSpec(BATCH, with_filenames=True, training=Training(epochs=2, steps_per_epoch=steps))
    shares = []
    for index in (0, 1):
        runtime = Runtime("jax", "cpu", 4, ["cpu:0", "cpu:1", "cpu:2", "cpu:3"], "", worker_index=index, processes=2)
        ds = runtime.distribute(lambda context: dataset.build(train, spec, context)[0])
        batches = [batch[2].numpy() for batch in ds]
        assert [len(b) for b in batches] == [BATCH // 2] * (2 * 80)
        names = np.concatenate(batches).astype(int)
        shares.append((names[:80 * 128], names[80 * 128:]))
    for epoch in (0, 1):
        zero, one = shares[0][epoch], shares[1][epoch]
        assert len(set(zero)) == len(zero) == 10_240 and len(set(one)) == len(one) == 10_240
        assert not set(zero) & set(one)
        assert sorted(np.concatenate([zero, one])) == list(range(EXAMPLES))
    assert not np.array_equal(shares[0][0], shares[0][1])  # a fresh order in the second epoch


def test_records_that_disagree_with_the_manifest_count_are_named(tmp_path):
    """A manifest that says 20 more examples than the shards hold (a folder copied from an older
    conversion): one line naming the folder and the count, not a hang or a short epoch."""
    import json
    import os

    from common.errors import UserError
    from pipeline.data_folder import DataFolder
    from tests.conftest import write_split

    data = write_split(str(tmp_path / "My Drive"), examples=600, shards=2, classes=3)  # a space, as on Drive
    path = os.path.join(data, "8px", "manifest.json")
    manifest = json.load(open(path))
    manifest["splits"]["train"]["num_examples"] = 620  # and its shard's entry with it: the
    manifest["splits"]["train"]["shards"][0]["num_examples"] += 20  # manifest agrees with itself, not with the files
    json.dump(manifest, open(path, "w"))
    expected = r"^\S+/My Drive/8px: the records hold another number of examples than the manifest says \(620\)"
    with pytest.raises(UserError, match=expected):
        with DataFolder.open(data, 8).naming_corrupt_shards() as folder:
            from pipeline import dataset

            ds, _ = dataset.build(folder.split("train"), dataset.InputSpec(64, training=Training(epochs=1)))
            next(iter(ds))


def test_a_class_subset_over_more_pipelines_than_shards_is_refused(tmp_path):
    """Every n-th record of a class-filtered stream: how many each pipeline gets is not in the
    manifest, and the read-once order needs it exactly; refused in one line, not miscounted."""
    from common.errors import UserError
    from tests.conftest import write_split

    data = write_split(str(tmp_path), examples=600, shards=2, classes=3)
    context = tf.distribute.InputContext(num_input_pipelines=3, input_pipeline_id=0, num_replicas_in_sync=3)
    with pytest.raises(UserError, match="classes subsets with several input pipelines"):
        build_split(data, "train", 8, 48, context, epochs=1, classes=2)
