"""The tf.data input of one split of a converted folder, built in stages that read in order:

    training: read this pipeline's records in their fixed order, parsed and decoded into one
        element (pipeline/read.py) -> [cache] -> batches of this epoch's permutation, hard
        examples mixed in (pipeline/epoch_order.py), one gather each
    evaluation: read in file order -> batch -> parse and decode the batch
    -> augment (XLA-compiled: the warp, then the rest; pipeline/finish.py) -> prefetch

of one `Split` (pipeline/data_folder.py: the split, its class subset, counts and shards, resolved
once), configured by one typed `InputSpec` (pipeline/input_spec.py). Parsing (in chunks) and augmenting
whole batches costs one kernel launch per batch instead of one per image. Training data is built
epoch by epoch (`Dataset.range(first_epoch, ...).flat_map(...)`) with every random choice seeded
from (seed, epoch, input pipeline, batch): the data of epoch 37 is the same whether a run got there
in one go or resumed after a disconnect. Each epoch yields exactly `steps_per_epoch` steps of batches:
augmentation replaces samples and never adds any. The functions given to tf.data are written in
TensorFlow ops alone and kept from AutoGraph (`do_not_convert`: its conversions of the data path
cost seconds in every process).
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from common.errors import UserError
from pipeline import epoch_order, read
from pipeline.data_folder import Split
from pipeline.finish import batch_finisher
from pipeline.hard_examples import hard_indices, per_batch
from pipeline.input_spec import InputSpec, Training

AUTOTUNE = tf.data.AUTOTUNE


@dataclasses.dataclass(frozen=True)
class SplitInfo:
    """What a trainer needs to know about the data it gets."""

    num_examples: int  # in this input pipeline (this worker's share)
    batch_size: int  # per input pipeline (per replica under a distribution strategy)
    steps_per_epoch: int  # steps in an epoch, each taking a batch for every replica
    num_classes: int
    mean: list[float]
    std: list[float]
    classes: tuple[dict, ...]  # {wnid, words} of each label, in label order


def training_steps(split: Split, batch_size: int) -> int:
    """Steps of a training epoch at a global batch size: whole batches of the kept examples, as
    one pipeline lays them out (`_layout`, which also holds the one "at least one batch" check)."""
    return _layout(split, InputSpec(batch_size, training=Training()), None).steps


@dataclasses.dataclass(frozen=True)
class _Layout:
    """How one input pipeline's share divides into batches and steps."""

    share: read.Share
    num_examples: int
    batch_size: int  # per replica
    replicas: int  # replicas this pipeline feeds, one batch each per step
    steps: int

    @property
    def batches_per_epoch(self) -> int:
        return self.steps * self.replicas


