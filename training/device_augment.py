"""`augment.on = "device"`: run the augmentation policy inside the compiled train step.

Two host cores (Colab's free tier) may not feed a fast accelerator. The policy's functions are
pure TF ops that compile with XLA, so the very same code can run on the GPU/TPU instead: the
pipeline then only reads and batches uint8 records, and the train step augments the batch before
the forward pass, seeded by (seed, optimizer step) so it stays reproducible and resumable.

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


def augment_in_train_step(net, steps: tuple, seed: int, backend: str) -> None:
    """Make `net`'s train step augment each batch with `steps` (pipeline.policy.parse's result, as
    `config.augment.steps` holds it) before the forward pass."""
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
        step = tf.cast(inner_optimizer(net.optimizer).iterations, tf.int64)
        images, labels = policy(images, labels, replica_seed(seed, step))
        return plain_step((images, labels))

    # Keras builds its train function from `self.train_step`: an instance attribute takes precedence.
    net.train_step = train_step
