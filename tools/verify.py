"""Re-read every shard of every resolution and check it against its manifest.

    python -m tools.verify /content/drive/MyDrive/tin

Checks, per `<res>px` folder: its manifest exists and is complete; per shard: the file exists,
its sha256 and record count match the manifest, and every record parses and decodes to the
stated resolution. Exits 1 and names the bad shards otherwise; useful after copying records
between Drive, a bucket and local disk.
"""

from __future__ import annotations

import argparse
import posixpath
import sys

from common import files
from common.cli import command_line
from common.errors import UserError
from pipeline import manifest as manifests


def resolutions_in(data_dir: str) -> list[int]:
    import tensorflow as tf

    if not tf.io.gfile.isdir(data_dir):
        raise UserError(f"{data_dir}: no such folder")
    found = []
    for name in tf.io.gfile.listdir(data_dir):
        name = name.rstrip("/")
        if name.endswith("px") and name[:-2].isdigit() and tf.io.gfile.isdir(posixpath.join(data_dir, name)):
            found.append(int(name[:-2]))  # with or without a manifest: a missing one is reported
    if not found:
        raise UserError(f"{data_dir}: no <res>px folder inside; is this a converted folder?")
    return sorted(found)


def check_shard(path: str, expected: dict, encoding: str, resolution: int) -> str | None:
    """None if the shard is good, else why not."""
    import tensorflow as tf

    from pipeline import records

    if not tf.io.gfile.exists(path):
        return "missing"
    if files.sha256_of(path) != expected["sha256"]:
        return "sha256 differs from the manifest"
    count = 0
    try:
        dataset = tf.data.TFRecordDataset(path).batch(512)
        for batch in dataset:
            parsed = records.parse_batch(batch)
            records.decode_images(parsed["image"], encoding, resolution)
            count += int(tf.shape(batch)[0])
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as error:
        return f"unreadable record ({error.message.splitlines()[0][:120]})"
    if count != expected["num_examples"]:
        return f"{count} records, manifest says {expected['num_examples']}"
    return None


def verify(data_dir: str, report=print) -> list[str]:
    """Bad shard paths with reasons (empty when all is well)."""
    bad = []
    for resolution in resolutions_in(data_dir):
        try:
            manifest = manifests.read(data_dir, resolution)
        except UserError as error:  # missing, unfinished or not a manifest: that folder is bad
            bad.append(str(error))
            report(f"{resolution}px: {str(error).split(': ', 1)[-1]}")
            continue
        for split, info in manifest["splits"].items():
            paths = manifests.shard_paths(data_dir, resolution, manifest, split)
            problems = [(p, check_shard(p, s, manifest["encoding"], resolution))
                        for p, s in zip(paths, info["shards"])]
            problems = [f"{p}: {why}" for p, why in problems if why]
            if sum(s["num_examples"] for s in info["shards"]) != info["num_examples"]:
                problems.append(f"{resolution}px {split}: shard counts do not add up to num_examples")
            bad += problems
            status = "ok" if not problems else f"{len(problems)} bad"
            report(f"{resolution}px {split}: {len(paths)} shards, {info['num_examples']} examples: {status}")
    return bad


@command_line
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", help="the converter's output folder")
    args = parser.parse_args(argv)
    bad = verify(args.data)
    for line in bad:
        print(f"BAD {line}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
