"""Shared fixtures: small synthetic datasets in the official layout, converted once per session."""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import subprocess
import warnings

import pytest

from tests import compile_cache

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
compile_cache.share()  # before TensorFlow starts: one XLA compilation cache for the run (tests/compile_cache.py)
compile_cache.compile_fast()  # XLA without LLVM's optimisations: the tests' programs compile, then run briefly

from common import files  # noqa: E402
from pipeline import synthetic  # noqa: E402

NUM_CLASSES = 6
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A ResNet of two narrow blocks (6k parameters, a fifth of resnet_tiny's time) as a config's `model`
# value, for runs whose property is not the network.
SMALL_RESNET = "{ blocks = [1, 1], widths = [8, 16], stem_width = 8 }"


def run_main(main, argv: list[str], command: list[str]) -> subprocess.CompletedProcess:
    """A command line's `main(argv)` run in this process, as a finished process: its exit code, its
    stdout and its stderr with the Python warnings a command line would print added. A traceback is
    not caught: a bug fails the test where it happens."""
    out, err = io.StringIO(), io.StringIO()
    with (contextlib.redirect_stdout(out), contextlib.redirect_stderr(err),
          warnings.catch_warnings(record=True) as shown):
        warnings.simplefilter("default")  # Python's filters for a command line, not pytest's
        for hidden in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
            warnings.simplefilter("ignore", hidden)
        try:
            code = main(argv)
        except SystemExit as exit_:  # argparse's refusals (2) and --help (0)
            code = exit_.code if isinstance(exit_.code, int) else int(exit_.code is not None)
    printed = "".join(warnings.formatwarning(w.message, w.category, w.filename, w.lineno, w.line) for w in shown)
    return subprocess.CompletedProcess([*command, *argv], code, out.getvalue(), err.getvalue() + printed)


def run_tool(tool: str, *args: str) -> subprocess.CompletedProcess:
    """`python -m tools.<tool> ARGS` as a user types it, run in this process (`run_main`): the exit
    code, the `error:` line, argument errors. What a process of its own adds is checked elsewhere:
    TensorFlow's native start-up lines and the quiet filter in tests/test_quiet.py, the exit code
    being main()'s in tests/test_layout.py. Here it would cost a TensorFlow import (seconds) a call."""
    return run_main(importlib.import_module(f"tools.{tool}").main, list(args), ["python", "-m", f"tools.{tool}"])


def stderr_lines(result: subprocess.CompletedProcess) -> list[str]:
    """What the tool wrote to stderr, line by line."""
    return result.stderr.strip().splitlines()


@pytest.fixture(scope="session")
def synthetic_zip(tmp_path_factory):
    """A zip of 6 classes: 30 train and 5 val images each, 12 test images, every 7th grayscale."""
    path = str(tmp_path_factory.mktemp("source") / "tiny-imagenet-200.zip")
    info = synthetic.make_zip(path, num_classes=NUM_CLASSES, train_per_class=30, val_per_class=5,
                              test_images=12, grayscale_every=7, seed=1)
    return path, info


@pytest.fixture(scope="session")
def converted(synthetic_zip, tmp_path_factory):
    """The synthetic zip converted at 32 and 64 px (raw), test split included, 3 shards a split."""
    from pipeline import convert

    out = str(tmp_path_factory.mktemp("records"))
    options = convert.ConvertOptions(shards_per_split=3, include_test=True, workers=1, show_progress=False)
    manifests = convert.convert(synthetic_zip[0], out, [32, 64], options)
    return out, manifests, synthetic_zip[1]


def write_split(folder: str, *, examples: int, shards: int, classes: int, resolution: int = 8,
                same_image: bool = False) -> str:
    """Records of a large synthetic train split written directly (tiny raw images, a few bytes
    each), with a manifest as the converter writes it: epoch-scale properties are tested above every
    buffer without converting 20,000 images. Example i has filename 'i', label
    i % classes and every pixel equal to i % 251 (with `same_image`, every example the same
    colourful gradient instead: then only augmentation can tell two batches apart)."""
    import numpy as np

    from pipeline import manifest as manifests
    from pipeline import records

    target = manifests.resolution_dir(folder, resolution)
    os.makedirs(target, exist_ok=True)
    bounds = np.linspace(0, examples, shards + 1).round().astype(int)
    entries = []
    import tensorflow as tf

    ramp = np.linspace(30, 220, resolution)
    gradient = np.stack(np.broadcast_arrays(ramp[None, :], ramp[:, None], ramp[::-1][None, :]), -1)
    gradient = gradient.astype(np.uint8).tobytes()

    for index in range(shards):
        name = records.shard_name("train", index, shards)
        path = os.path.join(target, name)
        labels = [i % classes for i in range(bounds[index], bounds[index + 1])]
        with tf.io.TFRecordWriter(path) as writer:
            for i in range(bounds[index], bounds[index + 1]):
                image = gradient if same_image else bytes([i % 251]) * (resolution * resolution * 3)
                writer.write(records.serialize(image, i % classes, str(i), (0.0, 0.0, 1.0, 1.0)))
        counts = np.bincount(labels, minlength=classes).tolist()
        entries.append({"file": name, "num_examples": len(labels), "sha256": files.sha256_of(path),
                        "bytes": os.path.getsize(path), "class_counts": counts})
    manifest = {"format_version": manifests.FORMAT_VERSION, "resolution": resolution, "encoding": "raw",
                "classes": [{"wnid": f"n{c:08d}", "words": f"class {c}"} for c in range(classes)],
                "splits": {"train": {"num_examples": examples, "shards": entries,
                                     "class_counts": np.sum([e["class_counts"] for e in entries], 0).tolist()}},
                "mean": [125.0] * 3, "std": [72.0] * 3, "complete": True}
    files.write_json(os.path.join(target, manifests.NAME), manifest)
    return folder


@pytest.fixture(scope="session")
def large_split(tmp_path_factory):
    """20,480 examples in 16 shards at 8 px: above every shuffle buffer and read-ahead."""
    return write_split(str(tmp_path_factory.mktemp("large")), examples=20_480, shards=16, classes=10)


def input_spec(split: str, batch_size: int, training: bool | None = None, **options):
    """An InputSpec from flat keywords, each put where it belongs (the shared options, `Training`'s
    or `Evaluation`'s); training unless `training=False` or the split is not "train" (the split
    itself is the `Split` the spec is built with: `build_split`)."""
    import dataclasses

    from pipeline.input_spec import Evaluation, InputSpec, Training

    def taken(kind):
        return {name: options.pop(name) for name in [f.name for f in dataclasses.fields(kind)] if name in options}

    assert training is None or isinstance(training, bool), "training=True/False here; the options go flat"
    is_training = split == "train" if training is None else training
    train, evaluate = taken(Training), taken(Evaluation)
    if is_training:
        return InputSpec(batch_size, training=Training(**train), **options)
    assert not train, f"training options for an evaluation input: {train}"
    return InputSpec(batch_size, evaluation=Evaluation(**evaluate), **options)


def build_split(data: str, split: str, resolution: int, batch_size: int, input_context=None, classes=None, **spec):
    """dataset.build on a folder path: the folder opened at `resolution`, its `split` with
    `classes`, the rest an InputSpec (`input_spec`)."""
    from pipeline import dataset
    from pipeline.data_folder import DataFolder

    return dataset.build(DataFolder.open(data, resolution).split(split, classes), input_spec(split, batch_size, **spec),
                         input_context)


def top_k_by_sorting(probabilities, labels, k: int = 5) -> float:
    """Top-k accuracy from its definition, written here for tests (not taken from the code under
    test): the share of rows whose label is among the row's k highest scores."""
    import numpy as np

    ranked = np.argsort(-np.asarray(probabilities, dtype=np.float64), axis=1, kind="stable")[:, :k]
    return float((ranked == np.asarray(labels)[:, None]).any(axis=1).mean())
