"""Convert Tiny-ImageNet into sharded TFRecords, one folder per resolution, once.

    python -m tools.convert --source tiny-imagenet-200.zip --out /content/drive/MyDrive/tin \
        --resolutions 32,48,64

SRC may be the official zip, its unpacked folder or the official URL (downloaded, resumable).
Every shard is written under a temporary name and renamed when complete, and the manifest is
updated after each shard, so running the same command again after a disconnect skips the shards
already complete (checked by sha256) and loses only the one in progress. Output paths go through
`tf.io.gfile`: a Drive folder and a `gs://` bucket work the same.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import hashlib
import json
import multiprocessing
import os
import posixpath
import random
import sys
import threading
import time

import numpy as np

from common import files
from common.cli import command_line
from common.errors import UserError
from common.files import sha256_of
from pipeline import imaging
from pipeline import manifest as manifests
from pipeline.tiny_imagenet import OFFICIAL_URL, Entry, Source, open_source

SPLITS = ("train", "val", "test")


# -- planning ---------------------------------------------------------------------------------------
def select_classes(all_wnids: list[str], spec: str | None) -> list[str]:
    """`None` = all; `"10"` = the first 10 sorted wnids; `"n01,n02"` = exactly those (sorted)."""
    if not spec:
        return all_wnids
    if spec.isdigit():
        count = int(spec)
        if not 1 <= count <= len(all_wnids):
            raise UserError(f"--classes {spec}: the source has {len(all_wnids)} classes")
        return all_wnids[:count]
    wanted = sorted({w.strip() for w in spec.split(",") if w.strip()})
    unknown = [w for w in wanted if w not in all_wnids]
    if unknown:
        raise UserError(f"--classes: {', '.join(unknown)} not in wnids.txt")
    return wanted


def plan_splits(source: Source, wnids: list[str], all_wnids: list[str], include_test: bool,
                seed: int) -> dict[str, list[Entry]]:
    """The entries of every split, train shuffled with a recorded seed so shards mix classes."""
    train = source.train_entries(wnids)
    random.Random(seed).shuffle(train)
    splits = {"train": train, "val": source.val_entries(wnids, all_wnids)}
    if include_test:
        splits["test"] = source.test_entries()
    names = {split: {e.filename for e in entries} for split, entries in splits.items()}
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        shared = names.get(a, set()) & names.get(b, set())
        if shared:
            raise UserError(f"{source.location}: {a} and {b} share file {sorted(shared)[0]}")
    return splits


def chunk(entries: list[Entry], shards: int) -> list[list[Entry]]:
    """Split into `shards` contiguous, nearly equal parts (never an empty shard)."""
    count = max(1, min(shards, len(entries)))
    bounds = np.linspace(0, len(entries), count + 1).round().astype(int)
    return [entries[bounds[i]:bounds[i + 1]] for i in range(count)]


def fingerprint(splits: dict[str, list[Entry]], settings: dict) -> str:
    """Identifies what a folder should hold: the same command on the same source gives the same value."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for split in sorted(splits):
        for entry in splits[split]:
            digest.update(f"{split}|{entry.path}|{entry.wnid}|{entry.box}\n".encode())
    return digest.hexdigest()[:16]


# -- the work of one shard (runs in worker processes: no TensorFlow here) ------------------------------
def normalised_box(box, width: int, height: int) -> tuple[float, float, float, float]:
    """Inclusive pixel box -> xmin, ymin, xmax, ymax in [0, 1]; the whole image when unknown."""
    if box is None:
        return (0.0, 0.0, 1.0, 1.0)
    x0, y0, x1, y1 = box
    clip = lambda v: float(min(1.0, max(0.0, v)))  # noqa: E731
    return (clip(x0 / width), clip(y0 / height), clip((x1 + 1) / width), clip((y1 + 1) / height))


