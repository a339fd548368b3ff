"""Statistics of a converted train split, to choose augmentations with the data in view: colour,
grayscale share, object sizes (from the boxes), per-class counts.

Library code so that the command line (tools/stats.py), the tests and a notebook compute the same
numbers. The records are read through the one read stage (`pipeline.read.batches`); the pixel
sums are of integers, exact in float64, so mean and std do not depend on the reading order.
"""

from __future__ import annotations

import numpy as np

from common import files
from pipeline.data_folder import DataFolder

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def compute(folder: DataFolder) -> dict:
    """Statistics of the train split, read from the records (exact, float64)."""
    from pipeline import read

    total = np.zeros(3)
    total_sq = np.zeros(3)
    histogram = np.zeros((3, 256), np.int64)
    pixels = 0
    labels, areas = [], []
    for batch in read.batches(folder.split("train"), 2048):
        images = batch["image"].numpy()
        flat = images.reshape(-1, 3).astype(np.float64)
        total += flat.sum(0)
        total_sq += (flat ** 2).sum(0)
        pixels += flat.shape[0]
        for channel in range(3):
            histogram[channel] += np.bincount(images[..., channel].ravel(), minlength=256)
        box = batch["bbox"].numpy()
        areas.append((box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1]))
        labels.append(batch["label"].numpy())
    labels, areas = np.concatenate(labels), np.concatenate(areas)
    mean = total / pixels
    std = np.sqrt(np.maximum(total_sq / pixels - mean ** 2, 0))
    per_class = {}
    for index, entry in enumerate(folder.classes):
        mine = areas[labels == index]
        per_class[entry["wnid"]] = {"words": entry["words"], "count": int(mine.size),
                                    "median_box_area": round(float(np.median(mine)), 4) if mine.size else None}
    gray = folder.manifest.get("grayscale_sources", {}).get("train", 0)
    return {
        "resolution": folder.resolution,
        "num_examples": int(labels.size),
        "mean": [round(float(v), 4) for v in mean],
        "std": [round(float(v), 4) for v in std],
        "grayscale_fraction": round(gray / max(1, labels.size), 6),
        "box_area_fraction": {f"q{int(q * 100):02d}": round(float(np.quantile(areas, q)), 4) for q in QUANTILES},
        "box_area_mean": round(float(areas.mean()), 4),
        "per_class": per_class,
        "_histogram": histogram,
        "_areas": areas,
    }


def draw(stats: dict, out: str) -> list[str]:
    """The two PNGs (needs matplotlib; returns the paths written)."""
    from common import plots

    plt = plots.pyplot("charts")
    if plt is None:
        return []
    files.gfile().makedirs(out)
    written = []
    figure, axis = plt.subplots(figsize=(8, 4))
    for channel, colour in enumerate(("red", "green", "blue")):
        axis.plot(np.arange(256), stats["_histogram"][channel] / stats["_histogram"][channel].sum(),
                  color=colour, label=f"{colour}: mean {stats['mean'][channel]:.1f}, std {stats['std'][channel]:.1f}")
    axis.set_xlabel("pixel value")
    axis.set_ylabel("share of pixels")
    axis.set_title(f"colour histograms, train split at {stats['resolution']} px")
    axis.legend()
    written.append(plots.save(figure, files.join(out, "colour_histograms.png"), dpi=90))
    figure, axis = plt.subplots(figsize=(8, 4))
    axis.hist(stats["_areas"], bins=50, range=(0, 1), color="#3a7dc9")
    axis.axvline(stats["box_area_fraction"]["q50"], color="black", linestyle="--", label="median")
    axis.set_xlabel("object box area / image area")
    axis.set_ylabel("images")
    axis.set_title("object sizes (from the boxes files)")
    axis.legend()
    written.append(plots.save(figure, files.join(out, "box_areas.png"), dpi=90))
    return written


def summary(stats: dict) -> str:
    quantiles = stats["box_area_fraction"]
    counts = [c["count"] for c in stats["per_class"].values()]
    smallest = sorted(stats["per_class"].items(), key=lambda kv: kv[1]["median_box_area"] or 0)[:3]
    return "\n".join([
        f"train split at {stats['resolution']} px: {stats['num_examples']} images, {len(counts)} classes "
        f"({min(counts)}-{max(counts)} per class)",
        f"mean (RGB, 0..255): {stats['mean']}   std: {stats['std']}",
        f"grayscale sources: {stats['grayscale_fraction']:.2%}",
        "box area / image area: " + ", ".join(f"{k} {v:.2f}" for k, v in quantiles.items()),
        "classes with the smallest objects (median box area): "
        + ", ".join(f"{wnid} {info['words'].split(',')[0]} {info['median_box_area']:.2f}" for wnid, info in smallest),
    ])


def report(data: str, resolution: int, out: str = "stats", json_path: str | None = None, log=print) -> dict:
    """What the command line does: compute (a corrupt shard named), print the summary, draw the
    charts into `out`, write the numbers to `json_path`; returns the statistics."""
    folder = DataFolder.open(data, resolution)
    with folder.naming_corrupt_shards(("train", "val")):
        stats = compute(folder)
    log(summary(stats))
    for path in draw(stats, out):
        log(f"wrote {path}")
    if json_path:
        files.write_json(json_path, {k: v for k, v in stats.items() if not k.startswith("_")})
        log(f"wrote {json_path}")
    return stats
