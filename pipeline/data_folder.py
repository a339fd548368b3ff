"""One converted resolution folder (`<data>/<res>px`), loaded once, and the splits a run reads
from it, resolved once and passed on.

Everything later stages ask of a folder comes from its manifest, read and checked here a single
time: the encoding, the classes, the train split's mean and std, the example counts (of the whole
split and of a class subset), the shard paths (each checked to exist with its recorded size).
Nothing scans the shards to learn what the manifest already says.

`DataFolder.split(name, classes)` answers every question about one split at once, as a `Split` of
plain values: the read, the layout into batches, the finishing stage and the trainer take that
and never ask the folder again (a run asks each split once, in its preparation).
"""

from __future__ import annotations

import contextlib
import dataclasses
import re

from common import files
from common.errors import UserError
from pipeline import manifest as manifests


@dataclasses.dataclass(frozen=True)
class ClassSubset:
    """The classes a run keeps: `keep[i]` is the manifest's index of the subset's label i."""

    keep: tuple[int, ...]
    total: int  # classes in the records

    @property
    def is_all(self) -> bool:
        return len(self.keep) == self.total

    def label_map(self) -> list[int]:
        """Manifest label -> subset label (-1 for a class left out)."""
        mapping = [-1] * self.total
        for new, old in enumerate(self.keep):
            mapping[old] = new
        return mapping


@dataclasses.dataclass(frozen=True)
class Split:
    """One split of a folder as an input reads it, with a class subset applied: every fact the
    read, the layout, the finishing stage and the trainer need, as plain values (no method asks
    the folder again). Made by `DataFolder.split`."""

    folder: str  # the resolution folder, for messages
    name: str  # "train", "val" or "test"
    resolution: int
    encoding: str
    keep: tuple[int, ...]  # the manifest's label of each label this split gives
    label_map: tuple[int, ...] | None  # manifest label -> label (-1: left out); None when every class is kept
    count: int  # examples of the kept classes
    paths: tuple[str, ...]  # the shards, in order, each checked to exist with its recorded size
    shard_counts: tuple[int, ...]  # examples in each shard (every class)
    sha256: tuple[str, ...]  # each shard's digest, to name a corrupt one
    mean: tuple[float, ...]  # the train split's per-channel statistics (0..255)
    std: tuple[float, ...]
    classes: tuple[dict, ...]  # {wnid, words} of each label this split gives
    fits_in_ram: bool  # the whole split decoded takes at most a quarter of this machine's memory


@dataclasses.dataclass(frozen=True)
class DataFolder:
    path: str  # the converter's output folder (local, Drive or gs://)
    resolution: int
    manifest: dict = dataclasses.field(repr=False, compare=False)

    @classmethod
    def open(cls, path: str, resolution: int) -> DataFolder:
        """The folder of one resolution, its manifest read and checked once."""
        manifest = manifests.read(path, resolution)
        if manifest["resolution"] != resolution:
            raise UserError(f"{manifests.resolution_dir(path, resolution)}: manifest says "
                            f"{manifest['resolution']} px")
        return cls(path, resolution, manifest)

    @property
    def folder(self) -> str:
        return manifests.resolution_dir(self.path, self.resolution)

    @property
    def encoding(self) -> str:
        return self.manifest["encoding"]

    @property
    def classes(self) -> list[dict]:
        """{wnid, words} of every label, in label order."""
        return self.manifest["classes"]

    @property
    def mean(self) -> list[float]:
        return self.manifest["mean"]

    @property
    def std(self) -> list[float]:
        return self.manifest["std"]

    def split(self, name: str, classes=None) -> Split:
        """Everything about one split, with a class subset (None, N or wnids; see `subset`) applied,
        asked of the manifest and the files once: a missing split, class, count or shard is named here."""
        subset = self.subset(classes)
        shards = self.shards(name)
        return Split(self.folder, name, self.resolution, self.encoding, subset.keep,
                     None if subset.is_all else tuple(subset.label_map()), self.count(name, subset),
                     tuple(self.shard_paths(name)), tuple(s["num_examples"] for s in shards),
                     tuple(s["sha256"] for s in shards), tuple(self.mean), tuple(self.std),
                     tuple(self.classes[i] for i in subset.keep), self.fits_in_ram(name))

    def shards(self, name: str) -> list[dict]:
        """The manifest's entries of a split's shards (file, num_examples, bytes, sha256, ...)."""
        if name not in self.manifest["splits"]:
            raise UserError(f"{self.folder}: no {name!r} split (has {', '.join(self.manifest['splits'])})")
        return self.manifest["splits"][name]["shards"]

    def shard_paths(self, name: str) -> list[str]:
        """The shard paths of a split, each checked to exist with the manifest's size (named if not):
        a missing or truncated shard (an interrupted copy from Drive) is named before training."""
        paths = [files.join(self.folder, shard["file"]) for shard in self.shards(name)]
        for path, shard in zip(paths, self.shards(name)):
            if not files.gfile().exists(path):
                raise UserError(f"{path}: shard missing (listed in the manifest)")
            size = files.gfile().stat(path).length
            if "bytes" in shard and size != shard["bytes"]:
                raise UserError(f"{path}: {size} bytes, the manifest says {shard['bytes']}; "
                                "copy it again or re-run tools.convert")
        return paths

    def subset(self, classes=None) -> ClassSubset:
        """None keeps every class, an int N the first N, a list of wnids those (in manifest order)."""
        total = len(self.classes)
        if classes is None:
            return ClassSubset(tuple(range(total)), total)
        if isinstance(classes, int):
            if not 1 <= classes <= total:
                raise UserError(f"classes={classes}: the records hold {total} classes")
            return ClassSubset(tuple(range(classes)), total)
        wnids = [c["wnid"] for c in self.classes]
        missing = [c for c in classes if c not in wnids]
        if missing:
            raise UserError(f"classes: {', '.join(missing)} not in the records' manifest")
        return ClassSubset(tuple(sorted(wnids.index(c) for c in classes)), total)

    def count(self, name: str, subset: ClassSubset | None = None) -> int:
        """Examples of a split that a class subset keeps, from the manifest's counts (never a scan)."""
        self.shards(name)  # names a missing split
        info = self.manifest["splits"][name]
        if subset is None or subset.is_all:
            return info["num_examples"]
        counts = info.get("class_counts")
        if counts is None:
            raise UserError(f"{name}: manifest lacks class_counts; convert again to train on a class subset")
        return sum(counts[i] for i in subset.keep)

    def decoded_bytes(self, name: str) -> int:
        """Bytes of a split's images decoded (uint8), as the training input holds them in RAM."""
        return self.count(name) * self.resolution ** 2 * 3

    def fits_in_ram(self, name: str) -> bool:
        """Whether a split's decoded images take at most a quarter of this machine's memory (1.24 GB
        for the whole 64 px train split: every Colab runtime): `runtime.cache = "auto"` keeps them
        in RAM then, read once per run instead of once per epoch."""
        import os

        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            return False
        return self.decoded_bytes(name) <= total // 4

    def naming_corrupt_shards(self, names=("train", "val")):
        """`naming_corrupt_shards` over this folder's splits `names` (those it has), yielding the folder:
        for a tool that reads the folder without a `Split` of its own."""
        def shards():
            return [(files.join(self.folder, shard["file"]), shard["sha256"])
                    for name in names if name in self.manifest["splits"] for shard in self.shards(name)]
        return _naming_corrupt_shards(self.folder, shards, self)


