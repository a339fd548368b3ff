"""A picture grid of real images: the originals, then one row per augmentation applied with p=1.

    python -m tools.preview --data records --resolution 64 --out grid.png

For a person to check that every augmentation looks right before spending GPU hours on it.
Each augmentation runs through the same Policy code the pipeline uses (so the warp, the colour
composition and the seeds are the real ones), at its default magnitude unless --policy says
otherwise.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from PIL import Image, ImageDraw

from common.cli import command_line
from pipeline import dataset


def grid_rows(data: str, resolution: int, names: list[str], columns: int, seed: int,
              policy_spec=None) -> list[tuple[str, np.ndarray]]:
    """[(row label, uint8 images [columns, res, res, 3])], the first row unaugmented."""
    import tensorflow as tf

    from pipeline import augment, records
    from pipeline import manifest as manifests

    # Read the first records directly: the box-aware crop needs their boxes, which the training
    # pipeline does not hand out.
    manifest = manifests.read(data, resolution)
    files = dataset.checked_shard_paths(data, resolution, manifest, "train")
    parsed = records.parse_batch(next(iter(tf.data.TFRecordDataset(files).batch(columns))))
    images = records.decode_images(parsed["image"], manifest["encoding"], resolution)
    labels = tf.one_hot(parsed["label"], len(manifest["classes"]))
    bbox = parsed["bbox"]
    manifest_steps = {s.name: s for s in augment.parse_policy(policy_spec)} if policy_spec else {}
    rows = [("original", images.numpy().astype(np.uint8))]
    for name in names:
        step = manifest_steps.get(name)
        spec = f"{name}:p=1" + (f":m={step.m}" if step else "")
        policy = augment.Policy(spec)
        out, _ = policy(images, labels, tf.constant([seed, 0], tf.int64), bbox)
        rows.append((name, np.clip(np.round(out.numpy()), 0, 255).astype(np.uint8)))
    return rows


def draw_grid(rows, scale: int = 2, label_width: int = 110) -> Image.Image:
    count, size = rows[0][1].shape[0], rows[0][1].shape[1] * scale
    pad = 2
    canvas = Image.new("RGB", (label_width + count * (size + pad), len(rows) * (size + pad)), "white")
    draw = ImageDraw.Draw(canvas)
    for r, (label, images) in enumerate(rows):
        top = r * (size + pad)
        draw.text((4, top + size // 2 - 6), label, fill="black")
        for c, image in enumerate(images):
            tile = Image.fromarray(image).resize((size, size), Image.NEAREST)
            canvas.paste(tile, (label_width + c * (size + pad), top))
    return canvas


@command_line
def main(argv: list[str] | None = None) -> int:
    from pipeline import augment

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="the converter's output folder")
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--out", default="augmentations.png", help="PNG to write")
    parser.add_argument("--augment", help="comma-separated names (default: every registered augmentation)")
    parser.add_argument("--policy", help="take magnitudes from this policy spec, e.g. 'rotate:m=30'")
    parser.add_argument("--columns", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.augment.split(",")] if args.augment else list(augment.REGISTRY)
    unknown = [n for n in names if n not in augment.REGISTRY]
    if unknown:
        parser.error(f"--augment: unknown {', '.join(unknown)} (known: {', '.join(augment.REGISTRY)})")
    with dataset.naming_corrupt_shards(args.data, args.resolution, ("train", "val")):
        rows = grid_rows(args.data, args.resolution, names, args.columns, args.seed, args.policy)
    draw_grid(rows).save(args.out)
    print(f"wrote {args.out}: {len(rows) - 1} augmentations x {args.columns} images at {args.resolution}px")
    return 0


if __name__ == "__main__":
    sys.exit(main())
