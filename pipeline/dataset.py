"""Build the tf.data input of one split at one resolution from a converted folder.

    files -> (per input pipeline) -> interleave in a fixed order -> [cache] -> this epoch's
    permutation (pipeline/epoch_order.py) -> batch -> parse_example on the batch -> decode ->
    augment (one XLA function per batch) -> uint8 images -> prefetch

Parsing and augmenting whole batches costs one kernel launch per batch instead of one per image.
Training data is built epoch by epoch (`Dataset.range(first_epoch, ...).flat_map(...)`) with every
random choice seeded from (seed, epoch, input pipeline, batch): the data of epoch 37 is the same whether a run
got there in one go or resumed after a disconnect. Each epoch yields exactly
`num_examples // batch_size` batches: augmentation replaces samples and never adds any.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import re

import tensorflow as tf

from common import files
from common.errors import UserError
from pipeline import epoch_order, records
from pipeline import manifest as manifests
from pipeline.augment import Policy

AUTOTUNE = tf.data.AUTOTUNE


@dataclasses.dataclass
class SplitInfo:
    """What a trainer needs to know about the data it gets."""

    num_examples: int  # in this input pipeline (this worker's share)
    batch_size: int  # per input pipeline (per replica under a distribution strategy)
    steps_per_epoch: int  # training steps in an epoch, each taking a batch for every replica
    num_classes: int
    mean: list[float]
    std: list[float]
    manifest: dict
    classes: list[dict]  # the manifest's {wnid, words} of each label, in label order


def class_indices(manifest: dict, classes) -> list[int]:
    """Indices into the manifest's classes that a subset keeps: None keeps all, an int N the
    first N, a list of wnids those (in manifest order). Label i of the subset is class keep[i]."""
    total = len(manifest["classes"])
    if classes is None:
        return list(range(total))
    if isinstance(classes, int):
        if not 1 <= classes <= total:
            raise UserError(f"classes={classes}: the records hold {total} classes")
        return list(range(classes))
    wnids = [c["wnid"] for c in manifest["classes"]]
    missing = [c for c in classes if c not in wnids]
    if missing:
        raise UserError(f"classes: {', '.join(missing)} not in the records' manifest")
    return sorted(wnids.index(c) for c in classes)


def split_count(manifest: dict, split: str, classes=None) -> int:
    """Examples of a split that a class subset keeps, from the manifest's counts (never a scan)."""
    keep = class_indices(manifest, classes)
    if len(keep) == len(manifest["classes"]):
        return manifest["splits"][split]["num_examples"]
    counts = manifest["splits"][split].get("class_counts")
    if counts is None:
        raise UserError(f"{split}: manifest lacks class_counts; convert again to train on a class subset")
    return sum(counts[i] for i in keep)


def normalize(images, mean, std):
    """0..255 float -> zero mean, unit variance per channel (the train split's statistics)."""
    return (images - tf.constant(mean, tf.float32)) / tf.constant(std, tf.float32)


@functools.lru_cache(maxsize=32)
def _finisher(steps: tuple, num_classes: int, output_float: tuple | None, jit: bool):
    """Labels to one-hot, augment, back to uint8 (or normalised float): one compiled function.

    Cached, so that datasets built again (each stage, each evaluation, each test) reuse the XLA
    compilation instead of paying seconds for it every time.
    """
    policy = Policy(list(steps)) if steps else None

    def finish(images, labels, bbox, seed):
        onehot = tf.one_hot(labels, num_classes, dtype=tf.float32)
        if policy is not None:
            images, onehot = policy(images, onehot, seed, bbox)
            if output_float is None:
                images = tf.cast(tf.round(images), tf.uint8)
        if output_float is not None:
            images = normalize(tf.cast(images, tf.float32), *output_float)
        return images, onehot

    if policy is not None or output_float is not None:
        return tf.function(finish, jit_compile=jit)
    return finish


def make_batch_fn(policy: Policy | None, num_classes: int, encoding: str, resolution: int,
                  label_map: tf.Tensor | None = None, output_float: tuple | None = None, jit: bool = True,
                  with_filenames: bool = False):
    """Serialised batch -> (images, one-hot float32 labels), augmented when `policy` is given.

    Images leave as uint8 (augmented ones rounded back): a quarter of the bytes of float32 to
    copy and to send to the accelerator, where the model's first layer normalises them.
    `output_float=(mean, std)` instead returns normalised float32 for users who want it.
    """
    steps = tuple(policy.steps) if policy is not None else ()
    finish = _finisher(steps, num_classes, tuple(map(tuple, output_float)) if output_float is not None else None, jit)

    def batch_fn(seed, serialized):
        parsed = records.parse_batch(serialized)
        images = records.decode_images(parsed["image"], encoding, resolution)
        labels = parsed["label"]
        if label_map is not None:
            labels = tf.gather(label_map, labels)
        images, onehot = finish(images, labels, parsed["bbox"], seed)
        return (images, onehot, parsed["filename"]) if with_filenames else (images, onehot)

    return batch_fn


