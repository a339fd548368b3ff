"""A picture grid of real images: the originals, then one row per augmentation applied with p=1.

For a person to check that every augmentation looks right before spending GPU hours on it. Library
code so that the command line (tools/preview.py) and a notebook draw the same grid. The images are
the first records of the train split in the read stage's order (`pipeline.read.batches`), with
their boxes: the box-aware crop needs them, and the training pipeline does not hand them out.
Each augmentation runs through the same Policy code the pipeline uses (so the warp, the colour
composition and the seeds are the real ones), at its default magnitude unless a policy says
otherwise.
"""

from __future__ import annotations

import io
import posixpath

import numpy as np
from PIL import Image, ImageDraw

from common import files
from pipeline.data_folder import DataFolder


def grid_rows(folder: DataFolder, names: list[str], columns: int, seed: int,
              policy_spec=None) -> list[tuple[str, np.ndarray]]:
    """[(row label, uint8 images [columns, res, res, 3])], the first row unaugmented."""
    import tensorflow as tf

    from pipeline import augment, read
    from pipeline import policy as policies

    first = next(iter(read.batches(folder.split("train"), columns)))
    images = first["image"]
    labels = tf.one_hot(first["label"], len(folder.classes))
    bbox = first["bbox"]
    manifest_steps = {s.name: s for s in policies.parse(policy_spec)} if policy_spec else {}
    rows = [("original", images.numpy().astype(np.uint8))]
    for name in names:
        step = manifest_steps.get(name)
        spec = f"{name}:p=1" + (f":m={step.m}" if step else "")
        policy = augment.Policy(policies.parse(spec))
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


def save_image(image: Image.Image, path: str) -> str:
    """An image anywhere tf.io.gfile reaches, in the format its extension names (PNG otherwise)."""
    buffer = io.BytesIO()
    image.save(buffer, format=Image.registered_extensions().get(posixpath.splitext(path)[1].lower(), "PNG"))
    files.write_bytes(path, buffer.getvalue())
    return path


def write(data: str, resolution: int, out: str, names: list[str], columns: int = 8, seed: int = 0,
          policy_spec=None, log=print) -> list[tuple[str, np.ndarray]]:
    """What the command line does: the grid of `names` over `columns` images (a corrupt shard
    named), written to `out`, and a line saying so; returns the rows."""
    folder = DataFolder.open(data, resolution)
    with folder.naming_corrupt_shards(("train", "val")):
        rows = grid_rows(folder, names, columns, seed, policy_spec)
    save_image(draw_grid(rows), out)
    log(f"wrote {out}: {len(rows) - 1} augmentations x {columns} images at {resolution}px")
    return rows