def naming_corrupt_shards(first: Split, *rest: Split):
    """Turn tf.data's anonymous 'corrupted record at 3204' into a UserError naming the shard.

    TFRecordDataset does not say which file failed, so on such an error the shards of `splits`
    are checked against the manifest's sha256 (seconds, even for 64 px train) to name the culprit.
    """
    def shards():
        return list(dict.fromkeys((path, digest) for split in (first, *rest)
                                  for path, digest in zip(split.paths, split.sha256)))
    return _naming_corrupt_shards(first.folder, shards, first)


@contextlib.contextmanager
def _naming_corrupt_shards(folder: str, shards, value):
    """The error turned into one line; `shards()` gives the (path, sha256) pairs to check."""
    import tensorflow as tf

    try:
        yield value
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as error:
        text = str(error).lower()
        counted = re.search(r"\[([^\]]*: the records hold another number of examples than the manifest says "
                            r"\(\d+\))\]", str(error))
        if counted:  # pipeline.read.whole counted them: the manifest and the files disagree
            raise UserError(f"{counted.group(1)}; re-run tools.convert or copy the folder again") from None
        if isinstance(error, tf.errors.InvalidArgumentError) and "record" not in text and "reshape" not in text:
            raise
        bad = [path for path, digest in shards() if files.sha256_of(path) != digest]
        found = re.search(r"(corrupted|truncated) record at \d+", str(error))
        first_line = found.group(0) if found else type(error).__name__
        if bad:
            raise UserError(f"{bad[0]}: corrupt shard ({first_line}); re-run tools.convert to rewrite it"
                            + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else "")) from None
        raise UserError(f"{folder}: unreadable records ({first_line})") from None


def open_all(path: str, resolutions) -> dict[int, DataFolder]:
    """The folders of every resolution a run reads, checked to list one class list between them."""
    folders = {r: DataFolder.open(path, r) for r in resolutions}
    different = differing_classes(list(folders.values()))
    if different:
        raise UserError(different)
    return folders


def differing_classes(folders: list[DataFolder]) -> str | None:
    """Why folders of one run (its resolutions) cannot share labels, or None: label i must be the
    same class at every resolution, and resolutions converted with different sources or --classes
    into one folder would train each stage on labels that mean other classes."""
    first = folders[0]
    wnids = [c["wnid"] for c in first.classes]
    for other in folders[1:]:
        theirs = [c["wnid"] for c in other.classes]
        if theirs != wnids:
            if len(theirs) != len(wnids):
                detail = f"{len(wnids)} and {len(theirs)} classes"
            else:
                label = next(i for i, (a, b) in enumerate(zip(wnids, theirs)) if a != b)
                detail = f"label {label} is {wnids[label]} and {theirs[label]}"
            return (f"{first.folder} and {other.folder} list different classes ({detail}); convert every "
                    f"resolution from the same source with the same --classes")
    return None
