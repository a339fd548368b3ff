"""Look at the data before choosing augmentations: colour, grayscale share, object sizes, counts.

    python -m tools.stats --data records --resolution 64 --out stats --json stats.json

Prints a summary; writes `colour_histograms.png` and `box_areas.png` to --out and, with --json,
`mean`/`std` (per channel, 0..255, train split), `grayscale_fraction` (share of train images
whose source JPEG was single-channel, recorded at conversion), `box_area_fraction` (quantiles
of box area / image area) and per-class counts and median box areas.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from common.cli import command_line
from pipeline import dataset

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def compute(data: str, resolution: int) -> dict:
    """Statistics of the train split, read from the records (exact, float64)."""
    import tensorflow as tf

    from pipeline import manifest as manifests
    from pipeline import records

    manifest = manifests.read(data, resolution)
    files = dataset.checked_shard_paths(data, resolution, manifest, "train")
    total = np.zeros(3)
    total_sq = np.zeros(3)
    histogram = np.zeros((3, 256), np.int64)
    pixels = 0
    labels, areas = [], []
    for serialized in tf.data.TFRecordDataset(files).batch(2048):
        parsed = records.parse_batch(serialized)
        images = records.decode_images(parsed["image"], manifest["encoding"], resolution).numpy()
        flat = images.reshape(-1, 3).astype(np.float64)
        total += flat.sum(0)
        total_sq += (flat ** 2).sum(0)
        pixels += flat.shape[0]
        for channel in range(3):
            histogram[channel] += np.bincount(images[..., channel].ravel(), minlength=256)
        box = parsed["bbox"].numpy()
        areas.append((box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1]))
        labels.append(parsed["label"].numpy())
    labels, areas = np.concatenate(labels), np.concatenate(areas)
    mean = total / pixels
    std = np.sqrt(np.maximum(total_sq / pixels - mean ** 2, 0))
    classes = manifest["classes"]
    per_class = {}
    for index, entry in enumerate(classes):
        mine = areas[labels == index]
        per_class[entry["wnid"]] = {"words": entry["words"], "count": int(mine.size),
                                    "median_box_area": round(float(np.median(mine)), 4) if mine.size else None}
    gray = manifest.get("grayscale_sources", {}).get("train", 0)
    return {
        "resolution": resolution,
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
    os.makedirs(out, exist_ok=True)
    written = []
    figure, axis = plt.subplots(figsize=(8, 4))
    for channel, colour in enumerate(("red", "green", "blue")):
        axis.plot(np.arange(256), stats["_histogram"][channel] / stats["_histogram"][channel].sum(),
                  color=colour, label=f"{colour}: mean {stats['mean'][channel]:.1f}, std {stats['std'][channel]:.1f}")
    axis.set_xlabel("pixel value")
    axis.set_ylabel("share of pixels")
    axis.set_title(f"colour histograms, train split at {stats['resolution']} px")
    axis.legend()
    written.append(plots.save(figure, os.path.join(out, "colour_histograms.png"), dpi=90))
    figure, axis = plt.subplots(figsize=(8, 4))
    axis.hist(stats["_areas"], bins=50, range=(0, 1), color="#3a7dc9")
    axis.axvline(stats["box_area_fraction"]["q50"], color="black", linestyle="--", label="median")
    axis.set_xlabel("object box area / image area")
    axis.set_ylabel("images")
    axis.set_title("object sizes (from the boxes files)")
    axis.legend()
    written.append(plots.save(figure, os.path.join(out, "box_areas.png"), dpi=90))
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


@command_line
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="the converter's output folder")
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--out", default="stats", help="folder for the PNG charts")
    parser.add_argument("--json", help="write the statistics here")
    args = parser.parse_args(argv)
    with dataset.naming_corrupt_shards(args.data, args.resolution, ("train", "val")):
        stats = compute(args.data, args.resolution)
    print(summary(stats))
    for path in draw(stats, args.out):
        print(f"wrote {path}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({k: v for k, v in stats.items() if not k.startswith("_")}, handle, indent=1)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
