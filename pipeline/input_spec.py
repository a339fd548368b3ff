"""How to read a split (`pipeline.data_folder.Split`: what to read, resolved once): the one typed
description that the dataset (pipeline/dataset.py) builds from and the finishing stage
(pipeline/finish.py) reads. A module of its own so that both can import it: the dataset imports
the finishing stage.
"""

from __future__ import annotations

import dataclasses

from pipeline import policy as policies


@dataclasses.dataclass(frozen=True)
class Training:
    """What makes an input a training input: augmented with `policy`, `epochs` epochs from
    `first_epoch` (None: forever), each in a fresh order drawn from `seed`, whole batches only."""

    # the augmentations (parsed once: a policy string given here is parsed on creation)
    policy: tuple[policies.Augmentation, ...] = ()
    seed: int = 0
    first_epoch: int = 0
    epochs: int | None = None
    # a trainer with several workers passes the global step count, so that no worker runs out first
    steps_per_epoch: int | None = None
    # a file of training filenames (from tools.analyze) and the share of every batch drawn from them
    hard_examples: str | None = None
    hard_fraction: float = 0.0
    # the records' boxes as a third element (augment.on = "device": object_crop in the train step)
    with_boxes: bool = False

    def __post_init__(self):
        if not isinstance(self.policy, tuple) or not all(isinstance(s, policies.Augmentation) for s in self.policy):
            object.__setattr__(self, "policy", policies.parse(self.policy) if self.policy is not None else ())


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """How an evaluation input (one pass in file order, every example) shapes its batches."""

    # batches padded to a multiple of `pad_to` with a weight-0 third element (JAX's DataParallel)
    pad_to: int = 1
    # every batch exactly the per-pipeline batch and every input pipeline as many batches (the
    # most any needs), weight-0 rows filling up: JAX over several processes needs one shape and
    # one step count in every process
    same_batches: bool = False


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """How to read a split; `dataset.build` takes the split and this.

    The options every input shares, then `training` (a `Training`: augmented epochs in a fresh
    order) or, without it, `evaluation` (an `Evaluation`: one pass in file order, every example,
    no augmentation). `batch_size` is global: under a distribution strategy each replica gets its
    share. A spec without `training` is an evaluation input, also of the train split (one pass
    in file order: what tools.analyze reads).
    """

    batch_size: int = 64
    # keep the records in RAM (read once per run instead of once per epoch)
    cache: bool = False
    # output: normalised float32 images instead of uint8; the filenames as a third element
    normalised: bool = False
    with_filenames: bool = False
    jit: bool = True
    # images resized to this many px after decoding, in the graph (bilinear, antialiased, rounded
    # back to uint8): e.g. evaluating at 56 px from the 64 px records; None keeps the records' size
    resize_to: int | None = None
    training: Training | None = None
    evaluation: Evaluation = Evaluation()

    def __post_init__(self):
        if self.training is not None and self.evaluation != Evaluation():
            raise ValueError("an InputSpec is for training or for evaluation: give `training` or `evaluation`")

    @property
    def is_training(self) -> bool:
        return self.training is not None