def _layout(split: Split, spec: InputSpec, context: tf.distribute.InputContext | None) -> _Layout:
    share, batch_size, replicas = read.Share(), spec.batch_size, 1
    if context is not None:
        share = read.Share(context.num_input_pipelines, context.input_pipeline_id)
        batch_size = context.get_per_replica_batch_size(spec.batch_size)
        # One pipeline feeds all replicas of its worker, one batch each per step, round-robin.
        replicas = max(1, context.num_replicas_in_sync // share.pipelines)
    if share.pipelines > 1 and split.label_map is not None:
        # whole shards per pipeline hold unknown shares of the subset, and every n-th record of a
        # filtered stream too: the manifest cannot say how many each pipeline gets
        raise UserError("classes subsets with several input pipelines: shard the records per class first")
    count = read.share_count(split, share)
    if batch_size < 1:
        raise UserError(f"batch size {spec.batch_size} is smaller than the number of replicas")
    if spec.is_training:
        if count < batch_size:
            raise UserError(f"{split.name} at {split.resolution}px: {count} examples, fewer than one batch of "
                            f"{batch_size}")
        steps = spec.training.steps_per_epoch or count // (batch_size * replicas)
        return _Layout(share, count, batch_size, replicas, steps)
    if spec.evaluation.same_batches:
        most = max(read.share_count(split, read.Share(share.pipelines, i)) for i in range(share.pipelines))
        return _Layout(share, count, batch_size, 1, max(1, -(-most // batch_size)))
    batch_size = _even_eval_batch(count, batch_size, replicas)
    pad_to = spec.evaluation.pad_to
    if pad_to > 1:
        batch_size = max(pad_to, batch_size // pad_to * pad_to)
    return _Layout(share, count, batch_size, 1, -(-count // batch_size))


def build(split: Split, spec: InputSpec,
          input_context: tf.distribute.InputContext | None = None) -> tuple[tf.data.Dataset, SplitInfo]:
    """The dataset of one split (`DataFolder.split`) and what the trainer needs to know about it.

    Images come out uint8 [B, res, res, 3] (the model normalises them), or normalised float32 with
    `spec.normalised`; labels are one-hot (soft after mixup/cutmix) float32. With an
    `input_context` each input pipeline gets its own shards (or every n-th record when there are
    fewer shards than pipelines) and the per-replica batch.
    """
    layout = _layout(split, spec, input_context)
    records = read.in_order(split, layout.share)
    finish = batch_finisher(split, spec, layout.batch_size)
    info = SplitInfo(layout.num_examples, layout.batch_size, layout.steps, len(split.keep), list(split.mean),
                     list(split.std), split.classes)
    if spec.is_training:
        batches = _training_batches(records, split, spec, layout).map(
            finish, num_parallel_calls=AUTOTUNE, deterministic=True)
    else:
        batches = _evaluation_batches(records.cache() if spec.cache else records, spec, layout).map(
            lambda seed, serialized: finish(seed, read.decode(serialized, split.encoding, split.resolution)),
            num_parallel_calls=AUTOTUNE, deterministic=True)
    return batches.prefetch(AUTOTUNE), info


def _evaluation_batches(records: tf.data.Dataset, spec: InputSpec, layout: _Layout) -> tf.data.Dataset:
    """(seed, serialised batch): one pass in file order; a known length spares Keras a trip into
    the end of the data ("input ran out" warnings)."""
    batches = records.batch(layout.batch_size)
    if spec.evaluation.same_batches:  # empty batches (filled with weight-0 rows later) up to the common count
        own = -(-layout.num_examples // layout.batch_size)
        batches = batches.concatenate(tf.data.Dataset.from_tensors(tf.zeros([0], tf.string)).repeat(layout.steps - own))
    batches = batches.apply(tf.data.experimental.assert_cardinality(layout.steps))
    # a seed per batch, as training batches have (the finishing stage's signature); nothing draws from it
    return batches.enumerate().map(lambda i, serialized: (tf.stack([tf.constant(0, tf.int64), i]), serialized))


def _training_batches(records: tf.data.Dataset, split: Split, spec: InputSpec,
                      layout: _Layout) -> tf.data.Dataset:
    """(seed, decoded batch) of every epoch asked for, epochs in turn. This pipeline's records are
    held decoded (read once per epoch, or once per run with the cache); each batch is a gather of
    the indices its epoch's order gives (pipeline/epoch_order.py)."""
    whole = read.whole(split, records, layout.num_examples)
    if spec.cache:
        whole = whole.cache()
    training = spec.training
    hard = hard_indices(records, training.hard_examples, training.hard_fraction)
    hard_slots = per_batch(training.hard_fraction, layout.batch_size) if hard is not None else 0
    pipeline = layout.share.index

    @tf.autograph.experimental.do_not_convert  # TensorFlow ops alone: nothing for AutoGraph to convert
    def one_epoch(epoch, records_in_ram):
        """This epoch's batches, in an order that depends only on (seed, epoch, input pipeline)."""
        indices = epoch_order.batch_indices(
            layout.num_examples, layout.batch_size, layout.batches_per_epoch,
            epoch_order.key(training.seed, epoch_order.ORDER, epoch, pipeline), hard, hard_slots,
            epoch_order.key(training.seed, epoch_order.HARD, epoch, pipeline))
        # Augmentation seeds: one per batch, and distinct per input pipeline (several workers).
        augment_key = epoch_order.key(training.seed, epoch_order.AUGMENT, epoch, pipeline)
        return tf.data.Dataset.from_tensor_slices(indices).enumerate().map(
            lambda i, batch: (tf.random.experimental.stateless_fold_in(augment_key, i, alg="philox"),
                              {name: tf.gather(value, batch) for name, value in records_in_ram.items()}))

    last = training.first_epoch + training.epochs if training.epochs is not None else epoch_order.ENDLESS
    # One element per epoch: its number and the records. From the files, the next epoch's records
    # are read while this one is emitted (prefetch), so no epoch waits for a whole read; at most
    # two copies of the records are then alive.
    epochs = tf.data.Dataset.range(training.first_epoch, last).flat_map(
        lambda epoch: whole.map(lambda in_ram: (epoch, in_ram)))
    return epochs.prefetch(1).flat_map(one_epoch)


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
