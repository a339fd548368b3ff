"""Shared fixtures: small synthetic datasets in the official layout, converted once per session."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tools import make_synthetic  # noqa: E402

NUM_CLASSES = 6


@pytest.fixture(scope="session")
def synthetic_zip(tmp_path_factory):
    """A zip of 6 classes: 30 train and 5 val images each, 12 test images, every 7th grayscale."""
    path = str(tmp_path_factory.mktemp("source") / "tiny-imagenet-200.zip")
    info = make_synthetic.make_zip(path, num_classes=NUM_CLASSES, train_per_class=30, val_per_class=5,
                                   test_images=12, grayscale_every=7, seed=1)
    return path, info


@pytest.fixture(scope="session")
def converted(synthetic_zip, tmp_path_factory):
    """The synthetic zip converted at 32 and 64 px (raw), test split included, 3 shards a split."""
    from tools import convert

    out = str(tmp_path_factory.mktemp("records"))
    manifests = convert.convert(synthetic_zip[0], out, [32, 64], shards_per_split=3, include_test=True,
                                workers=1, show_progress=False)
    return out, manifests, synthetic_zip[1]
