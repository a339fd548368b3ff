"""Evaluation that counts every point: flip test-time augmentation against a model whose answers
are worked out by hand, padded batches, under a distribution strategy, and evaluation at a
resolution resized on the fly from the nearest converted one (tools.analyze --eval-resolution)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from pipeline import read
from pipeline.data_folder import DataFolder
from pipeline.verify import resolutions_in
from tests.conftest import build_split, top_k_by_sorting
from training import analysis, evaluation

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def left_half_model():
    """3 classes, one per colour channel, read from the left half of a 4x4 image only:
    probabilities = softmax(10 * mean colour of the left two columns). Fixed by hand, no training."""
    inputs = keras.Input((4, 4, 3))
    left = keras.layers.Cropping2D(((0, 0), (0, 2)))(inputs)
    means = keras.layers.GlobalAveragePooling2D()(left)
    dense = keras.layers.Dense(3, use_bias=False, trainable=False)
    logits = dense(means)
    dense.set_weights([10 * np.eye(3, dtype="float32")])
    return keras.Model(inputs, keras.layers.Activation("softmax")(logits))


def image(left, right):
    """4x4 RGB: the left two columns one colour, the right two another."""
    pixels = np.zeros((4, 4, 3), np.float32)
    pixels[:, :2], pixels[:, 2:] = left, right
    return pixels


def softmax(logits):
    e = np.exp(np.asarray(logits, np.float64))
    return e / e.sum()


def test_flip_average_turns_a_wrong_answer_right_and_keeps_a_right_one():
    # A: weak red on the left, strong green on the right, truly green. The model sees the left
    #    half: red (wrong), with p = softmax(2, 0, 0) = (0.79, 0.11, 0.11); the mirror shows it the
    #    green: softmax(0, 10, 0) = (0.00005, 0.9999, 0.00005); average (0.39, 0.55, 0.05): green.
    # B: strong blue left, weak red right, truly blue: plain blue (right), mirror red, average blue.
    images = np.stack([image((0.2, 0, 0), (0, 1, 0)), image((0, 0, 1), (0.2, 0, 0))])
    labels = np.eye(3, dtype=np.float32)[[1, 2]]
    net = left_half_model()
    averaged = np.asarray(evaluation.with_flip_average(net).predict(images, verbose=0))
    expected_a = (softmax([2, 0, 0]) + softmax([0, 10, 0])) / 2
    np.testing.assert_allclose(averaged[0], expected_a, atol=1e-5)
    assert averaged.argmax(1).tolist() == [1, 2]
    result = evaluation.scores(net, tf.data.Dataset.from_tensor_slices((images, labels)).batch(2))
    assert result["accuracy"] == pytest.approx(0.5) and result["accuracy_tta"] == pytest.approx(1.0)
    assert result["top5"] == pytest.approx(1.0) and result["top5_tta"] == pytest.approx(1.0)  # 3 classes
    plain_loss = -(np.log(softmax([2, 0, 0])[1]) + np.log(softmax([0, 0, 10])[2])) / 2
    assert result["loss"] == pytest.approx(plain_loss, rel=1e-4)


def test_a_symmetric_image_scores_the_same_with_and_without_its_mirror():
    rng = np.random.default_rng(3)
    half = rng.uniform(0, 1, (12, 4, 2, 3)).astype(np.float32)
    images = np.concatenate([half, half[:, :, ::-1]], axis=2)  # left-right symmetric
    np.testing.assert_array_equal(images, images[:, :, ::-1])
    labels = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 12)]
    net = left_half_model()
    np.testing.assert_allclose(evaluation.with_flip_average(net).predict(images, verbose=0),
                               net.predict(images, verbose=0), atol=1e-6)
    result = evaluation.scores(net, tf.data.Dataset.from_tensor_slices((images, labels)).batch(5))
    assert 0 < result["accuracy"] < 1
    assert result["accuracy_tta"] == pytest.approx(result["accuracy"])
    assert result["top5_tta"] == pytest.approx(result["top5"])


def test_the_mirror_layer_reverses_the_width_axis():
    batch = np.arange(2 * 3 * 4 * 3, dtype=np.float32).reshape(2, 3, 4, 3)
    np.testing.assert_array_equal(np.asarray(evaluation.FlipLeftRight()(batch)), batch[:, :, ::-1])


def reference(net, data: str, resolution: int):
    """Plain and flip-averaged top-1/top-5 of the whole val split, computed here with numpy."""
    folder = DataFolder.open(data, resolution)
    parsed = [batch for batch in read.batches(folder.split("val"), 1000)]
    images = np.concatenate([b["image"].numpy() for b in parsed])
    labels = np.concatenate([b["label"].numpy() for b in parsed])
    plain = np.asarray(net.predict(images, verbose=0))
    averaged = (plain + np.asarray(net.predict(images[:, :, ::-1], verbose=0))) / 2
    return {"accuracy": float((plain.argmax(1) == labels).mean()), "top5": top_k_by_sorting(plain, labels),
            "accuracy_tta": float((averaged.argmax(1) == labels).mean()),
            "top5_tta": top_k_by_sorting(averaged, labels)}


def test_padded_evaluation_batches_count_every_real_example_once_with_tta_too(converted):
    import model

    padded, _ = build_split(converted[0], "val", 32, 7, pad_to=4)  # 30 examples + 2 of weight 0
    net = model.build("resnet_tiny", 6)
    with_padding = evaluation.scores(net, padded)
    without = evaluation.scores(net, build_split(converted[0], "val", 32, 7)[0])
    expected = reference(net, converted[0], 32)
    for key in ("accuracy", "top5", "accuracy_tta", "top5_tta"):
        assert with_padding[key] == pytest.approx(expected[key], abs=1e-6), key
        assert without[key] == pytest.approx(expected[key], abs=1e-6), key
    assert with_padding["loss"] == pytest.approx(without["loss"], rel=1e-5)  # padding leaves the loss alone too


MIRRORED = """
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import model
from tests.conftest import build_split
from training import evaluation
strategy = tf.distribute.MirroredStrategy(["CPU:0", "CPU:1"])
with strategy.scope():
    net = model.build("resnet_tiny", 6)
