"""`<out>/<res>px/manifest.json`: what a converted folder holds, read by every later stage.

The pipeline takes example counts and normalisation from here, never by scanning the shards.
The converter also uses the manifest as its journal: it is rewritten (atomically, under a
temporary name) after every finished shard with `"complete": false`, so a conversion that a
Colab disconnect interrupted resumes where it stopped. This module owns the schema both ways:
`ResolutionOutput` writes it during a conversion, `read` checks it for every later stage.
"""

from __future__ import annotations

import posixpath

import numpy as np

from common import files
from common.errors import UserError

FORMAT_VERSION = 1
NAME = "manifest.json"


def resolution_dir(data_dir: str, resolution: int) -> str:
    return posixpath.join(data_dir.rstrip("/"), f"{int(resolution)}px")


def resolution_folders(data_dir: str) -> list[int]:
    """The resolutions of the `<res>px` folders inside `data_dir` (with or without a manifest),
    sorted; none when it is not a folder."""
    gfile = files.gfile()
    if not gfile.isdir(data_dir):
        return []
    names = (name.rstrip("/") for name in gfile.listdir(data_dir))
    return sorted(int(name[:-2]) for name in names if name.endswith("px") and name[:-2].isdigit()
                  and gfile.isdir(files.join(data_dir, name)))


def read(data_dir: str, resolution: int, require_complete: bool = True) -> dict:
    """The manifest of one resolution, checked enough that later code can trust its fields."""
    path = posixpath.join(resolution_dir(data_dir, resolution), NAME)
    manifest = files.read_json(path)
    if manifest is None:
        raise UserError(f"{path}: missing; convert first with python -m tools.convert --resolutions {resolution}")
    if not isinstance(manifest, dict):
        raise UserError(f"{path}: not a converter manifest (a JSON object is expected)")
    for key in ("format_version", "resolution", "encoding", "classes", "splits"):
        if key not in manifest:
            raise UserError(f"{path}: not a converter manifest (no {key!r})")
    if not _whole(manifest["format_version"]) or manifest["format_version"] < 1:
        raise UserError(f"{path}: format_version {manifest['format_version']!r}: expected a whole number")
    if manifest["format_version"] > FORMAT_VERSION:
        raise UserError(f"{path}: format_version {manifest['format_version']} is newer than this code")
    if require_complete and manifest.get("complete", False) is not True:
        raise UserError(f"{path}: conversion unfinished; run the same tools.convert command again to resume")
    if manifest.get("complete") is True:
        problem = _problem(manifest)
        if problem:
            raise UserError(f"{path}: damaged ({problem}); convert again into a new --out")
    return manifest


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _numbers(value, count: int, positive: bool = False) -> bool:
    import math

    return isinstance(value, list) and len(value) == count and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and (v > 0 or not positive)
        for v in value)


def _problem(manifest: dict) -> str | None:
    """What a finished conversion's manifest lacks that later stages read, or None. A hand-edited
    or damaged file is named here, once, instead of as a traceback in whichever tool reads the
    missing field first."""
    if not _whole(manifest["resolution"]) or manifest["resolution"] < 1:
        return f"resolution {manifest['resolution']!r}"
    if manifest["encoding"] not in ("raw", "jpeg"):  # pipeline/records.py ENCODINGS (which imports TensorFlow)
        return f"encoding {manifest['encoding']!r}"
    classes = manifest["classes"]
    if not isinstance(classes, list) or not classes or not all(
            isinstance(c, dict) and isinstance(c.get("wnid"), str) for c in classes):
        return "classes: expected a non-empty list of {wnid, words}"
    if not _numbers(manifest.get("mean"), 3):
        return "mean: expected 3 numbers"
    if not _numbers(manifest.get("std"), 3, positive=True):
        return "std: expected 3 positive numbers"
    splits = manifest["splits"]
    if not isinstance(splits, dict) or "train" not in splits:
        return "splits: no 'train'"
    for name, split in splits.items():
        if not isinstance(split, dict) or not isinstance(split.get("shards"), list) or not _whole(
                split.get("num_examples")) or split["num_examples"] < 0:
            return f"splits.{name}: expected num_examples and a list of shards"
        for shard in split["shards"]:
            if not isinstance(shard, dict) or not isinstance(shard.get("file"), str) or not isinstance(
                    shard.get("sha256"), str) or not _whole(shard.get("num_examples")) or shard["num_examples"] < 0:
                return f"splits.{name}: a shard without its file, sha256 or num_examples"
        if sum(shard["num_examples"] for shard in split["shards"]) != split["num_examples"]:
            return f"splits.{name}: num_examples is not the sum of its shards'"
        counts = split.get("class_counts")
        if name != "test" and not (isinstance(counts, list) and len(counts) == len(classes)
                                   and all(_whole(c) and c >= 0 for c in counts)):
            return f"splits.{name}.class_counts: expected one count per class ({len(classes)})"
    return None


