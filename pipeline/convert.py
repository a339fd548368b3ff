"""The converter: Tiny-ImageNet (zip, folder or URL) -> sharded TFRecords, one folder per resolution.

Library code so that the command line (tools/convert.py), the tests and a notebook run the same
conversion. Planning (which classes, which entries, which shard) is pure and deterministic; the
per-image work runs in worker processes that import no TensorFlow (they start in a fraction of a
second and die with their parent); shards are written by the main process under a temporary name
and recorded one by one in the manifest journal (`pipeline.manifest.ResolutionOutput`), so a rerun
resumes. Once a folder's manifest is complete, the metadata TensorFlow Datasets needs to open it is
written beside it (pipeline/tfds_metadata.py). Output paths go through `tf.io.gfile`: a Drive folder
and a `gs://` bucket work the same.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import hashlib
import json
import multiprocessing
import os
import posixpath
import random
import threading
import time

import numpy as np

from common import files
from common.errors import UserError
from pipeline import imaging, tfds_metadata
from pipeline import manifest as manifests
from pipeline.tiny_imagenet import Entry, Source, open_source


@dataclasses.dataclass(frozen=True)
class ConvertOptions:
    """How to convert; the defaults are the command line's (workers None: every core)."""

    encoding: str = "raw"  # "raw" uint8 reads ~4x faster than "jpeg"
    shards_per_split: int = 16
    classes: str | None = None  # a count (the first N sorted wnids) or comma-separated wnids
    include_test: bool = False  # also the unlabeled test split
    workers: int | None = None  # processes decoding images
    seed: int = 0  # of the train shuffle across shards
    skip_bad: bool = False  # skip unreadable images (listed in the manifest) instead of stopping
    download_dir: str | None = None  # where a URL source is downloaded
    show_progress: bool = True


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


# -- writing (main process) ---------------------------------------------------------------------------
def write_shard(path: str, examples: list) -> str:
    """Write records under a temporary name, rename when complete; return the sha256."""
    import tensorflow as tf

    from pipeline import records

    hidden = posixpath.join(posixpath.dirname(path), "." + posixpath.basename(path) + ".tmp")
    with files.replacing(path, temporary=hidden) as partial, tf.io.TFRecordWriter(partial) as writer:
        for image, label, filename, box in examples:
            writer.write(records.serialize(image, label, filename, box))
    return files.sha256_of(path)


def _check(resolutions: list[int], options: ConvertOptions) -> None:
    if options.encoding not in ("raw", "jpeg"):
        raise UserError(f"--encoding {options.encoding}: expected raw or jpeg")
    if not resolutions or any(r < 8 or r > 512 for r in resolutions):
        raise UserError(f"--resolutions {resolutions}: each must be between 8 and 512")
    if options.shards_per_split < 1:
        raise UserError("--shards-per-split must be at least 1")


def _refuse_other_classes_beside(out: str, resolutions: list[int], wnids: list[str]) -> None:
    """A run reads every resolution of one folder with one label table: a resolution converted
    into `out` with other classes (another --classes or source) than one already there would give
    label i another class at each stage. Refused before anything is written."""
    for resolution in manifests.resolution_folders(out):
        if resolution in resolutions:
            continue
        path = files.join(manifests.resolution_dir(out, resolution), manifests.NAME)
        existing = files.read_json(path)
        theirs = [c.get("wnid") for c in existing.get("classes", []) if isinstance(c, dict)] \
            if isinstance(existing, dict) and isinstance(existing.get("classes"), list) else None
        if theirs is not None and theirs != wnids:
            raise UserError(f"{path}: lists other classes ({len(theirs)}) than this conversion ({len(wnids)}); a "
                            f"run reads every resolution with one label table: use the same --classes and source, "
                            f"or another --out")


def convert(source_location: str, out: str, resolutions: list[int],
            options: ConvertOptions = ConvertOptions()) -> dict[int, dict]:
    """Convert and return the manifests by resolution. Re-running resumes."""
    from pipeline.progress import DownloadBar

    _check(resolutions, options)
    source = open_source(source_location, options.download_dir,
                         DownloadBar("downloading") if options.show_progress else None)
    all_wnids = source.wnids()
    wnids = select_classes(all_wnids, options.classes)
    words = source.words(wnids)
    splits = plan_splits(source, wnids, all_wnids, options.include_test, options.seed)
    plan = {split: chunk(entries, options.shards_per_split) for split, entries in splits.items()}
    settings = {"encoding": options.encoding, "shards_per_split": options.shards_per_split, "seed": options.seed,
                "skip_bad": options.skip_bad, "format_version": manifests.FORMAT_VERSION}
    classes = [{"wnid": w, "words": words[w]} for w in wnids]
    described = {"location": source_location, "kind": source.kind, "num_source_classes": len(all_wnids)}
    _refuse_other_classes_beside(out, resolutions, wnids)
    outputs = {}
    for r in resolutions:
        header = manifests.header(r, options.encoding, classes, described, options.seed,
                                  fingerprint(splits, {**settings, "resolution": r}))
        outputs[r] = manifests.ResolutionOutput(out, r, header, plan)
    for output in outputs.values():
        output.open()
    _write_shards(source, plan, {w: i for i, w in enumerate(wnids)}, outputs, options)
    results = {}
    for r, output in outputs.items():
        results[r] = output.finish()
        tfds_metadata.write(output.folder, results[r])  # only beside a complete manifest
    return results


def _write_shards(source: Source, plan: dict[str, list[list[Entry]]], labels: dict[str, int],
                  outputs: dict[int, manifests.ResolutionOutput], options: ConvertOptions) -> None:
    """Every shard some resolution still lacks: decoded by the workers, written here in order."""
    from pipeline.progress import bars

    workers = options.workers or os.cpu_count() or 1
    pool = None
    if workers > 1:
        pool = concurrent.futures.ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker, initargs=(os.getpid(),))
    try:
        with bars() if options.show_progress else contextlib.nullcontext() as progress:
            for split, shards in plan.items():
                todo = [i for i in range(len(shards)) if not all(o.done(split, i) for o in outputs.values())]
                done_examples = sum(len(shards[i]) for i in range(len(shards)) if i not in todo)
                total = sum(len(s) for s in shards)
                task = progress.add_task(split, total=total, completed=done_examples) if progress else None
                pending = {}
                for i in todo:
                    need = [r for r, o in outputs.items() if not o.done(split, i)]
                    args = (source, shards[i], labels, need, options.encoding, options.skip_bad)
                    pending[i] = pool.submit(process_shard, *args) if pool else args
                for i in todo:
                    job = pending.pop(i)
                    result = job.result() if pool else process_shard(*job)
                    for r, stats in result["by_resolution"].items():
                        sha256 = write_shard(outputs[r].shard_path(split, i), stats["examples"])
                        outputs[r].add(split, i, sha256, result, stats)
                    if progress:
                        progress.advance(task, len(shards[i]))
    finally:
        if pool:
            pool.shutdown(cancel_futures=True)


def run(source_location: str, out: str, resolutions: list[int], options: ConvertOptions = ConvertOptions(),
        log=print) -> dict[int, dict]:
    """`convert`, then what the command line shows: a line per resolution and the time taken."""
    start = time.time()
    results = convert(source_location, out, resolutions, options)
    for r, m in results.items():
        counts = ", ".join(f"{s} {i['num_examples']}" for s, i in m["splits"].items())
        log(f"{r}px: {counts}; mean {m['mean']} std {m['std']}; skipped {len(m['skipped'])}")
    log(f"done in {time.time() - start:.1f}s -> {out}")
    return results