def process_shard(source: Source, entries: list[Entry], labels: dict[str, int], resolutions: list[int],
                  encoding: str, skip_bad: bool) -> dict:
    """Decode each image once, resize to every resolution; return the payloads and statistics."""
    out = {r: {"examples": [], "sum": np.zeros(3), "sumsq": np.zeros(3), "pixels": 0} for r in resolutions}
    grayscale, skipped = 0, []
    for entry in entries:
        data = source.read(entry.path)
        try:
            image, mode = imaging.open_rgb(data, source.describe(entry.path))
        except UserError as error:
            if not skip_bad:
                raise
            skipped.append({"file": entry.path, "reason": str(error).rsplit(": ", 1)[-1]})
            continue
        grayscale += mode in imaging.GRAYSCALE_MODES
        # A JPEG already at the target size is copied as it is: re-encoding would only lose detail.
        copyable = encoding == "jpeg" and data[:2] == b"\xff\xd8" and mode in ("RGB", "L")
        box = normalised_box(entry.box, *image.size)
        label = labels[entry.wnid] if entry.wnid is not None else -1
        for r in resolutions:
            resized = imaging.resize(image, r)
            pixels = np.asarray(resized, dtype=np.float64).reshape(-1, 3)
            stats = out[r]
            stats["sum"] += pixels.sum(0)
            stats["sumsq"] += (pixels ** 2).sum(0)
            stats["pixels"] += pixels.shape[0]
            payload = data if copyable and image.size == (r, r) else imaging.encode(resized, encoding)
            stats["examples"].append((payload, label, entry.filename, box))
    for stats in out.values():
        stats["sum"], stats["sumsq"] = stats["sum"].tolist(), stats["sumsq"].tolist()
    return {"by_resolution": out, "grayscale": grayscale, "skipped": skipped}


# -- writing (main process) ---------------------------------------------------------------------------
def write_shard(path: str, examples: list) -> str:
    """Write records under a temporary name, rename when complete; return the sha256."""
    import tensorflow as tf

    from pipeline import records

    hidden = posixpath.join(posixpath.dirname(path), "." + posixpath.basename(path) + ".tmp")
    with files.replacing(path, temporary=hidden) as partial, tf.io.TFRecordWriter(partial) as writer:
        for image, label, filename, box in examples:
            writer.write(records.serialize(image, label, filename, box))
    return sha256_of(path)


class ResolutionOutput:
    """The manifest-journal of one `<out>/<res>px` folder during a conversion."""

    def __init__(self, out: str, resolution: int, header: dict, plan: dict[str, list[list[Entry]]]):
        """Checks only: the folder is created by `open`, once every resolution has been accepted,
        so a refused conversion leaves nothing behind."""
        self.folder = manifests.resolution_dir(out, resolution)
        self.path = posixpath.join(self.folder, manifests.NAME)
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
        import tensorflow as tf

        tf.io.gfile.makedirs(self.folder)

    def _shard_ok(self, shard: dict, count: int) -> bool:
        import tensorflow as tf

        path = posixpath.join(self.folder, shard["file"])
        return shard["file"].endswith(f"-of-{count:05d}.tfrecord") and tf.io.gfile.exists(path) \
            and sha256_of(path) == shard["sha256"]

    def done(self, split: str, index: int) -> bool:
        from pipeline import records

        name = records.shard_name(split, index, len(self.plan[split]))
        return any(s["file"] == name for s in self.manifest["splits"][split]["shards"])

    def add(self, split: str, index: int, result: dict, stats: dict) -> None:
        from pipeline import records

        name = records.shard_name(split, index, len(self.plan[split]))
        sha = write_shard(posixpath.join(self.folder, name), stats["examples"])
        class_counts = np.bincount([e[1] for e in stats["examples"] if e[1] >= 0],
                                   minlength=len(self.manifest["classes"])).tolist()
        import tensorflow as tf

        size = tf.io.gfile.stat(posixpath.join(self.folder, name)).length
        entry = {"file": name, "num_examples": len(stats["examples"]), "sha256": sha, "bytes": size,
                 "class_counts": class_counts, "grayscale_sources": result["grayscale"], "skipped": result["skipped"],
                 "channel_sum": stats["sum"], "channel_sumsq": stats["sumsq"], "pixels": stats["pixels"]}
        shards = self.manifest["splits"][split]["shards"]
        shards.append(entry)
        shards.sort(key=lambda s: s["file"])
        files.write_json(self.path, self.manifest)

    def finish(self) -> dict:
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