def shard_paths(data_dir: str, resolution: int, manifest: dict, split: str) -> list[str]:
    if split not in manifest["splits"]:
        raise UserError(f"{resolution_dir(data_dir, resolution)}: no {split!r} split "
                        f"(has {', '.join(manifest['splits'])})")
    folder = resolution_dir(data_dir, resolution)
    return [posixpath.join(folder, s["file"]) for s in manifest["splits"][split]["shards"]]


def header(resolution: int, encoding: str, classes: list[dict], source: dict, seed: int, fingerprint: str) -> dict:
    """What a conversion fixes before its first shard: `classes` [{wnid, words}] in label order,
    `source` {location, kind, num_source_classes}, `fingerprint` what tells conversions apart."""
    return {"format_version": FORMAT_VERSION, "resolution": resolution, "encoding": encoding, "classes": classes,
            "source": source, "seed": seed, "fingerprint": fingerprint}


class ResolutionOutput:
    """The journal of one `<out>/<res>px` folder during a conversion: the header, an entry per
    shard written (its sha256, size, class counts and pixel sums), then the totals.

    It lives beside `read` so that one module owns the manifest's schema, written and read.
    """

    def __init__(self, out: str, resolution: int, header: dict, plan: dict[str, list]):
        """Checks only: the folder is created by `open`, once every resolution has been accepted,
        so a refused conversion leaves nothing behind. `plan`: the shards (lists of entries) of
        every split."""
        self.folder = resolution_dir(out, resolution)
        self.path = posixpath.join(self.folder, NAME)
        existing = files.read_json(self.path)
        if existing is not None and existing.get("fingerprint") != header["fingerprint"]:
            raise UserError(
                f"{self.path}: this folder holds a different conversion (other source, classes or "
                f"settings); choose another --out or delete it")
        self.manifest = existing or {**header, "complete": False, "splits": {}}
        self.manifest["complete"] = False
        self.plan = plan
        for split, shards in plan.items():
            self.manifest["splits"].setdefault(split, {"num_examples": 0, "shards": []})
            known = self.manifest["splits"][split]["shards"]
            count = len(shards)
            self.manifest["splits"][split]["shards"] = [s for s in known if self._shard_ok(s, count)]

    def open(self) -> None:
        files.gfile().makedirs(self.folder)

    def _shard_ok(self, shard: dict, count: int) -> bool:
        path = posixpath.join(self.folder, shard["file"])
        return shard["file"].endswith(f"-of-{count:05d}.tfrecord") and files.gfile().exists(path) \
            and files.sha256_of(path) == shard["sha256"]

    def shard_path(self, split: str, index: int) -> str:
        """Where shard `index` of a split is written."""
        return posixpath.join(self.folder, self._name(split, index))

    def _name(self, split: str, index: int) -> str:
        from pipeline import records

        return records.shard_name(split, index, len(self.plan[split]))

    def done(self, split: str, index: int) -> bool:
        name = self._name(split, index)
        return any(s["file"] == name for s in self.manifest["splits"][split]["shards"])

    def add(self, split: str, index: int, sha256: str, result: dict, stats: dict) -> None:
        """Record a shard just written (with this sha256): `result` is the shard worker's answer,
        `stats` its part for this resolution. The manifest is rewritten at once."""
        name = self._name(split, index)
        class_counts = np.bincount([e[1] for e in stats["examples"] if e[1] >= 0],
                                   minlength=len(self.manifest["classes"])).tolist()
        size = files.gfile().stat(posixpath.join(self.folder, name)).length
        entry = {"file": name, "num_examples": len(stats["examples"]), "sha256": sha256, "bytes": size,
                 "class_counts": class_counts, "grayscale_sources": result["grayscale"], "skipped": result["skipped"],
                 "channel_sum": stats["sum"], "channel_sumsq": stats["sumsq"], "pixels": stats["pixels"]}
        shards = self.manifest["splits"][split]["shards"]
        shards.append(entry)
        shards.sort(key=lambda s: s["file"])
        files.write_json(self.path, self.manifest)

    def finish(self) -> dict:
        """Totals per split, the train split's mean and std, and `complete: true`."""
        m = self.manifest
        for split, info in m["splits"].items():
            info["num_examples"] = sum(s["num_examples"] for s in info["shards"])
            if split != "test":  # unlabeled
                info["class_counts"] = np.sum([s["class_counts"] for s in info["shards"]], axis=0).tolist()
        train = m["splits"]["train"]["shards"]
        pixels = sum(s["pixels"] for s in train)
        total = np.sum([s["channel_sum"] for s in train], axis=0)
        total_sq = np.sum([s["channel_sumsq"] for s in train], axis=0)
        mean = total / pixels
        m["mean"] = [round(float(v), 4) for v in mean]
        m["std"] = [round(float(v), 4) for v in np.sqrt(np.maximum(total_sq / pixels - mean ** 2, 0))]
        m["grayscale_sources"] = {s: sum(x["grayscale_sources"] for x in i["shards"]) for s, i in m["splits"].items()}
        m["skipped"] = [k for i in m["splits"].values() for s in i["shards"] for k in s["skipped"]]
        m["complete"] = True
        files.write_json(self.path, m)
        return m
