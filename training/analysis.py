"""After training: what the model gets wrong, and which training images are hardest.

Loads a run's best model (`best.keras`), evaluates val and writes to `<run-dir>/analysis/`:
`summary.json` (top-1, top-5, and both with flip test-time augmentation: the average of the
probabilities of each image and its mirror image), `per_class.csv` (accuracy per class, worst first, with words),
`confusions.csv` (the most confused class pairs), `most_wrong.png` (the most confidently wrong
images with true and predicted labels) and `hard_examples.txt` (training images with the highest
loss, ready for `augment.hard_examples` in a config). With `eval_resolution` N it evaluates at N
px, resizing on the fly the records of the nearest converted resolution (ties: the larger), and
computes the hard examples at N px too; otherwise everything is at the records' own resolution.
`train_images` N looks for the hard examples among the first N training images only (the converter
shuffles the classes across the records, so they are a fair sample): the quick check's analysis.

`summary.json` records what the analysis was made of (`inputs`: the digest of `best.keras` and of
the records' manifest, the resolution and the options): run again with the same inputs, it says the
analysis is up to date instead of repeating minutes of forward passes (a notebook run twice, a
resumed run that found no better model); `force` analyses again regardless.
Library code so that the command line
(tools/analyze.py), the tests and a notebook analyse the same way; runs under TensorFlow and JAX
(Keras is imported on first use, after the command line has chosen the backend).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import os
import posixpath
import tempfile

import numpy as np
from PIL import Image, ImageDraw

from common import files
from common.errors import UserError
from training.run_dir import RunDir


def best_model(run_dir: str) -> str:
    """The path of the run's best model; one line naming it when there is none."""
    path = RunDir(run_dir).best_model
    if not files.gfile().exists(path):
        raise UserError(f"{path}: no best model in this run directory (train first, or check --run-dir)")
    return path


def load_model(run_dir: str):
    """The run's best model, uncompiled; Keras is imported only once the file is known to be there."""
    path = best_model(run_dir)
    import keras

    import model.resnet  # noqa: F401  (registers the custom layer for deserialisation)
    import training.evaluation  # noqa: F401  (registers the flip layer)
    import training.schedules  # noqa: F401  (registers the schedules)
    from model import custom

    copy = RunDir(run_dir).model_file  # a student's model file: its custom layers register on import
    if os.path.exists(copy):
        custom.import_file(copy)

    if not files.is_remote(path):
        return keras.models.load_model(path, compile=False)
    with tempfile.TemporaryDirectory() as folder:  # Keras reads .keras archives from local paths
        local = os.path.join(folder, posixpath.basename(path))
        files.gfile().copy(path, local)
        return keras.models.load_model(local, compile=False)


def _write(folder: str, name: str, content) -> None:
    """A text, bytes or PIL image into `folder` (local, Drive or gs://), atomically."""
    if isinstance(content, Image.Image):
        buffer = io.BytesIO()
        content.save(buffer, format="PNG")
        content = buffer.getvalue()
    files.write_bytes(posixpath.join(folder, name), content if isinstance(content, bytes) else content.encode())


def nearest_resolution(available, target: int) -> int:
    """The converted resolution to resize from for `target` px: the nearest, ties to the larger
    (downscaling loses less than upscaling invents)."""
    return min(available, key=lambda r: (abs(r - target), -r))


@dataclasses.dataclass
class Predictions:
    """A split (or its first `limit` examples), in order: probabilities [N, classes], the
    flip-averaged ones (with `mirror`, else None), integer labels, filenames, uint8 images as the
    model saw them (None unless kept), the SplitInfo."""

    probabilities: np.ndarray
    tta: np.ndarray | None
    labels: np.ndarray
    names: list
    images: np.ndarray | None
    info: object


