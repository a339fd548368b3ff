"""The converter: counts, labels, filenames, grayscale handling, resume and every bad input."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from common import files
from common.errors import UserError
from pipeline import convert, records, synthetic, verify
from pipeline import manifest as manifests
from tests.conftest import run_tool

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_convert(source: str, out: str, resolutions: list[int], **options) -> dict[int, dict]:
    """convert.convert with the options as keywords."""
    return convert.convert(source, out, resolutions, convert.ConvertOptions(**options))


def read_split(folder: str, resolution: int, split: str) -> dict[str, np.ndarray]:
    manifest = manifests.read(folder, resolution)
    paths = manifests.shard_paths(folder, resolution, manifest, split)
    batch = next(iter(tf.data.TFRecordDataset(paths).batch(100_000)))
    parsed = records.parse_batch(batch)
    images = records.decode_images(parsed["image"], manifest["encoding"], resolution)
    return {"image": images.numpy(), "label": parsed["label"].numpy(),
            "filename": np.array([f.decode() for f in parsed["filename"].numpy()]), "bbox": parsed["bbox"].numpy()}


def test_counts_per_split_and_resolution(converted):
    out, result, info = converted
    for resolution in (32, 64):
        manifest = result[resolution]
        assert manifest["complete"] and manifest["resolution"] == resolution
        for split in ("train", "val", "test"):
            assert manifest["splits"][split]["num_examples"] == info[split]
            data = read_split(out, resolution, split)
            assert len(data["label"]) == info[split]
            assert data["image"].shape[1:] == (resolution, resolution, 3)
            assert sum(s["num_examples"] for s in manifest["splits"][split]["shards"]) == info[split]
        assert [c["wnid"] for c in manifest["classes"]] == info["wnids"]
        assert manifest["classes"][0]["words"].startswith("synthetic ")


def test_labels_match_wnids_and_filenames_map_back(converted):
    out, result, info = converted
    data = read_split(out, 64, "train")
    for label, name in zip(data["label"], data["filename"]):
        assert name.startswith(info["wnids"][label] + "_"), (label, name)
    with zipfile.ZipFile(_zip_of(converted)) as z:
        names = {n.rsplit("/", 1)[-1] for n in z.namelist()}
    assert set(data["filename"]) <= names
    val = read_split(out, 32, "val")
    assert set(val["label"]) == set(range(len(info["wnids"])))
    test = read_split(out, 32, "test")
    assert set(test["label"]) == {-1}


def _zip_of(converted):
    return converted[1][32]["source"]["location"]


def test_train_val_test_never_share_a_filename(converted):
    out = converted[0]
    names = {s: set(read_split(out, 32, s)["filename"]) for s in ("train", "val", "test")}
    assert not names["train"] & names["val"]
    assert not names["train"] & names["test"]
    assert not names["val"] & names["test"]


def test_64px_raw_is_the_source_pixels_and_grayscale_comes_out_rgb(converted):
    out, result, info = converted
    data = read_split(out, 64, "train")
    with zipfile.ZipFile(_zip_of(converted)) as z:
        by_name = {n.rsplit("/", 1)[-1]: n for n in z.namelist()}
        gray = sorted(n for n in info["grayscale"] if n in set(data["filename"]))
        assert gray, "the fixture must contain grayscale train images"
        for name in gray[:3]:
            source = Image.open(io.BytesIO(z.read(by_name[name])))
            assert source.mode == "L"
            index = list(data["filename"]).index(name)
            image = data["image"][index]
            np.testing.assert_array_equal(image[..., 0], np.asarray(source))
            np.testing.assert_array_equal(image[..., 0], image[..., 2])
    expected_gray = {s: len([n for n in info["grayscale"] if n in set(read_split(out, 32, s)["filename"])])
                     for s in ("train", "val", "test")}
    assert result[64]["grayscale_sources"] == expected_gray


def test_boxes_are_normalised_from_the_boxes_files(converted):
    data = read_split(converted[0], 32, "val")
    with zipfile.ZipFile(_zip_of(converted)) as z:
        lines = z.read("tiny-imagenet-200/val/val_annotations.txt").decode().split("\n")
    boxes = {f[0]: [int(v) for v in f[2:6]] for f in (line.split("\t") for line in lines if line)}
    for name, box in zip(data["filename"], data["bbox"]):
        x0, y0, x1, y1 = boxes[name]
        np.testing.assert_allclose(box, [x0 / 64, y0 / 64, (x1 + 1) / 64, (y1 + 1) / 64], rtol=1e-6)


def test_mean_and_std_equal_numpy_on_the_train_split(converted):
    out, result, _ = converted
    pixels = read_split(out, 32, "train")["image"].reshape(-1, 3).astype(np.float64)
    np.testing.assert_allclose(result[32]["mean"], pixels.mean(0), atol=1e-3)
    np.testing.assert_allclose(result[32]["std"], pixels.std(0), atol=1e-3)


def test_train_is_shuffled_across_shards_deterministically(converted):
    out = converted[0]
    manifest = manifests.read(out, 32)
    first = manifests.shard_paths(out, 32, manifest, "train")[0]
    labels = [records.parse_batch(b)["label"].numpy() for b in tf.data.TFRecordDataset(first).batch(1000)][0]
    assert len(set(labels)) > 2  # classes are mixed, not one class per shard


def test_class_subset_relabels_and_filters_val(synthetic_zip, tmp_path):
    path, info = synthetic_zip
    result = run_convert(path, str(tmp_path), [32], classes="2", workers=1, show_progress=False)[32]
    assert [c["wnid"] for c in result["classes"]] == info["wnids"][:2]
    assert result["splits"]["train"]["num_examples"] == 60
    assert result["splits"]["val"]["num_examples"] == 10
    assert set(read_split(str(tmp_path), 32, "val")["label"]) == {0, 1}
    named = run_convert(path, str(tmp_path / "named"), [32], classes=f"{info['wnids'][4]},{info['wnids'][1]}",
                        workers=1, show_progress=False)[32]
    assert [c["wnid"] for c in named["classes"]] == [info["wnids"][1], info["wnids"][4]]


def test_jpeg_encoding_copies_64px_sources_byte_for_byte(synthetic_zip, tmp_path):
    path, _ = synthetic_zip
    run_convert(path, str(tmp_path), [64], encoding="jpeg", classes="1", workers=2, show_progress=False)
    manifest = manifests.read(str(tmp_path), 64)
    batch = next(iter(tf.data.TFRecordDataset(manifests.shard_paths(str(tmp_path), 64, manifest, "train")).batch(99)))
    parsed = records.parse_batch(batch)
    with zipfile.ZipFile(path) as z:
        for data, name in zip(parsed["image"].numpy()[:5], parsed["filename"].numpy()[:5]):
            wnid = name.decode().split("_")[0]
            assert data == z.read(f"tiny-imagenet-200/train/{wnid}/images/{name.decode()}")


def _digests(folder):
    return {name: hashlib.sha256(open(os.path.join(folder, name), "rb").read()).hexdigest()
            for name in sorted(os.listdir(folder)) if name.endswith(".tfrecord")}


def test_resume_after_interruption_gives_identical_shards(synthetic_zip, tmp_path, monkeypatch):
    path, _ = synthetic_zip
    clean, broken = str(tmp_path / "clean"), str(tmp_path / "broken")
    run_convert(path, clean, [32], shards_per_split=4, workers=1, show_progress=False)
    real_write = convert.write_shard
    calls = {"n": 0}

    def dying_write(target, examples):
        calls["n"] += 1
        if calls["n"] == 3:  # the disconnect hits mid-shard: a temporary file is left behind
            with open(os.path.join(os.path.dirname(target), "." + os.path.basename(target) + ".tmp"), "wb") as f:
                f.write(b"half a shard")
            raise KeyboardInterrupt
        return real_write(target, examples)

    monkeypatch.setattr(convert, "write_shard", dying_write)
    with pytest.raises(KeyboardInterrupt):
        run_convert(path, broken, [32], shards_per_split=4, workers=1, show_progress=False)
    partial = files.read_json(os.path.join(broken, "32px", "manifest.json"))
    assert partial["complete"] is False and len(partial["splits"]["train"]["shards"]) == 2
    with pytest.raises(UserError, match="unfinished"):
        manifests.read(broken, 32)
    written = []
    monkeypatch.setattr(convert, "write_shard", lambda t, e: written.append(os.path.basename(t)) or real_write(t, e))
    run_convert(path, broken, [32], shards_per_split=4, workers=1, show_progress=False)
    assert "train-00000-of-00004.tfrecord" not in written and "train-00002-of-00004.tfrecord" in written
    assert _digests(os.path.join(broken, "32px")) == _digests(os.path.join(clean, "32px"))
    assert manifests.read(broken, 32)["mean"] == manifests.read(clean, 32)["mean"]


def test_a_damaged_shard_is_rewritten_on_rerun(synthetic_zip, tmp_path):
    path, _ = synthetic_zip
    run_convert(path, str(tmp_path), [32], shards_per_split=2, workers=1, show_progress=False)
    before = _digests(str(tmp_path / "32px"))
    with open(tmp_path / "32px" / "val-00001-of-00002.tfrecord", "r+b") as handle:
        handle.seek(50)
        handle.write(b"\x00\x01\x02")
    assert any("val-00001" in b for b in verify.verify(str(tmp_path), report=lambda *_: None))
    run_convert(path, str(tmp_path), [32], shards_per_split=2, workers=1, show_progress=False)
    assert _digests(str(tmp_path / "32px")) == before
    assert verify.verify(str(tmp_path), report=lambda *_: None) == []


def test_verify_names_a_truncated_shard(converted, tmp_path):
    copy = str(tmp_path / "copy")
    shutil.copytree(converted[0], copy)
    target = os.path.join(copy, "64px", "train-00001-of-00003.tfrecord")
    with open(target, "r+b") as handle:
        handle.truncate(os.path.getsize(target) // 2)
    bad = verify.verify(copy, report=lambda *_: None)
    assert len(bad) == 1 and "train-00001-of-00003" in bad[0]
    assert run_tool("verify", copy).returncode == 1


# -- bad input ------------------------------------------------------------------------------------------
def test_not_a_zip(tmp_path):
    bogus = tmp_path / "tiny.zip"
    bogus.write_bytes(b"this is not a zip")
    with pytest.raises(UserError, match=r"tiny\.zip: not a zip"):
        run_convert(str(bogus), str(tmp_path / "out"), [32], show_progress=False)


def test_folder_without_wnids(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="empty: no wnids.txt"):
        run_convert(str(tmp_path / "empty"), str(tmp_path / "out"), [32], show_progress=False)


def test_unpacked_folder_converts_like_the_zip(synthetic_zip, tmp_path):
    with zipfile.ZipFile(synthetic_zip[0]) as z:
        z.extractall(tmp_path / "unpacked")
    result = run_convert(str(tmp_path / "unpacked"), str(tmp_path / "out"), [32], classes="2", workers=1,
                         show_progress=False)[32]
    reference = run_convert(synthetic_zip[0], str(tmp_path / "ref"), [32], classes="2", workers=1,
                            show_progress=False)[32]
    assert [s["sha256"] for s in result["splits"]["train"]["shards"]] == \
        [s["sha256"] for s in reference["splits"]["train"]["shards"]]


def _rewrite_zip(source: str, target: str, replace: dict[str, bytes]):
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for name in old.namelist():
            new.writestr(name, replace.get(name, old.read(name)))
        for name, data in replace.items():
            if name not in old.namelist():
                new.writestr(name, data)


def test_val_annotation_with_unknown_class(synthetic_zip, tmp_path):
    target = str(tmp_path / "bad.zip")
    with zipfile.ZipFile(synthetic_zip[0]) as z:
        text = z.read("tiny-imagenet-200/val/val_annotations.txt").decode()
    first = text.split("\t")[1]
    _rewrite_zip(synthetic_zip[0], target, {"tiny-imagenet-200/val/val_annotations.txt":
                                            text.replace(first, "n12345678", 1).encode()})
    with pytest.raises(UserError, match=r"val_annotations.txt:1: unknown class n12345678"):
        run_convert(target, str(tmp_path / "out"), [32], workers=1, show_progress=False)


def test_corrupt_jpeg_is_named_or_skipped(synthetic_zip, tmp_path):
    target = str(tmp_path / "bad.zip")
    wnid = synthetic_zip[1]["wnids"][0]
    name = f"tiny-imagenet-200/train/{wnid}/images/{wnid}_3.JPEG"
    _rewrite_zip(synthetic_zip[0], target, {name: b"\xff\xd8 not really a jpeg"})
    with pytest.raises(UserError, match=rf"{wnid}_3\.JPEG: unreadable or corrupt image") as refused:
        run_convert(target, str(tmp_path / "out"), [32], classes="1", workers=1, show_progress=False)
    assert "object at 0x" not in str(refused.value)  # no Python object repr in a user's message
    result = run_convert(target, str(tmp_path / "skip"), [32], classes="1", workers=2, skip_bad=True,
                         show_progress=False)[32]
    assert result["splits"]["train"]["num_examples"] == 29
    assert [s["file"] for s in result["skipped"]] == [name.split("/", 1)[1]]


def test_a_damaged_deflated_member_is_named_in_one_line(synthetic_zip, tmp_path):
    """Trial failure 5: a corrupt member of a deflated zip gave a zlib.error traceback."""
    target = str(tmp_path / "deflated.zip")
    wnid = synthetic_zip[1]["wnids"][0]
    name = f"tiny-imagenet-200/train/{wnid}/images/{wnid}_3.JPEG"
    with zipfile.ZipFile(synthetic_zip[0]) as old, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as new:
        for member in old.namelist():
            new.writestr(member, old.read(member))
    with zipfile.ZipFile(target) as z:
        info = z.getinfo(name)
    with open(target, "r+b") as handle:  # the member's compressed bytes start after its local header
        handle.seek(info.header_offset + 26)
        name_length, extra_length = np.frombuffer(handle.read(4), "<u2")
        handle.seek(info.header_offset + 30 + int(name_length) + int(extra_length))
        handle.write(b"\xff" * 8)
    with pytest.raises(UserError) as refused:
        run_convert(target, str(tmp_path / "out"), [32], classes="1", workers=1, show_progress=False)
    message = str(refused.value)
    assert message.startswith(f"{target}:{name}: cannot read (") and "\n" not in message, message
    assert "error" in message.lower() or "bad" in message.lower()


@pytest.mark.parametrize("where,line,expected", [
    ("boxes", "{name}\t1\t2\t30", r"_boxes.txt:1: bad box line .* \(expected 'name x0 y0 x1 y1'\)"),
    ("boxes", "{name}\t1\t2\tthirty\t40", r"_boxes.txt:1: bad box line"),
    ("val", "{name}\t{wnid}\t1\t2\t30", r"val_annotations.txt:1: bad box line .* \(expected 'name wnid x0 y0 x1 y1'\)"),
])
def test_a_box_line_of_the_wrong_length_is_named_with_its_line(synthetic_zip, tmp_path, where, line, expected):
    """Trial failure 7: a short line in a _boxes.txt gave a ValueError traceback; a val line with
    5 fields silently lost its box."""
    target = str(tmp_path / "bad.zip")
    wnid = synthetic_zip[1]["wnids"][0]
    path = (f"tiny-imagenet-200/train/{wnid}/{wnid}_boxes.txt" if where == "boxes"
            else "tiny-imagenet-200/val/val_annotations.txt")
    with zipfile.ZipFile(synthetic_zip[0]) as z:
        lines = z.read(path).decode().splitlines()
    name = lines[0].split("\t")[0]
    lines[0] = line.format(name=name, wnid=lines[0].split("\t")[1] if where == "val" else wnid)
    _rewrite_zip(synthetic_zip[0], target, {path: "\n".join(lines).encode()})
    with pytest.raises(UserError, match=expected):
        run_convert(target, str(tmp_path / "out"), [32], workers=1, show_progress=False)


def test_a_16_bit_grayscale_png_keeps_its_grey_levels():
    """Trial failure 11: a 16-bit grayscale PNG source was stored all white (PIL clips 16-bit
    values to 255 when it converts to RGB). Expected: round(v / 257), as 65535 is white."""
    from pipeline import imaging

    levels = (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(levels).save(buffer, format="PNG")
    image, mode = imaging.open_rgb(buffer.getvalue(), "a.png")
    assert mode.startswith("I") and mode in imaging.GRAYSCALE_MODES
    expected = np.rint(levels.astype(np.float64) / 257.0)
    got = np.asarray(image)
    assert got.shape == (64, 64, 3)
    for channel in range(3):
        np.testing.assert_array_equal(got[..., channel], expected)
    eight_bit = io.BytesIO()
    Image.fromarray((levels // 257).astype(np.uint8)).save(eight_bit, format="PNG")
    np.testing.assert_array_equal(np.asarray(imaging.open_rgb(eight_bit.getvalue(), "b.png")[0])[..., 0],
                                  levels // 257)


def test_output_folder_of_a_different_dataset(synthetic_zip, tmp_path):
    run_convert(synthetic_zip[0], str(tmp_path), [32], classes="1", workers=1, show_progress=False)
    with pytest.raises(UserError, match=r"32px/manifest.json: this folder holds a different conversion"):
        run_convert(synthetic_zip[0], str(tmp_path), [48, 32], classes="2", workers=1, show_progress=False)
    assert sorted(os.listdir(tmp_path)) == ["32px"]  # the refused conversion created no 48px folder


def test_resolutions_with_different_classes_in_one_folder_are_refused_by_convert_verify_and_train(
        synthetic_zip, tmp_path, capsys):
    """Trial failure 2: 32 px converted with 2 classes and 64 px with 3 into one folder passed
    verify and trained with labels that meant other classes at each stage."""
    path, info = synthetic_zip
    out = str(tmp_path / "records")
    run_convert(path, out, [32], classes="2", workers=1, show_progress=False)
    with pytest.raises(UserError, match=r"32px/manifest.json: lists other classes \(2\) than this conversion \(3\)"):
        run_convert(path, out, [64], classes="3", workers=1, show_progress=False)
    assert sorted(os.listdir(out)) == ["32px"]
    # the same class count, other classes (another order of the source's wnids): label 1 differs
    other = str(tmp_path / "other")
    run_convert(path, other, [64], classes=f"{info['wnids'][0]},{info['wnids'][3]}", workers=1, show_progress=False)
    shutil.copytree(os.path.join(other, "64px"), os.path.join(out, "64px"))  # assembled by hand
    said = []
    bad = verify.verify(out, report=said.append)
    expected = (f"{out}/32px and {out}/64px list different classes (label 1 is {info['wnids'][1]} and "
                f"{info['wnids'][3]}); convert every resolution from the same source with the same --classes")
    assert bad == [expected] and said[-1] == f"classes: {expected}"
    import train

    code = train.main(["--data", out, "--run-dir", str(tmp_path / "run"), "--backend", "tensorflow", "--quiet",
                       "--config", os.path.join(ROOT, "configs", "demo.toml"), "--set=stages.1.resolution=64",
                       "--set=stages.0.batch_size=8", "--set=stages.1.batch_size=8"])
    assert code == 2 and capsys.readouterr().err.strip().splitlines() == [f"error: {expected}"]


def test_zip_entry_escaping_its_folder_is_refused(tmp_path):
    evil = str(tmp_path / "evil.zip")
    synthetic.make_zip(evil, num_classes=1, train_per_class=2, val_per_class=1, test_images=0,
                       extra_files={"../../etc/evil.txt": b"owned"})
    with pytest.raises(UserError, match=r"refusing zip entry '../../etc/evil.txt'"):
        run_convert(evil, str(tmp_path / "out"), [32], show_progress=False)
    assert not (tmp_path / "out").exists()  # refused before anything was planned or written


def test_command_line_errors_are_one_line(tmp_path):
    missing = run_tool("convert", "--source", str(tmp_path / "missing.zip"), "--out", str(tmp_path))
    err = missing.stderr.strip()
    assert missing.returncode == 2 and err.count("\n") == 0 and "missing.zip: no such file or folder" in err
    refused = run_tool("convert", "--source", "x", "--out", str(tmp_path), "--resolutions", "big")
    assert refused.returncode == 2  # argparse's exit
    assert "--resolutions" in refused.stderr


def test_wnids_decide_the_class_count_not_200(tmp_path):
    path = str(tmp_path / "three.zip")
    synthetic.make_zip(path, num_classes=3, train_per_class=4, val_per_class=2, test_images=0)
    result = run_convert(path, str(tmp_path / "out"), [32], workers=1, show_progress=False)[32]
    assert len(result["classes"]) == 3 and result["splits"]["train"]["num_examples"] == 12


@pytest.mark.real_data
@pytest.mark.skipif(not os.environ.get("TINY_IMAGENET_ZIP"), reason="TINY_IMAGENET_ZIP not set")
def test_real_ten_class_slice(tmp_path):
    result = run_convert(os.environ["TINY_IMAGENET_ZIP"], str(tmp_path), [32, 64], show_progress=False)
    for manifest in result.values():
        assert manifest["splits"]["train"]["num_examples"] == 5000
        assert manifest["splits"]["val"]["num_examples"] == 500
        assert sum(manifest["grayscale_sources"].values()) > 0
    assert verify.verify(str(tmp_path), report=lambda *_: None) == []


def test_make_synthetic_writes_the_official_layout_into_a_new_folder(tmp_path):
    path = tmp_path / "new" / "folder" / "s.zip"
    synthetic.make_zip(str(path), num_classes=2, train_per_class=3, val_per_class=2, test_images=1)
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        wnids = z.read("tiny-imagenet-200/wnids.txt").decode()
        annotations = z.read("tiny-imagenet-200/val/val_annotations.txt").decode().split("\n")
    assert not wnids.endswith("\n") and len(wnids.split("\n")) == 2  # like the real file
    assert len([n for n in names if "/train/" in n and n.endswith(".JPEG")]) == 6
    assert len([n for n in names if n.endswith("_boxes.txt")]) == 2
    assert len([n for n in names if "/val/images/" in n]) == 4 and len([a for a in annotations if a]) == 4
    assert len([n for n in names if "/test/images/" in n]) == 1


CONVERT = [sys.executable, "-m", "tools.convert"]
ENV = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"}


def test_two_processes_write_byte_identical_shards(synthetic_zip, tmp_path):
    digests = []
    for name in ("a", "b"):
        out = str(tmp_path / name)
        result = subprocess.run([*CONVERT, "--source", synthetic_zip[0], "--out", out, "--resolutions", "32",
                                 "--shards-per-split", "3", "--workers", "1"], env=ENV, cwd=ROOT,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        manifest = json.load(open(os.path.join(out, "32px", "manifest.json")))
        digests.append([(s["file"], s["sha256"]) for split in manifest["splits"].values() for s in split["shards"]])
    assert digests[0] == digests[1]


def _children(pid):
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry))
    return found


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _recorded_shards(out: str) -> int:
    try:
        manifest = json.load(open(os.path.join(out, "64px", "manifest.json")))
    except (OSError, ValueError):
        return 0
    return sum(len(split["shards"]) for split in manifest["splits"].values())


@pytest.mark.slow
def test_kill_9_of_the_converter_takes_its_workers_with_it_and_a_rerun_is_byte_identical(tmp_path):
    """A real kill -9 mid-conversion (some shards recorded, others not): the workers die with it,
    and the same command again finishes into shards byte-identical to a clean conversion's."""
    source = str(tmp_path / "big.zip")
    synthetic.make_zip(source, num_classes=4, train_per_class=400, val_per_class=10, test_images=0, seed=2)
    out = str(tmp_path / "out")
    command = [*CONVERT, "--source", source, "--out", out, "--resolutions", "32,48,64", "--workers", "2",
               "--shards-per-split", "8"]
    process = subprocess.Popen(command, env=ENV, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    workers = []
    while time.time() < deadline and (len(workers) < 2 or _recorded_shards(out) < 1):
        workers = workers if len(workers) >= 2 else [
            c for c in _children(process.pid) if "spawn_main" in open(f"/proc/{c}/cmdline").read()]
        time.sleep(0.05)
    assert len(workers) >= 2, "the converter never started its workers"
    assert process.poll() is None, "the conversion ended before the kill"
    process.kill()
    process.wait(timeout=30)
    deadline = time.time() + 15
    while time.time() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.2)
    assert not any(_alive(w) for w in workers)
    recorded = _recorded_shards(out)
    assert 1 <= recorded < 2 * 8, recorded  # killed part-way: train and val have 8 shards each
    assert json.load(open(os.path.join(out, "64px", "manifest.json")))["complete"] is False

    again = subprocess.run(command, env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    clean = str(tmp_path / "clean")
    run_convert(source, clean, [32, 48, 64], shards_per_split=8, workers=1, show_progress=False)
    for resolution in (32, 48, 64):
        folder = f"{resolution}px"
        assert _digests(os.path.join(out, folder)) == _digests(os.path.join(clean, folder)), folder
        assert len(_digests(os.path.join(out, folder))) == 16
        assert manifests.read(out, resolution)["mean"] == manifests.read(clean, resolution)["mean"]
    assert verify.verify(out, report=lambda *_: None) == []