val = strategy.distribute_datasets_from_function(
    lambda context: build_split(sys.argv[1], "val", 32, 8, context, pad_to=2)[0])
single = build_split(sys.argv[1], "val", 32, 8)[0]
print(json.dumps({"replicas": evaluation.scores(net, val, scope=strategy.scope),
                  "single": evaluation.scores(net, single)}))
"""


def test_scores_under_a_mirrored_strategy_count_every_example_once(converted):
    env = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": "tensorflow"}
    result = subprocess.run([sys.executable, "-c", MIRRORED, converted[0]], env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    scores, single = measured["replicas"], measured["single"]
    # every value is a mean over the 30 val images: a multiple of 1/30 counts each exactly once
    for key in ("accuracy", "top5", "accuracy_tta", "top5_tta"):
        assert 0 <= scores[key] <= 1 and scores[key] * 30 == pytest.approx(round(scores[key] * 30), abs=1e-4), key
        assert scores[key] == pytest.approx(single[key], abs=1e-6), key
    assert scores["loss"] == pytest.approx(single["loss"], rel=1e-5)


@pytest.mark.parametrize("target, nearest", [(56, 64), (40, 32), (48, 64), (32, 32), (64, 64), (16, 32),
                                             (100, 64), (47, 32), (49, 64)])
def test_the_nearest_converted_resolution_ties_going_to_the_larger(target, nearest):
    assert analysis.nearest_resolution([32, 64], target) == nearest


def test_resized_evaluation_batches_equal_an_antialiased_resize_of_the_records(converted):
    data = converted[0]
    assert resolutions_in(data) == [32, 64]
    assert analysis.nearest_resolution(resolutions_in(data), 56) == 64
    resized, info = build_split(data, "val", 64, 8, resize_to=56)
    got = np.concatenate([images.numpy() for images, _ in resized])
    records = np.concatenate([b["image"].numpy() for b in read.batches(DataFolder.open(data, 64).split("val"), 8)])
    scaled = tf.image.resize(records, [56, 56], method="bilinear", antialias=True).numpy()
    expected = np.clip(np.round(scaled), 0, 255).astype(np.uint8)
    assert got.dtype == np.uint8 and got.shape == (30, 56, 56, 3) and info.num_examples == 30
    np.testing.assert_array_equal(got, expected)
    assert not np.array_equal(got, records[:, :56, :56])  # resized, not cropped
    same, _ = build_split(data, "val", 64, 8, resize_to=64)  # the records' own size: left as they are
    np.testing.assert_array_equal(np.concatenate([i.numpy() for i, _ in same]), records)