def _init_worker(parent: int):
    # Each process decodes on one core; let numpy/PIL not spawn threads of their own.
    os.environ["OMP_NUM_THREADS"] = "1"
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    """A worker whose converter was killed (kill -9, a Colab disconnect) would decode on forever:
    it exits as soon as its parent is gone (it is then re-parented), even if that happened before
    it started: the parent's pid comes from the parent."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def convert(source_location: str, out: str, resolutions: list[int], encoding: str = "raw",
            shards_per_split: int = 16, classes: str | None = None, include_test: bool = False,
            workers: int | None = None, seed: int = 0, skip_bad: bool = False,
            download_dir: str | None = None, show_progress: bool = True) -> dict[int, dict]:
    """Convert and return the manifests by resolution. Re-running resumes."""
    from pipeline.progress import DownloadBar, bars

    if encoding not in ("raw", "jpeg"):
        raise UserError(f"--encoding {encoding}: expected raw or jpeg")
    if not resolutions or any(r < 8 or r > 512 for r in resolutions):
        raise UserError(f"--resolutions {resolutions}: each must be between 8 and 512")
    if shards_per_split < 1:
        raise UserError("--shards-per-split must be at least 1")
    source = open_source(source_location, download_dir, DownloadBar("downloading") if show_progress else None)
    all_wnids = source.wnids()
    wnids = select_classes(all_wnids, classes)
    words = source.words(wnids)
    splits = plan_splits(source, wnids, all_wnids, include_test, seed)
    plan = {split: chunk(entries, shards_per_split) for split, entries in splits.items()}
    settings = {"encoding": encoding, "shards_per_split": shards_per_split, "seed": seed,
                "skip_bad": skip_bad, "format_version": manifests.FORMAT_VERSION}
    labels = {w: i for i, w in enumerate(wnids)}
    outputs = {}
    for r in resolutions:
        header = {"format_version": manifests.FORMAT_VERSION, "resolution": r, "encoding": encoding,
                  "classes": [{"wnid": w, "words": words[w]} for w in wnids],
                  "source": {"location": source_location, "kind": source.kind, "num_source_classes": len(all_wnids)},
                  "seed": seed, "fingerprint": fingerprint(splits, {**settings, "resolution": r})}
        outputs[r] = ResolutionOutput(out, r, header, plan)
    for output in outputs.values():
        output.open()
    workers = workers or os.cpu_count() or 1
    pool = None
    if workers > 1:
        pool = concurrent.futures.ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker, initargs=(os.getpid(),))
    try:
        with bars() if show_progress else contextlib.nullcontext() as progress:
            for split, shards in plan.items():
                todo = [i for i in range(len(shards)) if not all(o.done(split, i) for o in outputs.values())]
                done_examples = sum(len(shards[i]) for i in range(len(shards)) if i not in todo)
                task = progress.add_task(split, total=len(splits[split]), completed=done_examples) if progress else None
                pending = {}
                for i in todo:
                    need = [r for r in resolutions if not outputs[r].done(split, i)]
                    args = (source, shards[i], labels, need, encoding, skip_bad)
                    pending[i] = pool.submit(process_shard, *args) if pool else args
                for i in todo:
                    job = pending.pop(i)
                    result = job.result() if pool else process_shard(*job)
                    for r, stats in result["by_resolution"].items():
                        outputs[r].add(split, i, result, stats)
                    if progress:
                        progress.advance(task, len(shards[i]))
    finally:
        if pool:
            pool.shutdown(cancel_futures=True)
    return {r: o.finish() for r, o in outputs.items()}


@command_line
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", required=True,
                        help=f"tiny-imagenet-200.zip, its unpacked folder, or a URL such as {OFFICIAL_URL}")
    parser.add_argument("--out", required=True, help="output folder (local, Drive or gs://)")
    parser.add_argument("--resolutions", default="32,48,64", help="comma-separated sizes in px")
    parser.add_argument("--encoding", default="raw", choices=["raw", "jpeg"],
                        help="raw uint8 reads ~4x faster than JPEG decoding (default raw)")
    parser.add_argument("--shards-per-split", type=int, default=16)
    parser.add_argument("--classes", help="a count (the first N sorted wnids) or comma-separated wnids")
    parser.add_argument("--include-test", action="store_true", help="also write the unlabeled test split")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="processes decoding images")
    parser.add_argument("--seed", type=int, default=0, help="seed of the train shuffle across shards")
    parser.add_argument("--skip-bad", action="store_true", help="skip unreadable images, listed in the manifest")
    parser.add_argument("--download-dir", help="where a URL source is downloaded (default ~/.cache/tiny_imagenet)")
    args = parser.parse_args(argv)
    try:
        resolutions = sorted({int(v) for v in args.resolutions.split(",") if v.strip()})
    except ValueError:
        parser.error(f"--resolutions {args.resolutions!r}: expected numbers like 32,48,64")
    start = time.time()
    results = convert(args.source, args.out, resolutions, args.encoding, args.shards_per_split, args.classes,
                      args.include_test, args.workers, args.seed, args.skip_bad, args.download_dir)
    for r, m in results.items():
        counts = ", ".join(f"{s} {i['num_examples']}" for s, i in m["splits"].items())
        print(f"{r}px: {counts}; mean {m['mean']} std {m['std']}; skipped {len(m['skipped'])}")
    print(f"done in {time.time() - start:.1f}s -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
