"""`<out>/<res>px/manifest.json`: what a converted folder holds, read by every later stage.

The pipeline takes example counts and normalisation from here, never by scanning the shards.
The converter also uses the manifest as its journal: it is rewritten (atomically, under a
temporary name) after every finished shard with `"complete": false`, so a conversion that a
Colab disconnect interrupted resumes where it stopped.
"""

from __future__ import annotations

import posixpath

from common import files
from common.errors import UserError

FORMAT_VERSION = 1
NAME = "manifest.json"


def resolution_dir(data_dir: str, resolution: int) -> str:
    return posixpath.join(data_dir.rstrip("/"), f"{int(resolution)}px")


def read(data_dir: str, resolution: int, require_complete: bool = True) -> dict:
    """The manifest of one resolution, checked enough that later code can trust its fields."""
    path = posixpath.join(resolution_dir(data_dir, resolution), NAME)
    manifest = files.read_json(path)
    if manifest is None:
        raise UserError(f"{path}: missing; convert first with python -m tools.convert --resolutions {resolution}")
    for key in ("format_version", "resolution", "encoding", "classes", "splits"):
        if key not in manifest:
            raise UserError(f"{path}: not a converter manifest (no {key!r})")
    if manifest["format_version"] > FORMAT_VERSION:
        raise UserError(f"{path}: format_version {manifest['format_version']} is newer than this code")
    if require_complete and not manifest.get("complete", False):
        raise UserError(f"{path}: conversion unfinished; run the same tools.convert command again to resume")
    return manifest


def shard_paths(data_dir: str, resolution: int, manifest: dict, split: str) -> list[str]:
    if split not in manifest["splits"]:
        raise UserError(f"{resolution_dir(data_dir, resolution)}: no {split!r} split "
                        f"(has {', '.join(manifest['splits'])})")
    folder = resolution_dir(data_dir, resolution)
    return [posixpath.join(folder, s["file"]) for s in manifest["splits"][split]["shards"]]
