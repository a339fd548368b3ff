"""`--stage-data LOCAL_DIR`: copy the resolutions a run needs from Drive to local disk, once.

Reading shards from a mounted Drive is slow and erratic (it stalls for seconds), which starves
the accelerator. Copying once to the VM's disk costs about a minute for all of 64 px. Files
already there with the right sha256 are kept, so a restarted runtime copies only what is missing;
each copy is checked against the manifest before it is used.
"""

from __future__ import annotations

import posixpath

from common import files
from common.errors import UserError
from pipeline import manifest as manifests


def stage(source: str, target: str, resolutions, log=print) -> str:
    for resolution in sorted(set(resolutions)):
        manifest = manifests.read(source, resolution)
        folder = manifests.resolution_dir(target, resolution)
        files.gfile().makedirs(folder)
        copied = 0
        for split, info in manifest["splits"].items():
            for shard in info["shards"]:
                local = posixpath.join(folder, shard["file"])
                if files.gfile().exists(local) and files.sha256_of(local) == shard["sha256"]:
                    continue
                with files.replacing(local) as partial:
                    files.gfile().copy(posixpath.join(manifests.resolution_dir(source, resolution), shard["file"]),
                                       partial, overwrite=True)
                    if files.sha256_of(partial) != shard["sha256"]:
                        raise UserError(f"{local}: copy from {source} does not match the manifest's sha256 ({split})")
                copied += 1
        files.write_json(posixpath.join(folder, manifests.NAME), manifest)
        log(f"staged {resolution}px to {folder}: {copied} shard(s) copied, the rest already there")
    return target
