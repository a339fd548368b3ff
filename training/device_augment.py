"""`augment.on = "device"`: run the augmentation policy inside the compiled train step.

Two host cores (Colab's free tier) may not feed a fast accelerator. The policy's functions are
pure TF ops that compile with XLA, so the very same code can run on the GPU/TPU instead: the
pipeline then only reads and batches uint8 records (with their boxes, for object_crop), and the
train step augments the batch before the forward pass, seeded by (seed, optimizer step, replica)
so it stays reproducible and resumable. The whole policy runs there, object_crop included.

TensorFlow backend only: the augmentations are TF ops, which JAX cannot compile. Under JAX the
policy runs in tf.data on the host (TPU VMs have many host cores), and this setting is refused.
"""

from __future__ import annotations

from common.errors import UserError


def replica_seed(seed: int, step):
    """The augmentation seed of this replica at this optimizer step: (seed, step) with the replica's
    index in the sync group folded in (global across workers), so no two replicas draw alike."""
    import tensorflow as tf

    from pipeline import epoch_order

    replica = tf.distribute.get_replica_context().replica_id_in_sync_group
    return epoch_order.key(seed, epoch_order.AUGMENT_ON_DEVICE, step, replica)


def augment_in_train_step(net, steps: tuple, seed: int, backend: str, resolution: int, num_classes: int) -> None:
    """Make `net`'s train step augment each batch with `steps` (pipeline.policy.parse's result, as
    `config.augment.steps` holds it) before the forward pass. Training batches arrive as (images,
    labels, boxes) (`InputSpec.with_boxes`); the model sees (augmented images, labels). Keras would
    read a third element as sample weights when it builds the model from the first batch, so the
    model is built here from a plain (images, labels) batch of the first stage's `resolution`."""
    if backend != "tensorflow":
        raise UserError('augment.on = "device" needs the TensorFlow backend; under JAX keep augment.on = "host" '
                        "(the policy runs in tf.data on the TPU host)")
    import tensorflow as tf

    from pipeline.augment import Policy
    from training.checkpoint import inner_optimizer

    policy = Policy(steps)
    plain_step = net.train_step

    def train_step(data):
        images, labels = data[0], data[1]
        boxes = data[2] if len(data) > 2 else None
        step = tf.cast(inner_optimizer(net.optimizer).iterations, tf.int64)
        images, labels = policy(images, labels, replica_seed(seed, step), boxes)
        return plain_step((images, labels))

    # Keras builds its train function from `self.train_step`: an instance attribute takes precedence.
    net.train_step = train_step
    build_from_a_plain_batch(net, resolution, num_classes)


def build_from_a_plain_batch(net, resolution: int, num_classes: int) -> None:
    """Build the model's, metrics' and loss's state from a dummy (images, labels) batch and skip the
    build Keras makes from the first real batch: with the boxes as a third element it would take
    them for sample weights; under MultiWorkerMirroredStrategy it averages that batch with a nested
    `strategy.reduce`, which the strategy rejects ("Attempt to convert a value (PerReplica...)")."""
    import numpy as np

    images = np.zeros((2, resolution, resolution, 3), np.uint8)
    labels = np.zeros((2, num_classes), np.float32)
    net._symbolic_build(data_batch=(images, labels))
    net._maybe_symbolic_build = lambda iterator=None, data_batch=None: None
