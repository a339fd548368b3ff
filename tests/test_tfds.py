"""Converted folders open in TensorFlow Datasets (`tfds.builder_from_directory`) and yield exactly
what this project's read stage decodes: every image, label, box and class name, for raw and JPEG
records; `tools.tfds_metadata` restores deleted metadata and names a missing folder in one line.

TFDS is a test-only dependency (requirements-dev.txt): without it these tests are skipped."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from pipeline import convert, read, records, synthetic, tfds_metadata
from pipeline.data_folder import DataFolder
from tests.conftest import run_tool, stderr_lines
from tools import tfds_metadata as tool


@pytest.fixture(scope="module")
def tfds():
    """Imported when a test here needs it, not at collection (other modules never pay for it)."""
    return pytest.importorskip("tensorflow_datasets")


def ours(data: str, resolution: int, split: str) -> dict[str, tuple]:
    """filename -> (image, label, bbox) as the project's read stage decodes them."""
    rows = {}
    for batch in read.batches(DataFolder.open(data, resolution).split(split), 4096):
        for image, label, bbox, name in zip(batch["image"].numpy(), batch["label"].numpy(), batch["bbox"].numpy(),
                                            batch["filename"].numpy()):
            rows[name.decode()] = (image, int(label), bbox)
    return rows


def theirs(tfds, builder, split: str) -> dict[str, tuple]:
    """filename -> (image, label, bbox) as TFDS decodes them; a filename seen twice fails."""
    rows = {}
    for example in tfds.as_numpy(builder.as_dataset(split=split)):
        name = example["filename"].decode()
        assert name not in rows, name
        rows[name] = (example["image"], int(example["label"]), example["bbox"])
    return rows


def assert_same_examples(tfds, data: str, resolution: int, splits: tuple[str, ...]) -> None:
    folder = DataFolder.open(data, resolution)
    builder = tfds.builder_from_directory(folder.folder)
    features = builder.info.features
    assert sorted(features.keys()) == sorted(records.FEATURES)  # the records' own keys, no other
    assert features["label"].names == [c["wnid"] for c in folder.classes]
    assert builder.info.metadata["words"] == {c["wnid"]: c["words"] for c in folder.classes}
    assert features["bbox"].bbox_format.value == "REL_XYXY"
    assert builder.info.supervised_keys == ("image", "label")
    assert sorted(builder.info.splits) == sorted(folder.manifest["splits"])
    for split in splits:
        info = builder.info.splits[split]
        assert info.shard_lengths == [s["num_examples"] for s in folder.shards(split)]
        assert info.num_bytes == sum(s["bytes"] for s in folder.shards(split))
        expected, got = ours(data, resolution, split), theirs(tfds, builder, split)
        assert len(got) == info.num_examples == folder.count(split) == len(expected)
        assert got.keys() == expected.keys()
        for name, (image, label, bbox) in got.items():
            want_image, want_label, want_bbox = expected[name]
            assert image.dtype == np.uint8 and image.shape == (resolution, resolution, 3)
            np.testing.assert_array_equal(image, want_image, err_msg=name)
            assert label == want_label, name
            np.testing.assert_array_equal(bbox, want_bbox, err_msg=name)  # xmin, ymin, xmax, ymax both


def test_raw_records_open_in_tfds_as_the_pipeline_reads_them(tfds, converted):
    """The converter wrote the metadata itself (raw, 32 and 64 px, test split included)."""
    out = converted[0]
    assert_same_examples(tfds, out, 64, ("train", "val", "test"))
    assert_same_examples(tfds, out, 32, ("val",))


def test_jpeg_records_open_in_tfds_as_the_pipeline_reads_them(tfds, tmp_path):
    """64 px: the source JPEGs copied byte for byte; 32 px: re-encoded by the converter."""
    source = str(tmp_path / "tiny-imagenet-200.zip")
    synthetic.make_zip(source, num_classes=3, train_per_class=6, val_per_class=3, test_images=0, seed=2)
    out = str(tmp_path / "records")
    options = convert.ConvertOptions(encoding="jpeg", shards_per_split=2, workers=1, show_progress=False)
    convert.convert(source, out, [32, 64], options)
    for resolution in (32, 64):
        assert_same_examples(tfds, out, resolution, ("train", "val"))


def test_the_command_restores_deleted_metadata(tfds, converted, tmp_path, capsys):
    copy = str(tmp_path / "records")
    shutil.copytree(converted[0], copy)
    written = {}
    for resolution in (32, 64):
        for name in tfds_metadata.NAMES:
            path = os.path.join(copy, f"{resolution}px", name)
            with open(path, "rb") as handle:
                written[path] = handle.read()
            os.remove(path)
    assert tool.main([copy]) == 0
    assert sorted(capsys.readouterr().out.split()) == sorted(written)
    for path, content in written.items():
        with open(path, "rb") as handle:
            assert handle.read() == content, path  # what the converter wrote, byte for byte
    assert tfds.builder_from_directory(os.path.join(copy, "64px")).info.splits["val"].num_examples == \
        converted[1][64]["splits"]["val"]["num_examples"]


def test_the_command_names_a_missing_folder_in_one_line(tmp_path):
    missing = str(tmp_path / "nowhere")
    result = run_tool("tfds_metadata", missing)
    assert result.returncode == 2
    lines = stderr_lines(result)
    assert len(lines) == 1 and lines[0].startswith("error: ") and missing in lines[0], lines
