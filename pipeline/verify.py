"""Re-read every shard of every resolution of a converted folder and check it against its manifest.

Library code so that the command line (tools/verify.py), the tests and a notebook check a copy the
same way. Per `<res>px` folder: its manifest exists and is complete; per shard: the file exists,
its sha256 and record count match the manifest, and every record parses and decodes to the
stated resolution, through the one read stage (`pipeline.read.decode`). Useful after copying
records between Drive, a bucket and local disk.
"""

from __future__ import annotations

from common import files
from common.errors import UserError
from pipeline import manifest as manifests
from pipeline.data_folder import DataFolder, differing_classes


def resolutions_in(data_dir: str) -> list[int]:
    """The resolutions of the `<res>px` folders inside (with or without a manifest)."""
    if not files.gfile().isdir(data_dir):
        raise UserError(f"{data_dir}: no such folder")
    found = manifests.resolution_folders(data_dir)  # with or without a manifest: a missing one is reported
    if not found:
        raise UserError(f"{data_dir}: no <res>px folder inside; is this a converted folder?")
    return sorted(found)


def check_shard(folder: DataFolder, path: str, expected: dict) -> str | None:
    """None if the shard is good, else why not."""
    import tensorflow as tf

    from pipeline import read

    if not files.gfile().exists(path):
        return "missing"
    if files.sha256_of(path) != expected["sha256"]:
        return "sha256 differs from the manifest"
    count = 0
    try:
        for batch in tf.data.TFRecordDataset(path).batch(512):
            read.decode(batch, folder.encoding, folder.resolution)
            count += int(tf.shape(batch)[0])
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as error:
        return f"unreadable record ({error.message.splitlines()[0][:120]})"
    if count != expected["num_examples"]:
        return f"{count} records, manifest says {expected['num_examples']}"
    return None


def verify(data_dir: str, report=print) -> list[str]:
    """Bad shard paths with reasons (empty when all is well); a line per split to `report`."""
    bad, opened = [], []
    for resolution in resolutions_in(data_dir):
        try:
            folder = DataFolder.open(data_dir, resolution)
        except UserError as error:  # missing, unfinished or not a manifest: that folder is bad
            bad.append(str(error))
            report(f"{resolution}px: {str(error).split(': ', 1)[-1]}")
            continue
        opened.append(folder)
        for split, info in folder.manifest["splits"].items():
            shards = folder.shards(split)
            paths = [files.join(folder.folder, shard["file"]) for shard in shards]
            problems = [(p, check_shard(folder, p, s)) for p, s in zip(paths, shards)]
            problems = [f"{p}: {why}" for p, why in problems if why]
            if sum(s["num_examples"] for s in shards) != info["num_examples"]:
                problems.append(f"{resolution}px {split}: shard counts do not add up to num_examples")
            bad += problems
            status = "ok" if not problems else f"{len(problems)} bad"
            report(f"{resolution}px {split}: {len(paths)} shards, {info['num_examples']} examples: {status}")
    different = differing_classes(opened) if opened else None
    if different:  # each resolution may be sound, and a run over them wrong
        bad.append(different)
        report(f"classes: {different}")
    return bad