def build(data_dir: str, split: str, resolution: int, batch_size: int, *, training: bool | None = None,
          policy=None, seed: int = 0, first_epoch: int = 0, epochs: int | None = None, cache: bool = False,
          classes=None, input_context: tf.distribute.InputContext | None = None, normalise: bool = False,
          jit: bool = True, hard_examples: str | None = None, hard_fraction: float = 0.0,
          with_filenames: bool = False, steps_per_epoch: int | None = None,
          pad_to: int = 1) -> tuple[tf.data.Dataset, SplitInfo]:
    """The dataset of one split and what the trainer needs to know about it.

    Images come out uint8 [B, res, res, 3] (the model normalises them: see `normalize`), or
    normalised float32 with `normalise=True`; labels are one-hot (soft after mixup/cutmix) float32.

    training (default: split == "train"): shuffle, augment with `policy` (a Policy, a policy
    spec, or None for no augmentation), drop the remainder, and yield `epochs` epochs starting
    at `first_epoch` (None: forever). Evaluation: one pass in file order, every example, no
    augmentation. `batch_size` is global; with an `input_context` each input pipeline gets its
    own shards (or every n-th record when there are fewer shards than pipelines) and the
    per-replica batch. `classes`: an int N (the first N classes) or a list of wnids.
    `hard_examples`, `hard_fraction`: a file of training filenames (one a line, from
    tools.analyze) and the share of each training batch drawn from them, the batch size and the
    epoch length unchanged. `with_filenames`: yield (images, labels, filenames), for analysis.
    `steps_per_epoch`: make every epoch exactly this many steps (a trainer with several workers
    passes the global count, so that no worker runs out before the others).
    `pad_to`: evaluation batches padded to a multiple of this (JAX's DataParallel splits every
    batch evenly over its devices), yielding (images, labels, sample weights) with weight 0 on
    the padding, so that metrics still count every real example exactly once.
    """
    training = split == "train" if training is None else training
    manifest = manifests.read(data_dir, resolution)
    if manifest["resolution"] != resolution:
        raise UserError(f"{manifests.resolution_dir(data_dir, resolution)}: manifest says "
                        f"{manifest['resolution']} px")
    files = checked_shard_paths(data_dir, resolution, manifest, split)
    keep = class_indices(manifest, classes)
    num_classes = len(keep)
    subset = num_classes != len(manifest["classes"])
    num_examples = split_count(manifest, split, classes)

    pipelines, pipeline_id, replicas_per_pipeline = 1, 0, 1
    if input_context is not None:
        pipelines, pipeline_id = input_context.num_input_pipelines, input_context.input_pipeline_id
        batch_size = input_context.get_per_replica_batch_size(batch_size)
        # One pipeline feeds all replicas of its worker, one batch each per step, round-robin.
        replicas_per_pipeline = max(1, input_context.num_replicas_in_sync // pipelines)
    shard_files = len(files) >= pipelines
    if pipelines > 1:
        if shard_files:
            files = files[pipeline_id::pipelines]
            counts = manifest["splits"][split]["shards"][pipeline_id::pipelines]
            if subset:
                raise UserError("classes subsets with several input pipelines: shard the records per class first")
            num_examples = sum(s["num_examples"] for s in counts)
        else:
            num_examples = len(range(pipeline_id, num_examples, pipelines))
    if batch_size < 1:
        raise UserError(f"batch size {batch_size} is smaller than the number of replicas")
    if training and num_examples < batch_size:
        raise UserError(f"{split} at {resolution}px: {num_examples} examples, fewer than one batch of {batch_size}")
    if training:
        steps = steps_per_epoch or num_examples // (batch_size * replicas_per_pipeline)
        batches_per_epoch = steps * replicas_per_pipeline  # whole steps: epochs never straddle a step
    else:
        batch_size = _even_eval_batch(num_examples, batch_size, replicas_per_pipeline)
        if pad_to > 1:
            batch_size = max(pad_to, batch_size // pad_to * pad_to)
        steps = batches_per_epoch = -(-num_examples // batch_size)

    label_map = None
    if subset:
        mapping = [-1] * len(manifest["classes"])
        for new, old in enumerate(keep):
            mapping[old] = new
        label_map = tf.constant(mapping, tf.int64)

    if training and policy is not None and not isinstance(policy, Policy):
        policy = Policy(policy)
    batch_fn = make_batch_fn(policy if training else None, num_classes, manifest["encoding"], resolution,
                             label_map, (manifest["mean"], manifest["std"]) if normalise else None, jit,
                             with_filenames)

    # This input pipeline's share of the records, always in the same (file, record) order: the
    # epoch's permutation is drawn over that order, so it must not change between iterations.
    in_order = tf.data.Dataset.from_tensor_slices(files).interleave(
        tf.data.TFRecordDataset, cycle_length=min(len(files), 16), num_parallel_calls=AUTOTUNE, deterministic=True)
    if pipelines > 1 and not shard_files:
        in_order = in_order.shard(pipelines, pipeline_id)
    if subset:
        keep_tensor = tf.constant(keep, tf.int64)
        label_only = {"label": records.FEATURES["label"]}
        in_order = in_order.filter(lambda r: tf.reduce_any(
            tf.equal(tf.io.parse_single_example(r, label_only)["label"], keep_tensor)))
    if cache:
        in_order = in_order.cache()
    info = SplitInfo(num_examples, batch_size, steps, num_classes, manifest["mean"], manifest["std"], manifest,
                     [manifest["classes"][i] for i in keep])

    if not training:
        # A known length spares Keras a trip into the end of the data ("input ran out" warnings).
        dataset = in_order.batch(batch_size).apply(tf.data.experimental.assert_cardinality(batches_per_epoch))
        dataset = dataset.enumerate()
        dataset = dataset.map(lambda i, s: batch_fn(tf.stack([tf.cast(seed, tf.int64), i]), s),
                              num_parallel_calls=AUTOTUNE, deterministic=True)
        if pad_to > 1:
            dataset = dataset.map(lambda images, labels: _pad_batch(images, labels, pad_to))
        return dataset.prefetch(AUTOTUNE), info

    hard = _hard_records(in_order, hard_examples, hard_fraction, batch_size)
    window = epoch_order.window_size(num_examples, _record_bytes(manifest, split))

    def one_epoch(epoch):
        """This epoch's batches, in an order that depends only on (seed, epoch, input pipeline)."""
        order_key = epoch_order.key(seed, epoch_order.ORDER, epoch, pipeline_id)
        if steps_per_epoch or hard is not None:
            # a worker whose shards hold fewer examples (or whose batches give slots to hard
            # examples) wraps around into a fresh order instead of running dry
            ordered = epoch_order.permuted_forever(in_order, num_examples, order_key, window)
        else:
            ordered = epoch_order.permuted(in_order, num_examples, order_key, window)
        if hard is not None:
            hard_stream = epoch_order.reshuffled_forever(
                hard, epoch_order.key(seed, epoch_order.HARD, epoch, pipeline_id))
            ordered = _mix_in_hard(ordered, hard_stream, hard_fraction, batch_size)
        batches = ordered.batch(batch_size, drop_remainder=True).take(batches_per_epoch).enumerate()
        # Augmentation seeds: one per batch, and distinct per input pipeline (several workers).
        augment_key = epoch_order.key(seed, epoch_order.AUGMENT, epoch, pipeline_id)
        return batches.map(lambda i, serialized: (
            tf.random.experimental.stateless_fold_in(augment_key, i, alg="philox"), serialized))

    last = first_epoch + epochs if epochs is not None else 2**62
    # Epochs in turn. (A parallel interleave of two epochs hid the first window's build at each epoch
    # start, but tf.data then opened and buffered several whole epochs ahead: gigabytes at 64 px.)
    dataset = tf.data.Dataset.range(first_epoch, last).flat_map(one_epoch)
    dataset = dataset.map(batch_fn, num_parallel_calls=AUTOTUNE, deterministic=True)
    return dataset.prefetch(AUTOTUNE), info


def _pad_batch(images, labels, multiple: int):
    """Pad a (short, last) batch with zero images to a multiple of `multiple`; weight 0 marks them."""
    count = tf.shape(images)[0]
    extra = (multiple - count % multiple) % multiple
    images = tf.pad(images, [[0, extra], [0, 0], [0, 0], [0, 0]])
    labels = tf.pad(labels, [[0, extra], [0, 0]])
    weights = tf.concat([tf.ones([count]), tf.zeros([extra])], axis=0)
    return images, labels, weights


def _even_eval_batch(count: int, batch_size: int, replicas: int) -> int:
    """The largest batch <= batch_size that splits `count` into a multiple of `replicas` batches.

    Evaluation keeps every example, so the last batch is short; when one pipeline feeds several
    replicas a short tail would leave some replica an empty batch, which Keras's BatchNormalization
    rejects under tf.distribute. A slightly smaller batch gives every replica a non-empty one.
    """
    if replicas <= 1:
        return batch_size
    for size in range(batch_size, 0, -1):
        if -(-count // size) % replicas == 0 and count - (-(-count // size) - 1) * size >= 1:
            return size
    return batch_size


def checked_shard_paths(data_dir: str, resolution: int, manifest: dict, split: str) -> list[str]:
    """The shard paths of a split, each checked to exist with the manifest's size (named if not)."""
    files = manifests.shard_paths(data_dir, resolution, manifest, split)
    _check_sizes(files, manifest["splits"][split]["shards"])
    return files


def _check_sizes(files: list[str], shards: list[dict]) -> None:
    """A missing or truncated shard (an interrupted copy from Drive) is named before training starts."""
    for path, shard in zip(files, shards):
        if not tf.io.gfile.exists(path):
            raise UserError(f"{path}: shard missing (listed in the manifest)")
        if "bytes" in shard and tf.io.gfile.stat(path).length != shard["bytes"]:
            raise UserError(f"{path}: {tf.io.gfile.stat(path).length} bytes, the manifest says {shard['bytes']}; "
                            "copy it again or re-run tools.convert")


@contextlib.contextmanager
def naming_corrupt_shards(data_dir: str, resolution: int, splits=("train", "val")):
    """Turn tf.data's anonymous 'corrupted record at 3204' into a UserError naming the shard.

    TFRecordDataset does not say which file failed, so on such an error the shards are checked
    against the manifest's sha256 (seconds, even for 64 px train) to name the culprit.
    """
    try:
        yield
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as error:
        if isinstance(error, tf.errors.InvalidArgumentError) and "record" not in str(error).lower() \
                and "reshape" not in str(error).lower():
            raise
        manifest = manifests.read(data_dir, resolution)
        bad = []
        for split in splits:
            if split not in manifest["splits"]:
                continue
            for path, shard in zip(manifests.shard_paths(data_dir, resolution, manifest, split),
                                   manifest["splits"][split]["shards"]):
                if files.sha256_of(path) != shard["sha256"]:
                    bad.append(path)
        found = re.search(r"(corrupted|truncated) record at \d+", str(error))
        first_line = found.group(0) if found else type(error).__name__
        if bad:
            raise UserError(f"{bad[0]}: corrupt shard ({first_line}); re-run tools.convert to rewrite it"
                            + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else "")) from None
        folder = manifests.resolution_dir(data_dir, resolution)
        raise UserError(f"{folder}: unreadable records ({first_line})") from None


def _hard_records(records_ds, path: str | None, fraction: float, batch_size: int):
    """The serialised training records whose filename is listed in `path` (None if unused)."""
    if not path or fraction <= 0:
        return None
    if not 0 < fraction < 1:
        raise UserError(f"hard_fraction={fraction}: must be between 0 and 1")
    if not tf.io.gfile.exists(path):
        raise UserError(f"{path}: hard examples file not found")
    with tf.io.gfile.GFile(path) as handle:
        names = [line.split("\t")[0].strip() for line in handle if line.strip() and not line.startswith("#")]
    if not names:
        raise UserError(f"{path}: no filenames listed")
    wanted = tf.constant(names)
    name_only = {"filename": records.FEATURES["filename"]}
    hard = records_ds.filter(lambda r: tf.reduce_any(
        tf.equal(tf.io.parse_single_example(r, name_only)["filename"], wanted))).cache()
    # One pass now: a list that names no training image of these records would otherwise leave
    # the hard-example stream empty and training waiting for it forever.
    if int(hard.reduce(tf.constant(0, tf.int64), lambda count, _: count + 1)) == 0:
        raise UserError(f"{path}: none of its {len(names)} filenames is a training image of these records "
                        "(another dataset, resolution or class subset?)")
    return hard


def _mix_in_hard(ordered, hard_stream, fraction: float, batch_size: int):
    """Replace `round(fraction * batch)` records of every batch with hard examples.

    Slots come in a fixed pattern per batch (choose_from_datasets), so every batch has the same
    share; the normal stream simply supplies fewer records per batch, and the epoch keeps its
    number of batches (`take(steps)` in the caller). The normal records left over at the end of
    the epoch are a fresh random set every epoch, since the order is.
    """
    per_batch = max(1, round(fraction * batch_size))
    pattern = [1] * per_batch + [0] * (batch_size - per_batch)
    choice = tf.data.Dataset.from_tensor_slices(tf.constant(pattern, tf.int64)).repeat()
    return tf.data.Dataset.choose_from_datasets([ordered, hard_stream], choice)


def _record_bytes(manifest: dict, split: str) -> float:
    """Mean bytes of a serialised record (from the manifest's shard sizes; raw size if absent)."""
    shards = manifest["splits"][split]["shards"]
    if shards and all("bytes" in s for s in shards):
        return sum(s["bytes"] for s in shards) / max(1, sum(s["num_examples"] for s in shards))
    return manifest["resolution"] ** 2 * 3 + 64
