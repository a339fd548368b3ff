"""Every input path answers bad input with one line naming the file or option, and exit code 2.

Each case here was a traceback, a wrong exit code or a silent acceptance before.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest

from common.errors import UserError, describe
from pipeline import benchmark, order_stats, statistics
from tests.conftest import ROOT, run_tool, stderr_lines
from training import config as configs

STAGE = "[[stages]]\nresolution = 32\nepochs = 5\nbatch_size = 16\n"


@pytest.mark.parametrize("override,message", [
    ("schedule.gamma=0", r"schedule.gamma = 0.0: must be in \(0, 1\]"),
    ("schedule.gamma=1.5", r"schedule.gamma = 1.5: must be in \(0, 1\]"),
    ("optimizer.momentum=5", r"optimizer.momentum = 5.0: must be in \[0, 1\)"),
    ("runtime.steps_per_execution=-1", r"runtime.steps_per_execution = -1: must be 0"),
    ("runtime.val_steps=-2", r"runtime.val_steps = -2: must be 0 \(the whole val split\)"),
    ("schedule.max_lr=inf", r"schedule.max_lr = inf: must be a finite number"),
    ("label_smoothing=nan", r"label_smoothing = nan: must be a finite number"),
    ("model.x=1", r"--set 'model.x=1': model is a single value \('resnet18'\), not a table"),
    ("augment.policy=5", r"augment.policy: expected a string or a list of augmentations, got 5"),
    ("augment.hard_fraction=1.5", r"augment.hard_fraction = 1.5: must be in \[0, 1\)"),
    # trial failure 8: accepted, then a traceback once training began
    ("seed=-1", r"seed = -1: must be in \[0, 2\*\*32\)"),
    ("seed=4294967296", r"seed = 4294967296: must be in \[0, 2\*\*32\)"),
])
def test_impossible_settings_are_one_line_naming_the_key(tmp_path, override, message):
    path = tmp_path / "c.toml"
    path.write_text('model = "resnet18"\n' + STAGE)
    with pytest.raises(UserError, match=message) as refused:
        configs.read(str(path), [override])
    assert "\n" not in str(refused.value)


@pytest.fixture
def damaged(converted, tmp_path):
    """A copy of the converted records whose tools can be broken one shard at a time."""
    copy = str(tmp_path / "copy")
    shutil.copytree(converted[0], copy)
    return copy


def corrupt_in_place(path):
    """Flip bytes in the middle of a record: the size stays, the record's CRC fails."""
    with open(path, "r+b") as handle:
        handle.seek(os.path.getsize(path) // 2)
        chunk = handle.read(64)
        handle.seek(os.path.getsize(path) // 2)
        handle.write(bytes(b ^ 0xFF for b in chunk))


def quiet(*_):
    pass


# The work of each tool, called as its command line calls it ...
TOOLS = {
    "benchmark": lambda data: benchmark.measure(data, 32, benchmark.Settings(
        batch_size=16, names=("flip",), seconds=0.2, repeats=1, baseline=None), report=quiet),
    "stats": lambda data: statistics.report(data, 32, os.path.join(data, "s"), log=quiet),
    "order_stats": lambda data: order_stats.measure(data, 32, batch_size=16, log=quiet),
}
# ... and the command lines themselves.
COMMANDS = {
    "benchmark": lambda data: ["--data", data, "--resolution", "32", "--batch-size", "16", "--augment", "flip",
                               "--seconds", "0.2", "--repeats", "1", "--baseline", "none"],
    "stats": lambda data: ["--data", data, "--resolution", "32", "--out", os.path.join(data, "s")],
    "order_stats": lambda data: ["--data", data, "--resolution", "32", "--batch-size", "16"],
}
SHARD = "train-00001-of-00003.tfrecord"


@pytest.mark.parametrize("tool", list(TOOLS))
@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_tools_name_a_missing_or_corrupt_shard(damaged, tool, damage):
    shard = os.path.join(damaged, "32px", SHARD)
    if damage == "missing":
        os.remove(shard)
    else:
        corrupt_in_place(shard)
    with pytest.raises(Exception) as refused:
        TOOLS[tool](damaged)
    line = describe(refused.value)  # what the command line prints after "error: ", or None for a bug
    assert line is not None and "\n" not in line and SHARD in line, line


def test_each_tool_reports_it_in_one_error_line_with_exit_code_2(damaged):
    os.remove(os.path.join(damaged, "32px", SHARD))
    for tool, args in COMMANDS.items():
        result = run_tool(tool, *args(damaged))
        err = stderr_lines(result)
        assert result.returncode == 2, (tool, result.stderr[-2000:])
        assert len(err) == 1 and err[0].startswith("error: ") and SHARD in err[0], (tool, err)


def test_a_corrupt_shard_is_one_error_line_with_exit_code_2(damaged):
    corrupt_in_place(os.path.join(damaged, "32px", SHARD))
    result = run_tool("stats", *COMMANDS["stats"](damaged))
    err = stderr_lines(result)
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(err) == 1 and err[0].startswith("error: ") and SHARD in err[0], err


def test_verify_fails_on_a_resolution_without_its_manifest(damaged):
    os.remove(os.path.join(damaged, "64px", "manifest.json"))
    result = run_tool("verify", damaged)
    assert result.returncode == 1
    assert "64px/manifest.json: missing" in result.stderr


def test_an_output_folder_that_cannot_be_created_is_one_line(synthetic_zip, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    result = run_tool("convert", "--source", synthetic_zip[0], "--out", str(blocker / "records"), "--resolutions",
                      "32", "--classes", "1", "--workers", "1")
    err = stderr_lines(result)
    assert result.returncode == 2 and len(err) == 1 and err[0].startswith("error: ") and "a_file" in err[0], err


@pytest.mark.parametrize("spec,message", [
    ("rotate:m=inf", r"rotate: p and m must be finite numbers"),
    ([{"name": 5}], r"name 5 is not an augmentation's name"),
    ([{"name": "rotate", "p": [1]}], r"rotate: p and m must be numbers"),
    # trial failure 13: magnitudes were never range-checked and trained silently
    ("noise:m=1e30", r"noise: m=1e\+30 outside \[0, 1\] \(default 0.04\)"),
    ("hue:m=-5", r"hue: m=-5 outside \[0, 1\]"),
    ("cutout:m=5", r"cutout: m=5 outside \[0, 1\]"),
    ("posterize:m=0", r"posterize: m=0 outside \[1, 7\]"),
    ("rotate:m=720", r"rotate: m=720 outside \[0, 180\]"),
    ("mixup:m=0", r"mixup: m=0 outside \[0.01, 10\]"),
    ("flip:m=2", r"flip: takes no magnitude \(m=2 would be ignored\)"),
    ("posterize:m=2.5", r"posterize: m=2.5 must be a whole number"),
])
def test_impossible_policies_are_one_line(spec, message):
    from pipeline import policy

    with pytest.raises(UserError, match=message):
        policy.parse(spec)


def test_an_io_error_raised_inside_a_graph_is_reported_by_its_path(tmp_path):
    """Inside tf.function or fit, TensorFlow's message starts with 'Graph execution error:'."""
    import tensorflow as tf

    from common.errors import describe

    missing = str(tmp_path / "gone.tfrecord")

    @tf.function
    def read():
        return tf.io.read_file(missing)

    with pytest.raises(tf.errors.NotFoundError) as raised:
        read()
    line = describe(raised.value)
    assert line.startswith("NotFoundError: ") and "gone.tfrecord" in line and "Graph execution" not in line
    assert describe(ValueError("a bug")) is None  # programming errors keep their traceback
    assert describe(tf.errors.InvalidArgumentError(None, None, "shape mismatch")) is None


GARBLED = {
    "no mean": (lambda m: m.pop("mean"), "damaged (mean: expected 3 numbers)"),
    "format_version as text": (lambda m: m.update(format_version="1"), "format_version '1': expected a whole number"),
    "no classes": (lambda m: m.update(classes=[]), "damaged (classes: expected a non-empty list of {wnid, words})"),
    "a shard without its sha256": (lambda m: m["splits"]["train"]["shards"][0].pop("sha256"),
                                   "damaged (splits.train: a shard without its file, sha256 or num_examples)"),
    "counts of another class list": (lambda m: m["splits"]["val"].update(class_counts=[1, 2]),
                                     "damaged (splits.val.class_counts: expected one count per class (6))"),
}


@pytest.mark.parametrize("garble", list(GARBLED))
def test_a_garbled_manifest_is_one_line_naming_it_in_every_tool(damaged, garble, capsys):
    """Trial failure 4: a garbled manifest gave tracebacks in train, benchmark, analyze and
    lr_find while verify exited 0. Each tool's command line runs in this process (`main`)."""
    import train
    from tools import analyze, lr_find, verify
    from tools import benchmark as benchmark_tool

    path = os.path.join(damaged, "32px", "manifest.json")
    manifest = json.load(open(path))
    change, expected = GARBLED[garble]
    change(manifest)
    with open(path, "w") as handle:
        json.dump(manifest, handle)
    runs = {
        "verify": lambda: verify.main([damaged]),
        "benchmark": lambda: benchmark_tool.main(["--data", damaged, "--resolution", "32", "--batch-size", "8",
                                                  "--augment", "flip", "--epochs", "1", "--baseline", "none"]),
        "lr_find": lambda: lr_find.main(["--data", damaged, "--model", "resnet_tiny", "--resolution", "32",
                                         "--batch-size", "8",
                                         "--out", os.path.join(damaged, "lr")]),
        "analyze": lambda: analyze.main(["--data", damaged, "--run-dir", os.path.join(damaged, "no_run"),
                                         "--resolution", "32"]),
        "train": lambda: train.main(["--data", damaged, "--run-dir", os.path.join(damaged, "run"), "--quiet",
                                     "--backend", "tensorflow", "--config", os.path.join(ROOT, "configs", "demo.toml"),
                                     "--set=stages.0.batch_size=8", "--set=stages.1.resolution=32",
                                     "--set=stages.1.batch_size=8"]),
    }
    for tool, run in runs.items():
        code = run()
        err = [line for line in capsys.readouterr().err.strip().splitlines()
               if line.startswith(("error: ", "BAD ")) or "Traceback" in line]  # verify: BAD <what>, exit 1
        assert code in (1, 2) and len(err) >= 1, (tool, code, err)
        assert any(path in line and expected in line for line in err), (tool, err)
        assert not any("Traceback" in line for line in err), (tool, err)
        assert (code, len(err)) == ((1, 1) if tool == "verify" else (2, 1)), (tool, err)
