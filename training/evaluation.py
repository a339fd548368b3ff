"""Evaluation that counts every point: a model's scores plain and with flip test-time augmentation.

`with_flip_average(net)` wraps a model into one that predicts the average of the probabilities of
each image and of its mirror image (left-right): two batched forward passes, one per view, no
Python per image. `scores(net, dataset)` evaluates the model and the wrapper with the trainer's
loss and metrics, weighted (padded evaluation batches carry a third element, sample weight 0), so
every real example counts exactly once in both. Keras layers and `keras.ops` only: the same code
runs under TensorFlow and JAX, and under a tf.distribute strategy when the wrapper is built and
compiled in its scope (pass `scope=runtime.scope`) and `dataset` is the distributed dataset.

The trainer's final evaluation (`Trainer.final_evaluation`) is this, on the distributed val dataset:

    scores = evaluation.scores(net, val, scope=self.runtime.scope, label_smoothing=self.config.label_smoothing)
    result["val_accuracy"], result["val_accuracy_tta"] = scores["accuracy"], scores["accuracy_tta"]  # ...
"""

from __future__ import annotations

import contextlib

import keras


@keras.saving.register_keras_serializable(package="tin")
class FlipLeftRight(keras.layers.Layer):
    """NHWC images -> their mirror images (the width axis reversed); no weights."""

    def call(self, images):
        return keras.ops.flip(images, axis=2)

    def compute_output_shape(self, input_shape):
        return input_shape


def _input_of(net):
    """A fresh input like the model's (shape and dtype)."""
    spec = net.inputs[0]
    return keras.Input(shape=tuple(spec.shape[1:]), dtype=spec.dtype, name="image")


def with_flip_average(net) -> keras.Model:
    """`images -> (net(images) + net(mirrored images)) / 2`, sharing the model's weights.

    Build it under the strategy's scope when there is one. The views are computed in float32, as
    the model's input is (its first layer normalises), and averaged in float32."""
    inputs = _input_of(net)
    mirrored = FlipLeftRight(dtype="float32", name="mirror")(inputs)
    outputs = keras.layers.Average(dtype="float32", name="flip_average")([net(inputs), net(mirrored)])
    return keras.Model(inputs, outputs, name=f"{net.name}_flip_average")


def plain(net) -> keras.Model:
    """`images -> net(images)` as a model of its own: compiled apart from `net`, so that evaluating
    it leaves the model's own compile state (optimizer, metrics) untouched."""
    inputs = _input_of(net)
    return keras.Model(inputs, net(inputs), name=f"{net.name}_plain")


def _compiled(model, num_classes: int, label_smoothing: float):
    """Compiled with the trainer's loss and (weighted) metrics, and built from shapes.

    The loss is also a weighted metric, "cross_entropy": Keras's own loss divides each padded
    batch by its padded size (weight-0 rows included), so it comes out low by real/padded examples.

    Building from shapes rather than from the first batch: under MultiWorkerMirroredStrategy
    Keras's build from a batch averages a distributed batch with a nested `strategy.reduce`, which
    that strategy rejects (see training/model_setup.py); afterwards everything is built."""
    model.compile(loss=keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing),
                  weighted_metrics=[keras.metrics.CategoricalAccuracy(name="accuracy"),
                                    keras.metrics.TopKCategoricalAccuracy(5, name="top5"),
                                    keras.metrics.CategoricalCrossentropy(name="cross_entropy",
                                                                          label_smoothing=label_smoothing)])
    images = keras.KerasTensor(model.inputs[0].shape, model.inputs[0].dtype)
    labels = keras.KerasTensor((None, num_classes), "float32")
    model._symbolic_build(data_batch=(images, labels))
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None
    return model


def scores(net, dataset, scope=None, label_smoothing: float = 0.0) -> dict:
    """{loss, accuracy, top5} of `net` on `dataset` and {accuracy_tta, top5_tta} of the flip
    average, as floats: each a mean over the real examples (weight-0 padding left out).

    `dataset` yields (uint8 images, one-hot labels[, sample weights]), plain or distributed;
    `scope` is a context manager factory (e.g. `strategy.scope`) under which the evaluation models
    are built and compiled (default: none); `label_smoothing`, as in training, affects the loss
    only. `net`'s own compile state is left alone."""
    num_classes = int(net.outputs[0].shape[-1])
    with (scope or contextlib.nullcontext)():
        direct = _compiled(plain(net), num_classes, label_smoothing)
        averaged = _compiled(with_flip_average(net), num_classes, label_smoothing)
    once = direct.evaluate(dataset, verbose=0, return_dict=True)
    both = averaged.evaluate(dataset, verbose=0, return_dict=True)
    return {"loss": float(once["cross_entropy"]), "accuracy": float(once["accuracy"]), "top5": float(once["top5"]),
            "accuracy_tta": float(both["accuracy"]), "top5_tta": float(both["top5"])}
