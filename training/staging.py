"""`--stage-data LOCAL_DIR`: copy the resolutions a run needs from Drive to local disk, once.

Reading shards from a mounted Drive is slow and erratic (it stalls for seconds), which starves
the accelerator. Copying once to the VM's disk costs about a minute for all of 64 px. Files
already there with the right sha256 are kept, so a restarted runtime copies only what is missing;
each copy is checked against the manifest before it is used.
"""

from __future__ import annotations

import posixpath

from pipeline import manifest as manifests
from pipeline.errors import DataError


def stage(source: str, target: str, resolutions, log=print) -> str:
    import tensorflow as tf

    from pipeline.manifest import sha256_of

    for resolution in sorted(set(resolutions)):
        manifest = manifests.load(source, resolution)
        folder = manifests.resolution_dir(target, resolution)
        tf.io.gfile.makedirs(folder)
        copied = 0
        for split, info in manifest["splits"].items():
            for shard in info["shards"]:
                local = posixpath.join(folder, shard["file"])
                if tf.io.gfile.exists(local) and sha256_of(local) == shard["sha256"]:
                    continue
                tf.io.gfile.copy(posixpath.join(manifests.resolution_dir(source, resolution), shard["file"]),
                                 local + ".tmp", overwrite=True)
                if sha256_of(local + ".tmp") != shard["sha256"]:
                    raise DataError(f"{local}: copy from {source} does not match the manifest's sha256 ({split})")
                tf.io.gfile.rename(local + ".tmp", local, overwrite=True)
                copied += 1
        manifests.write_json(posixpath.join(folder, manifests.NAME), manifest)
        log(f"staged {resolution}px to {folder}: {copied} shard(s) copied, the rest already there")
    return target
