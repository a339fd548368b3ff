"""`<out>/<res>px/manifest.json`: what a converted folder holds, read by every later stage.

The pipeline takes example counts and normalisation from here, never by scanning the shards.
The converter also uses the manifest as its journal: it is rewritten (atomically, under a
temporary name) after every finished shard with `"complete": false`, so a conversion that a
Colab disconnect interrupted resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import posixpath

from pipeline import atomic
from pipeline.errors import DataError

FORMAT_VERSION = 1
NAME = "manifest.json"


def resolution_dir(data_dir: str, resolution: int) -> str:
    return posixpath.join(data_dir.rstrip("/"), f"{int(resolution)}px")


def _gfile():
    import tensorflow as tf  # deferred: the converter's worker processes never need TensorFlow

    return tf.io.gfile


def sha256_of(path: str) -> str:
    """The sha256 of a file anywhere tf.io.gfile reaches (local, Drive, gs://)."""
    digest = hashlib.sha256()
    with _gfile().GFile(path, "rb") as handle:
        while block := handle.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def read_json(path: str) -> dict | None:
    """The parsed file, or None if it does not exist; a DataError naming it if it is not JSON."""
    gfile = _gfile()
    if not gfile.exists(path):
        return None
    try:
        with gfile.GFile(path, "r") as handle:
            return json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: not valid JSON ({error})") from None


def write_json(path: str, data: dict) -> None:
    """Write under a temporary name, then rename: a reader never sees half a file."""
    atomic.write_text(path, json.dumps(data, indent=1, sort_keys=False))


def load(data_dir: str, resolution: int, require_complete: bool = True) -> dict:
    """The manifest of one resolution, checked enough that later code can trust its fields."""
    path = posixpath.join(resolution_dir(data_dir, resolution), NAME)
    manifest = read_json(path)
    if manifest is None:
        raise DataError(f"{path}: missing; convert first with python -m tools.convert --resolutions {resolution}")
    for key in ("format_version", "resolution", "encoding", "classes", "splits"):
        if key not in manifest:
            raise DataError(f"{path}: not a converter manifest (no {key!r})")
    if manifest["format_version"] > FORMAT_VERSION:
        raise DataError(f"{path}: format_version {manifest['format_version']} is newer than this code")
    if require_complete and not manifest.get("complete", False):
        raise DataError(f"{path}: conversion unfinished; run the same tools.convert command again to resume")
    return manifest


def shard_paths(data_dir: str, resolution: int, manifest: dict, split: str) -> list[str]:
    if split not in manifest["splits"]:
        raise DataError(f"{resolution_dir(data_dir, resolution)}: no {split!r} split "
                        f"(has {', '.join(manifest['splits'])})")
    folder = resolution_dir(data_dir, resolution)
    return [posixpath.join(folder, s["file"]) for s in manifest["splits"][split]["shards"]]