def predict(net, split, batch_size: int, resize_to: int | None = None, mirror: bool = False, limit: int = 0,
            keep_images: bool = False) -> Predictions:
    """The model's predictions on a split (`DataFolder.split`), in evaluation order (resized to `resize_to`
    px if given); with `mirror` also on each batch mirrored left-right, averaged with the plain
    ones; with `limit` only the first `limit` examples. The images are kept only when asked: the
    whole train split at 64 px is 1.2 GB of uint8."""
    from pipeline import dataset

    spec = dataset.InputSpec(batch_size, with_filenames=True, resize_to=resize_to)
    source, info = dataset.build(split, spec)
    if limit:
        source = source.take(-(-limit // batch_size))
    probabilities, tta, labels, names, images = [], [], [], [], []
    for batch_images, batch_labels, batch_names in source:
        batch = batch_images.numpy()
        probabilities.append(np.asarray(net.predict_on_batch(batch)))
        if mirror:  # NHWC: axis 2 is the width
            flipped = np.asarray(net.predict_on_batch(np.ascontiguousarray(batch[:, :, ::-1])))
            tta.append((probabilities[-1] + flipped) / 2)
        labels.append(batch_labels.numpy().argmax(1))
        names += [n.decode() for n in batch_names.numpy()]
        if keep_images:
            images.append(batch)
    end = limit or None
    return Predictions(np.concatenate(probabilities)[:end], np.concatenate(tta)[:end] if mirror else None,
                       np.concatenate(labels)[:end], names[:end],
                       np.concatenate(images)[:end] if keep_images else None, info)


def top_k_accuracy(probabilities, labels, k: int = 5) -> float:
    top = np.argsort(-probabilities, axis=1)[:, :k]
    return float(np.mean([label in row for label, row in zip(labels, top)]))


def per_class_accuracy(labels, predictions, num_classes: int):
    correct = np.bincount(labels, weights=(labels == predictions), minlength=num_classes)
    counts = np.bincount(labels, minlength=num_classes)
    return correct / np.maximum(counts, 1), counts


def confusions(labels, predictions, top: int = 20):
    """(true, predicted, count) of the most frequent mistakes."""
    pairs = {}
    for truth, guess in zip(labels, predictions):
        if truth != guess:
            pairs[(int(truth), int(guess))] = pairs.get((int(truth), int(guess)), 0) + 1
    return sorted(((t, g, n) for (t, g), n in pairs.items()), key=lambda x: (-x[2], x[0], x[1]))[:top]


def wrong_grid(images, labels, probabilities, names, words, count: int = 24, columns: int = 6) -> Image.Image:
    """The most confidently wrong images, each captioned 'true -> predicted (confidence)'."""
    predictions = probabilities.argmax(1)
    wrong = np.flatnonzero(predictions != labels)
    wrong = wrong[np.argsort(-probabilities[wrong, predictions[wrong]])][:count]
    tile, caption = 128, 30
    rows = max(1, -(-len(wrong) // columns))
    canvas = Image.new("RGB", (columns * tile, rows * (tile + caption)), "white")
    draw = ImageDraw.Draw(canvas)
    for slot, index in enumerate(wrong):
        x, y = (slot % columns) * tile, (slot // columns) * (tile + caption)
        canvas.paste(Image.fromarray(images[index]).resize((tile, tile), Image.NEAREST), (x, y))
        truth = words[labels[index]].split(",")[0][:20]
        guess = words[predictions[index]].split(",")[0][:20]
        draw.text((x + 2, y + tile + 1), f"T: {truth}", fill="darkgreen")
        draw.text((x + 2, y + tile + 14), f"P: {guess} {probabilities[index, predictions[index]]:.0%}", fill="darkred")
    return canvas


@dataclasses.dataclass(frozen=True)
class Options:
    """How to analyse: at the records' `resolution`, or at `eval_resolution` px resized from the
    nearest converted one (then `resolution` is not used); `hard_count` hard examples (0: a tenth
    of those scanned) among the first `train_images` training images (0: all)."""

    resolution: int = 64
    eval_resolution: int | None = None
    batch_size: int = 256
    hard_count: int = 0
    train_images: int = 0


def analyze(data: str, run_dir: str, options: Options = Options(), log=print, force: bool = False) -> dict:
    """Evaluate the run's best model on val, write the analysis files, print the findings; a
    corrupt shard is named. An analysis already made of the same inputs (best.keras, the records,
    the options) is reported, not repeated, unless `force`: the result is then its summary, with
    `up_to_date` True."""
    from pipeline.data_folder import DataFolder
    from pipeline.verify import resolutions_in

    records_resolution = options.resolution
    if options.eval_resolution:
        converted = resolutions_in(data)
        if options.eval_resolution > 4 * max(converted):  # upscaled past any use, and a tensor of many GB
            raise UserError(f"--eval-resolution {options.eval_resolution}: at most {4 * max(converted)} px (4x the "
                            f"largest converted resolution, {max(converted)} px)")
        records_resolution = nearest_resolution(converted, options.eval_resolution)
    with DataFolder.open(data, records_resolution).naming_corrupt_shards(("train", "val")) as folder:
        run = RunDir(run_dir)
        classes = (files.read_json(run.config) or {}).get("classes") or None
        inputs = {"best_model_sha256": files.sha256_of(best_model(run.path)),
                  "records_sha256": hashlib.sha256(json.dumps(folder.manifest, sort_keys=True).encode()).hexdigest(),
                  "resolution": options.eval_resolution or folder.resolution, "records_resolution": folder.resolution,
                  "classes": classes, "hard_count": options.hard_count, "train_images": options.train_images}
        made = None if force else analysis_made_of(run, inputs)
        if made:
            log(f"already analysed: {run.analysis}/ is up to date with best.keras, the records and these options "
                f"(val top-1 {made['top1']:.4f}, with flip TTA {made['top1_tta']:.4f}; --force analyses again)")
            _log_experiment(made, log)
            return {**made, "out": run.analysis, "up_to_date": True}
        return _analyze(folder, run, options, inputs, log)


OUTPUTS = ("summary.json", "per_class.csv", "confusions.csv", "most_wrong.png", "hard_examples.txt")


def _summary_path(run: RunDir) -> str:
    return posixpath.join(run.analysis, "summary.json")


def analysis_made_of(run: RunDir, inputs: dict) -> dict | None:
    """The summary of the run's analysis when it was made of exactly `inputs` and all its files are
    there (summary.json is written last), else None."""
    summary_path = _summary_path(run)
    if not files.gfile().exists(summary_path):
        return None
    try:
        made = files.read_json(summary_path)
    except UserError:  # damaged: analyse again
        return None
    if not isinstance(made, dict) or made.get("inputs") != inputs:
        return None
    return made if all(files.gfile().exists(posixpath.join(run.analysis, name)) for name in OUTPUTS) else None


def _analyze(folder, run: RunDir, options: Options, inputs: dict, log) -> dict:
    batch_size, classes, resolution = options.batch_size, inputs["classes"], inputs["resolution"]
    net = load_model(run.path)
    if files.gfile().exists(_summary_path(run)):  # gone until every new file is written: an analysis
        files.gfile().remove(_summary_path(run))  # cut short leaves no summary vouching for old and new
    seen = predict(net, folder.split("val", classes), batch_size, resize_to=resolution, mirror=True, keep_images=True)
    probabilities, labels, names, info = seen.probabilities, seen.labels, seen.names, seen.info
    wnids = [c["wnid"] for c in info.classes]
    words = [c["words"] or c["wnid"] for c in info.classes]
    predictions = probabilities.argmax(1)
    summary = {"resolution": resolution, "records_resolution": folder.resolution, "num_examples": int(labels.size),
               "top1": float((predictions == labels).mean()), "top5": top_k_accuracy(probabilities, labels),
               "top1_tta": float((seen.tta.argmax(1) == labels).mean()), "top5_tta": top_k_accuracy(seen.tta, labels),
               "rules_broken": (files.read_json(run.state) or {}).get("rules_broken", []), "inputs": inputs}
    out = run.analysis
    files.gfile().makedirs(out)
    accuracy, counts = per_class_accuracy(labels, predictions, info.num_classes)
    order = np.argsort(accuracy, kind="stable")
    table = io.StringIO()
    writer = csv.writer(table)
    writer.writerow(["rank", "wnid", "words", "accuracy", "count"])
    for rank, index in enumerate(order, 1):
        writer.writerow([rank, wnids[index], words[index], f"{accuracy[index]:.4f}", int(counts[index])])
    _write(out, "per_class.csv", table.getvalue())
    pairs = confusions(labels, predictions)
    table = io.StringIO()
    writer = csv.writer(table)
    writer.writerow(["true_wnid", "true_words", "predicted_wnid", "predicted_words", "count"])
    for truth, guess, number in pairs:
        writer.writerow([wnids[truth], words[truth], wnids[guess], words[guess], number])
    _write(out, "confusions.csv", table.getvalue())
    _write(out, "most_wrong.png", wrong_grid(seen.images, labels, probabilities, names, words))
    hard, scanned = hard_examples(net, folder, batch_size, classes, options.hard_count, resize_to=resolution,
                                  limit=options.train_images)
    _write(out, "hard_examples.txt",
           "# training images with the highest loss (filename<TAB>loss); use as augment.hard_examples\n"
           + "".join(f"{name}\t{loss:.4f}\n" for name, loss in hard))
    _write(out, "summary.json", json.dumps(summary, indent=1))  # last: its inputs vouch for the files before it
    log(f"val at {resolution}px (from the {folder.resolution}px records): top-1 {summary['top1']:.4f}, "
        f"top-5 {summary['top5']:.4f}; with flip TTA top-1 {summary['top1_tta']:.4f}, "
        f"top-5 {summary['top5_tta']:.4f} ({summary['num_examples']} images)")
    _log_experiment(summary, log)
    log("worst classes: " + ", ".join(f"{words[i].split(',')[0]} {accuracy[i]:.0%}" for i in order[:5]))
    if pairs:
        log("most confused: " + ", ".join(f"{words[t].split(',')[0]} -> {words[g].split(',')[0]} ({n})"
                                          for t, g, n in pairs[:5]))
    log(f"wrote {out}/: {', '.join(OUTPUTS)} ({len(hard)} of {scanned} training images)")
    return {**summary, "per_class": {wnids[i]: float(accuracy[i]) for i in range(len(wnids))},
            "confusions": pairs, "hard_examples": hard, "out": out}


def _log_experiment(summary: dict, log) -> None:
    if summary.get("rules_broken"):
        log(f"EXPERIMENT: this run breaks {len(summary['rules_broken'])} course rule(s): "
            + "; ".join(summary["rules_broken"]))


def hard_examples(net, folder, batch_size: int, classes, count: int, resize_to: int | None = None, limit: int = 0):
    """The `count` (default: a tenth of those scanned) training images with the highest
    cross-entropy under the model, without augmentation (and without flip TTA), at the records'
    resolution or resized to `resize_to` px, among all of them or the first `limit`: candidates
    for mislabelled images and for extra weight. Also returns how many images were scanned."""
    seen = predict(net, folder.split("train", classes), batch_size, resize_to=resize_to, limit=limit)
    labels, names = seen.labels, seen.names
    losses = -np.log(np.clip(seen.probabilities[np.arange(labels.size), labels], 1e-12, 1.0))
    count = count or max(1, labels.size // 10)
    order = np.argsort(-losses, kind="stable")[:count]
    return [(names[i], float(losses[i])) for i in order], labels.size
